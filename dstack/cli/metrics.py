"""`dstack metrics RUN [--json]`: the last value of each metric a run's jobs wrote to
``$DSTACK_METRICS`` (per job, for a run of several); with ``--json``, every point."""

from __future__ import annotations

import sys

import typer


def register(app: typer.Typer) -> None:
    app.command(
        "metrics",
        help="Show a run's metrics: the last value of each (--json: every point). A job "
        'appends them to the file $DSTACK_METRICS names, a JSON line each: {"step": 3, '
        '"loss": 0.41}.',
    )(metrics)


def metrics(
    run_name: str = typer.Argument(
        ..., metavar="RUN", help="The run's name, as `dstack ps` shows it."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print every point as JSON."),
) -> None:
    from dstack import api
    from dstack.cli import render
    from dstack.services.metrics import last_values, point_counts, read_run_metrics

    ctx = api.Context()
    points = read_run_metrics(ctx, run_name)
    if as_json:
        render.print_json(
            [
                {
                    "job": p.job,
                    "attempt": p.attempt,
                    "at": render.iso(p.at),
                    "step": p.step,
                    "values": p.values,
                }
                for p in points
            ]
        )
        return
    if not points:
        from dstack.services.runs import get_run

        finished = get_run(ctx, run_name, refresh=False).status.is_finished
        said = (
            f"Run {run_name} wrote no metrics" if finished else f"No metrics yet in run {run_name}"
        )
        print(
            f"{said}: jobs write them as JSON lines to the file $DSTACK_METRICS names "
            "(see `dstack metrics --help`)",
            file=sys.stderr,
        )
        return
    jobs = sorted({p.job for p in points})
    rows = []
    for job in jobs:  # a run of several jobs (nodes): each job's metrics apart
        mine = [p for p in points if p.job == job] if len(jobs) > 1 else points
        counts = point_counts(mine)
        rows += [
            ([str(job)] if len(jobs) > 1 else [])
            + [name, "" if step is None else str(step), f"{value:.6g}", str(counts[name])]
            for name, (step, value) in sorted(last_values(mine).items())
        ]
    headers = ["METRIC", "STEP", "VALUE", "POINTS"]
    render.table(["JOB", *headers] if len(jobs) > 1 else headers, rows)
