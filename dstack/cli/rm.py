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
    from dstack.errors import DstackError

    require_one(run_name, all_runs)
    ctx = api.Context()
    damaged: list[str] = []
    tagged = api.tags_by_run(ctx.storage, ctx.repo_id, damaged=damaged)
    for line in damaged:
        print(f"Warning: {line}", file=sys.stderr)
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
    if not all_runs:
        api.remove(ctx, run_name, tagged=tagged)
        print(f"{run_name}: deleted")
        return
    failed = 0
    for name in names:  # one run that cannot go does not stop the others
        try:
            api.remove(ctx, name, tagged=tagged)
        except DstackError as exc:
            failed += 1
            print(f"{name}: not deleted: {exc}", file=sys.stderr)
            continue
        print(f"{name}: deleted")
    if failed:
        raise typer.Exit(1)
