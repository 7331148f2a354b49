"""Turning pip's failure output into one line a person can act on (the job's failure reason).

pip says what went wrong among many lines; the job's record gets one: the requirement that
cannot be met and the versions the index does have (the newest few), or that the index had
none at all (unreachable, or no such package). Anything else keeps pip's own last error line.
"""

from __future__ import annotations

import re

_NOT_FOUND = re.compile(
    r"Could not find a version that satisfies the requirement (\S+)"
    r"(?: \(from versions: ([^)]*)\))?"
)
_ERROR = re.compile(r"^ERROR: (.+)$", re.MULTILINE)
_SHOWN = 5


def explain(output: bytes) -> str | None:
    """One line about why pip failed, from the end of its output; None if nothing is clear."""
    text = output.decode(errors="replace")
    found = _NOT_FOUND.search(text)
    if found:
        requirement, versions = found.group(1), (found.group(2) or "").strip()
        if not versions or versions == "none":
            return (
                f"{requirement}: the package index has no version of it (unreachable, or no "
                "such package)"
            )
        listed = [v.strip() for v in versions.split(",") if v.strip()]
        newest = ", ".join(listed[-_SHOWN:])
        return f"{requirement}: no such version on the package index (newest: {newest})"
    errors = _ERROR.findall(text)
    return errors[-1].strip() if errors else None
