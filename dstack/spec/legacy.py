"""Keys the 2022 format (dstack 0.0.12–0.0.14) accepted on a provider but ignored, and what
each one does here: nothing, so the file is read with a warning instead of an error.

An unknown key is still an error (with its did-you-mean); only the keys below, on the providers
below, are let through. ``dstack schema`` shows them as deprecated, from this same table.
"""

from __future__ import annotations

from typing import Any

_COMMANDS_ON_APP = (
    "ignored: the {provider} provider starts its own server; commands to run before it go in "
    "`setup`"
)
_ENVIRONMENT = "ignored (as in dstack 0.0.14); set the job's variables with `env`"

#: provider → key → what it does here
LEGACY_KEYS: dict[str, dict[str, str]] = {
    "lab": {"commands": _COMMANDS_ON_APP, "environment": _ENVIRONMENT},
    "notebook": {"commands": _COMMANDS_ON_APP, "environment": _ENVIRONMENT},
    "code": {"commands": _COMMANDS_ON_APP, "environment": _ENVIRONMENT},
    "docker": {
        "environment": _ENVIRONMENT,
        "requirements": "ignored: a docker workflow uses its image's packages; install more "
        "in `commands`",
        "python": "ignored: a docker workflow runs the image's Python (choose it by `image`)",
    },
}


def strip_legacy_keys(provider: str, raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``raw`` without the 2022 keys its provider ignores, and one warning per key found."""
    known = LEGACY_KEYS.get(provider, {})
    found = [key for key in raw if key in known]
    if not found:
        return raw, []
    notes = [f"{key}: {known[key].format(provider=provider)}" for key in found]
    return {k: v for k, v in raw.items() if k not in known}, notes


def schema_properties(provider: str) -> dict[str, Any]:
    """The JSON Schema of the ignored keys of ``provider``: anything, marked deprecated."""
    return {
        key: {"deprecated": True, "description": text.format(provider=provider)}
        for key, text in LEGACY_KEYS.get(provider, {}).items()
    }
