"""`dstack logs RUN [-a] [-s SINCE]`: a run's output, and optionally follow it."""

from __future__ import annotations

import time

import typer


def register(app: typer.Typer) -> None:
    app.command("logs", help="Show the output of a run; -a follows it until it finishes.")(logs)


def logs(
    run_name: str = typer.Argument(
        ..., metavar="RUN", help="The run's name, as `dstack ps` shows it."
    ),
    attach: bool = typer.Option(False, "-a", "--attach", help="Follow until the run ends."),
    since: str = typer.Option(
        None, "-s", "--since", help="Only output after this: a duration (15m, 2h) or ISO time."
    ),
) -> None:
    from dstack import api
    from dstack.cli.follow import stream_run

    ctx = api.Context()
    view = api.get_run(ctx, run_name)
    code = stream_run(ctx, view, attach=attach, since=parse_since(since) if since else None)
    if attach:
        raise typer.Exit(code)


def parse_since(value: str) -> float:
    from datetime import datetime

    from dstack.errors import DstackError
    from dstack.units import parse_duration

    try:
        return time.time() - parse_duration(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise DstackError(
            f"--since: {value!r} is neither a duration (15m, 2h, 1d) nor an ISO time"
        ) from None
