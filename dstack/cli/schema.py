"""`dstack schema`: the JSON Schema of .dstack/workflows.yaml, for editors."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("schema", help="Print the JSON Schema of .dstack/workflows.yaml.")(schema)


def schema() -> None:
    from dstack.cli import render
    from dstack.spec.loader import json_schema

    render.print_json(json_schema())
