"""`dstack secrets [list|add|delete]`: variables every job of the repo gets, masked in logs."""

from __future__ import annotations

import sys

import typer

from dstack.cli.groups import listing_group


def _list_default(as_json: bool) -> None:
    """`dstack secrets` alone: the list."""
    list_command(as_json=as_json)


secrets_app = listing_group(
    "secrets",
    help="Secrets: variables every job of this repository gets, shown as *** in its logs.",
    list_items=_list_default,
)


def register(app: typer.Typer) -> None:
    app.add_typer(secrets_app, name="secrets")


@secrets_app.command("list", help="List the names of this repository's secrets (not values).")
def list_command(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    from dstack import api
    from dstack.cli import render
    from dstack.services import secrets

    names = secrets.list_names(api.Context())
    if as_json:
        render.print_json([{"name": name} for name in names])
    elif names:
        render.table(["NAME"], [[name] for name in names])
    else:
        print("No secrets; add one with `dstack secrets add NAME`", file=sys.stderr)


@secrets_app.command(
    "add",
    help="Add a secret, or replace one. Without VALUE it is asked for without echo (or read "
    "from standard input when that is not a terminal); a VALUE on the command line stays in "
    "your shell's history.",
)
def add_command(
    name: str = typer.Argument(..., metavar="NAME", help="A variable name, e.g. WANDB_API_KEY."),
    value: str = typer.Argument(None, metavar="VALUE", help="The value (asked for when omitted)."),
    yes: bool = typer.Option(False, "-y", "--yes", help="Replace an existing secret."),
) -> None:
    from dstack import api
    from dstack.cli.confirm import confirm_or_exit
    from dstack.services import secrets

    ctx = api.Context()
    secrets.validate_name(name)
    replace = secrets.exists(ctx, name)
    if replace:
        confirm_or_exit(f"Secret {name} exists. Replace it?", yes)
    if value is None:
        value = _read_value(name)
    replaced = secrets.add(ctx, name, value, replace=replace)
    print(f"Secret {name} {'replaced' if replaced else 'added'}", file=sys.stderr)


@secrets_app.command("delete", help="Delete a secret.")
def delete_command(
    name: str = typer.Argument(..., metavar="NAME", help="The secret's name."),
    yes: bool = typer.Option(False, "-y", "--yes", help="Do not ask for confirmation."),
) -> None:
    from dstack import api
    from dstack.cli.confirm import confirm_or_exit
    from dstack.services import secrets

    ctx = api.Context()
    secrets.validate_name(name)
    if not secrets.exists(ctx, name):
        secrets.delete(ctx, name)  # says there is no such secret
    confirm_or_exit(f"Delete the secret {name}?", yes)
    secrets.delete(ctx, name)
    print(f"Secret {name} deleted", file=sys.stderr)


def _read_value(name: str) -> str:
    """The value from a hidden prompt on a terminal, else from standard input (one trailing
    newline dropped), so `echo "$TOKEN" | dstack secrets add NAME` works in scripts."""
    if sys.stdin.isatty():
        return str(typer.prompt(f"Value of {name}", hide_input=True))
    return sys.stdin.read().removesuffix("\n").removesuffix("\r")
