"""A run's metrics: the points its jobs wrote to ``$DSTACK_METRICS``, read from the store.

Each job's runner ships the points as its job writes them (``runner.metrics``), so reading
while a run is live returns what has arrived so far; ``after`` lets a poller ask for only the
points it has not seen. A point carries the attempt that wrote it: a retried or resumed job
continues its series, attempt after attempt.
"""

from __future__ import annotations

from dataclasses import dataclass

from dstack import state
from dstack.services.context import Context
from dstack.services.runs import read_run_record


@dataclass(frozen=True)
class MetricPoint:
    job: int  # job index in the run
    attempt: int  # 1-based
    at: float  # unix time the runner read the line
    step: int | None
    values: dict[str, float]


def read_run_metrics(ctx: Context, run_name: str, *, after: int = 0) -> list[MetricPoint]:
    """Every point of every job of the run, in the order written (job, then attempt, then
    line); ``after``: skip the first N points (a poller asks only for new ones).

    ``after`` counts in that order, so it finds exactly the new points of a run of one job.
    While several jobs of a run write, a new point of an earlier job lands before the later
    jobs' points: a poller of such a run reads all of them again (``after=0``).

    Raises ``RunNotFoundError`` for a run this repo does not have (or had, and removed)."""
    storage = ctx.storage
    run = read_run_record(ctx, run_name)
    points: list[MetricPoint] = []
    seen = 0  # points before this chunk, counted from the chunks' keys
    for job in range(run.job_count):
        for chunk in state.list_metric_chunks(storage, run.repo_id, run.run_name, job):
            if seen + chunk.points <= after:
                seen += chunk.points
                continue
            data = storage.get_or_none(chunk.key)
            stored = [] if data is None else state.decode_points(data, chunk.key)
            skip = max(0, after - seen)
            seen += chunk.points
            points.extend(
                MetricPoint(job, chunk.attempt, p.at, p.step, p.values) for p in stored[skip:]
            )
    return points


def last_values(points: list[MetricPoint]) -> dict[str, tuple[int | None, float]]:
    """Metric name -> (step, value) of its last point."""
    last: dict[str, tuple[int | None, float]] = {}
    for point in points:
        for name, value in point.values.items():
            last[name] = (point.step, value)
    return last


def point_counts(points: list[MetricPoint]) -> dict[str, int]:
    """Metric name -> how many points carry it."""
    counts: dict[str, int] = {}
    for point in points:
        for name in point.values:
            counts[name] = counts.get(name, 0) + 1
    return counts
