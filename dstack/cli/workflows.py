"""`dstack workflows [--json]`: the repo's workflows with their `help`, each validated (for CI
and editors); exits non-zero when any does not validate."""

from __future__ import annotations

import sys
from typing import Any

import typer


def register(app: typer.Typer) -> None:
    app.command(
        "workflows",
        help="List the workflows of this repository with their help, and validate them all "
        "(exit code 1 when any is invalid).",
    )(workflows)


def workflows(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    from pathlib import Path

    from dstack.cli import render
    from dstack.repo import find_repo_root
    from dstack.spec.loader import read_catalog

    catalog = read_catalog(find_repo_root(Path.cwd()))
    rows: list[dict[str, Any]] = [
        {"name": w.name, "provider": w.provider, "file": w.source, "help": w.help,
         "warnings": list(w.notes), "error": None}
        for w in catalog.workflows.values()
    ] + [
        {"name": owner, "provider": None, "file": None, "help": None, "warnings": [],
         "error": text}
        for owner, text in catalog.problems
    ]  # fmt: skip
    if as_json:
        render.print_json(rows)
    else:
        table = [[r["name"] or "-", r["provider"] or "-", r["file"] or "-", r["help"] or ""]
                 for r in rows if r["error"] is None]  # fmt: skip
        if table:
            render.table(["NAME", "PROVIDER", "FILE", "HELP"], table)
        for row in rows:
            for warning in row["warnings"]:
                print(f"Warning: {warning}", file=sys.stderr)
        for _, text in catalog.problems:
            print(f"Error: {text}", file=sys.stderr)
        if not table and not catalog.problems:
            print(f"No workflows in {catalog.where()}: add one (see README)", file=sys.stderr)
    if catalog.problems:
        raise typer.Exit(1)
