"""`dstack stop (RUN | -a) [-x] [-y]`: stop runs; artifacts are saved unless aborted."""

from __future__ import annotations

import sys

import typer


def register(app: typer.Typer) -> None:
    app.command("stop", help="Stop a run (its artifacts are saved), or abort it with -x.")(stop)


def stop(
    run_name: str = typer.Argument(None, metavar="RUN", help="The run's name (or -a for all)."),
    all_runs: bool = typer.Option(False, "-a", "--all", help="Stop every unfinished run."),
    abort: bool = typer.Option(False, "-x", "--abort", help="Kill at once; save nothing."),
    yes: bool = typer.Option(False, "-y", "--yes", help="Do not ask for confirmation."),
) -> None:
    from dstack import api
    from dstack.cli.confirm import confirm_or_exit, require_one

    require_one(run_name, all_runs)
    ctx = api.Context()
    if all_runs:
        names = [r.run_name for r in api.list_runs(ctx) if not r.status.is_finished]
        if not names:
            print("No unfinished runs", file=sys.stderr)
            return
        confirm_or_exit(f"{'Abort' if abort else 'Stop'} {len(names)} run(s)?", yes)
    else:
        names = [run_name]
    ctx.compute.reporter = lambda line: print(line, file=sys.stderr)
    for name in names:
        view = api.stop(ctx, name, abort=abort)
        print(f"{name}: {view.status.value}")
        _release(ctx, name)


def _release(ctx, name: str) -> None:  # type: ignore[no-untyped-def]
    """Destroy a stopped cloud run's stack (nothing to do for a local run)."""
    from dstack.errors import DstackError
    from dstack.services.infra import release

    try:
        release(ctx, name)
    except DstackError as exc:
        print(f"Warning: {exc}", file=sys.stderr)
