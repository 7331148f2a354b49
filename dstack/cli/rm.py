"""`dstack rm (RUN | -a) [-y]`: delete finished runs with their logs and artifacts (never a
tagged run: the tag points at its artifacts)."""

from __future__ import annotations

import sys

import typer


def register(app: typer.Typer) -> None:
    app.command("rm", help="Delete finished runs, their logs and artifacts.")(rm)


def rm(
    run_name: str = typer.Argument(None, metavar="RUN", help="The run's name (or -a for all)."),
    all_runs: bool = typer.Option(False, "-a", "--all", help="Delete every finished run."),
    yes: bool = typer.Option(False, "-y", "--yes", help="Do not ask for confirmation."),
) -> None:
    from dstack import api
    from dstack.cli.confirm import confirm_or_exit, require_one

    require_one(run_name, all_runs)
    ctx = api.Context()
    tagged = api.tags_by_run(ctx.storage, ctx.repo_id)
    if all_runs:
        finished = [r.run_name for r in api.list_runs(ctx, all_runs=True) if r.status.is_finished]
        for name in (n for n in finished if n in tagged):
            print(f"{name}: kept, tagged {', '.join(tagged[name])}", file=sys.stderr)
        names = [n for n in finished if n not in tagged]
        if not names:
            print("No finished runs to delete", file=sys.stderr)
            return
        confirm_or_exit(f"Delete {len(names)} finished run(s) with their artifacts?", yes)
    else:
        api.refuse_if_tagged(run_name, tagged)
        confirm_or_exit(f"Delete run {run_name} with its logs and artifacts?", yes)
        names = [run_name]
    for name in names:
        api.remove(ctx, name, tagged=tagged)
        print(f"{name}: deleted")
