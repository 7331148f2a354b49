"""The metrics the dashboard plots, read through ``services.metrics``: a run's points for the
run page's live charts (polled with ``after``, as the log is followed), one metric of several
runs overlaid for the compare view, and a metric's last value per run for the runs table.
No HTTP here, nothing written; the charts themselves are drawn in the browser
(``static/charts.js``) from what these return.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from dstack.errors import RunNotFoundError
from dstack.services import metrics as metric_service
from dstack.services import runs as run_service
from dstack.services.context import Context
from dstack.services.metrics import MetricPoint

#: runs one compare view overlays; more is refused with one line
MAX_COMPARED = 12
_READERS = 8  # parallel reads of runs' metrics (S3 round trips)


def run_points(ctx: Context, run_name: str, after: int) -> dict[str, Any]:
    """A run's points after the first ``after``, for the run page: ``points``, ``next`` (the
    ``after`` of the next poll) and ``finished``, true when every job had finished before
    the points were read (so they are all there, and polling can stop).

    ``after`` counts points in the order jobs are read (job, then attempt, then line), so it
    names the new points only of a run of one job: while several jobs write, a new point of
    job 0 lands before job 1's. A run of several jobs is therefore always answered with all
    its points and ``replace`` true (the page draws them instead of adding them)."""
    view = run_service.get_run(ctx, run_name, refresh=False)
    finished = all(s.status.is_finished for s in view.states)
    replace = len(view.jobs) > 1
    start = 0 if replace else max(after, 0)
    points = metric_service.read_run_metrics(ctx, run_name, after=start)
    return {
        "points": [_point(p) for p in points],
        "next": start + len(points),
        "finished": finished,
        "jobs": len(view.jobs),
        "replace": replace,
    }


def _point(point: MetricPoint) -> dict[str, Any]:
    return {
        "job": point.job,
        "attempt": point.attempt,
        "at": point.at,
        "step": point.step,
        "values": point.values,
    }


@dataclass
class Comparison:
    """One metric of several runs, ready to draw: a series per run (per job of a run with
    several), x by step when every point of it has one, else seconds since the run's first
    point."""

    metric: str
    runs: list[str]
    metrics: list[str]  # every metric the picked runs have, for choosing another
    x_label: str = "step"
    series: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # one line each: a run left out, and why

    def chart(self) -> dict[str, Any]:
        return {"metric": self.metric, "xLabel": self.x_label, "series": self.series}


def compare(ctx: Context, runs: list[str], metric: str) -> Comparison:
    """``metric`` of each of ``runs`` (the first metric they have, if empty)."""
    runs = list(dict.fromkeys(r for r in runs if r))[:MAX_COMPARED]
    read = _read_all(ctx, runs)
    names = sorted(
        {name for points in read.values() if points for p in points for name in p.values}
    )
    chosen = metric or (names[0] if names else "")
    result = Comparison(chosen, runs, names)
    found: list[tuple[str, int, list[MetricPoint]]] = []
    for run in runs:
        points = read[run]
        if points is None:
            result.problems.append(f"{run}: no such run in this repo")
            continue
        having = [p for p in points if chosen in p.values]
        if not having:
            result.problems.append(
                f"{run}: no metric {chosen!r}" if chosen else f"{run}: no metrics"
            )
            continue
        for job in sorted({p.job for p in having}):
            found.append((run, job, [p for p in having if p.job == job]))
    by_step = all(p.step is not None for _, _, points in found for p in points)
    result.x_label = "step" if by_step else "seconds"
    several_jobs = {run for run, job, _ in found if job > 0}
    for run, job, points in found:
        start = points[0].at
        xy = [[p.step if by_step else round(p.at - start, 3), p.values[chosen]] for p in points]
        label = f"{run} · job {job}" if run in several_jobs else run
        result.series.append({"label": label, "run": run, "points": xy})
    return result


def last_values(ctx: Context, runs: list[str], metric: str) -> dict[str, tuple[int | None, float]]:
    """``metric``'s last value (and its step) in each of ``runs`` that has it."""
    found = {}
    for run, points in _read_all(ctx, runs).items():
        last = metric_service.last_values(points or []).get(metric)
        if last is not None:
            found[run] = last
    return found


def metric_names(ctx: Context, runs: list[str]) -> list[str]:
    """Every metric any of ``runs`` has, sorted."""
    read = _read_all(ctx, runs)
    return sorted({name for points in read.values() for p in points or [] for name in p.values})


def _read_all(ctx: Context, runs: list[str]) -> dict[str, list[MetricPoint] | None]:
    """Each run's points; None for a run this repo does not have."""

    def read(run: str) -> list[MetricPoint] | None:
        try:
            return metric_service.read_run_metrics(ctx, run)
        except RunNotFoundError:
            return None

    with ThreadPoolExecutor(_READERS) as pool:
        return dict(zip(runs, pool.map(read, runs), strict=True))
