"""`dstack restart RUN`: run again exactly what RUN ran (its code, not the working tree)."""

from __future__ import annotations

import sys

import typer

HELP = (
    "Run again what RUN ran: a new run with RUN's recorded code tree, arguments, environment "
    "and deps, whatever your working tree holds now. A new run, not another attempt of RUN: "
    "RUN's log, artifacts and tag stay what they were."
)


def register(app: typer.Typer) -> None:
    app.command("restart", help=HELP)(restart)


def restart(
    run_name: str = typer.Argument(..., metavar="RUN", help="The run to run again."),
    detach: bool = typer.Option(False, "-d", "--detach", help="Do not follow the output."),
) -> None:
    from dstack import api
    from dstack.cli.follow import follow_new_run, on_interrupt
    from dstack.cli.run import release_if_finished
    from dstack.errors import RunInterrupted
    from dstack.services.restart import restart as restart_run

    context = api.Context()
    context.compute.reporter = lambda line: print(line, file=sys.stderr)
    try:
        submission = restart_run(context, run_name)
    except RunInterrupted as exc:  # Ctrl+C once the run was written: as if it were followed
        code = on_interrupt(context, exc.run_name, interactive=True, stop_on_signal=True)
        release_if_finished(context, exc.run_name)
        raise typer.Exit(code) from None
    name = submission.run.run_name
    what = f"code of {run_name}, not your working tree"
    if detach:
        print(f"Run {name} submitted ({what}); follow it with `dstack logs -a {name}`",
              file=sys.stderr)  # fmt: skip
        print(name, flush=True)
        return
    header = f"Run {name} (workflow {submission.run.workflow}, {what})"
    view = lambda: api.get_run(context, name, refresh=False)  # noqa: E731
    code = follow_new_run(context, name, header, [], view)
    release_if_finished(context, name)
    raise typer.Exit(code)
