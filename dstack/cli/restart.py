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
    from dstack.cli.follow import stream_run
    from dstack.services.restart import restart as restart_run

    context = api.Context()
    context.compute.reporter = lambda line: print(line, file=sys.stderr)
    submission = restart_run(context, run_name)
    name = submission.run.run_name
    what = f"code of {run_name}, not your working tree"
    if detach:
        print(f"Run {name} submitted ({what}); follow it with `dstack logs -a {name}`",
              file=sys.stderr)  # fmt: skip
        print(name, flush=True)
        return
    print(f"Run {name} (workflow {submission.run.workflow}, {what})", file=sys.stderr, flush=True)
    view = api.get_run(context, name, refresh=False)
    code = stream_run(context, view, attach=True, interactive=True, stop_on_signal=True)
    from dstack.cli.run import release_if_finished

    release_if_finished(context, name)
    raise typer.Exit(code)
