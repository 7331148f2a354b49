"""Command groups that list their items when given no command (`dstack tags`, `dstack
secrets`): the group, its ``--json`` and the one place the listing is chosen."""

from __future__ import annotations

from collections.abc import Callable

import typer


def listing_group(name: str, *, help: str, list_items: Callable[[bool], None]) -> typer.Typer:
    """A group `dstack NAME` (``tags``: the name of what it lists) that runs
    ``list_items(as_json)`` when no command follows."""
    group = typer.Typer(help=help, invoke_without_command=True)

    def default(
        ctx: typer.Context,
        as_json: bool = typer.Option(
            False, "--json", help="With no command: print the list as JSON."
        ),
    ) -> None:
        if ctx.invoked_subcommand is None:
            list_items(as_json)
        elif as_json:
            raise typer.BadParameter(f"--json goes after the command: `dstack {name} list --json`")

    default.__doc__ = f"With no command: list the {name}."
    group.callback()(default)
    return group
