"""A provider's name in place of a workflow's, as 2022 allowed: ``dstack run bash -c "CMD"``,
``dstack run docker IMAGE [-c "CMD"]``, ``dstack run python FILE [ARGS…]``.

The command line becomes a workflow of that provider (validated by the same model as a file's
workflow), unless the repo's files declare a workflow of that name: the file wins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dstack.errors import SpecError
from dstack.spec.loader import parse_workflow, read_catalog
from dstack.spec.workflows import Workflow

ADHOC_PROVIDERS = ("bash", "docker", "python")
SOURCE = "(command line)"
_USAGE = {
    "bash": 'dstack run bash -c "COMMANDS"',
    "docker": 'dstack run docker IMAGE [-c "COMMANDS"]',
    "python": "dstack run python FILE [ARGS]...",
}


def adhoc_workflow(root: Path, name: str, args: list[str]) -> tuple[Workflow, list[str]] | None:
    """The workflow the command line describes and the run arguments left, or None when
    ``name`` is not such a provider or the repo declares a workflow called ``name``."""
    if name not in ADHOC_PROVIDERS:
        return None
    try:
        catalog = read_catalog(root)
    except SpecError:  # no workflow file at all: the command line is all there is
        catalog = None
    if catalog is not None and (name in catalog.workflows or catalog.problem_of(name)):
        return None
    raw, rest = _describe(name, list(args))
    return parse_workflow(raw, source=SOURCE), rest


def _describe(provider: str, args: list[str]) -> tuple[dict[str, Any], list[str]]:
    usage = f"usage: {_USAGE[provider]}"
    raw: dict[str, Any] = {"name": provider, "provider": provider}
    if provider == "python":
        if not args or args[0].startswith("-"):
            raise SpecError(f"dstack run python: name the .py file to run ({usage})")
        raw["file"] = args[0]
        return raw, args[1:]
    if provider == "docker":
        if not args or args[0].startswith("-"):
            raise SpecError(f"dstack run docker: name the image to run ({usage})")
        raw["image"], args = args[0], args[1:]
    if args[:1] == ["-c"] and len(args) >= 2:
        raw["commands"] = [args[1]]
        args = args[2:]
    elif provider == "bash":
        raise SpecError(f'dstack run bash: give the commands with -c "…" ({usage})')
    if args:
        raise SpecError(f"dstack run {provider}: unexpected arguments {' '.join(args)!r} ({usage})")
    return raw, []
