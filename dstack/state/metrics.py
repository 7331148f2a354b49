"""A job's metric points in the store: the chunks its runner writes, and reading them back.

A chunk (``keys.metric_chunk_key``) holds points of one attempt as JSON lines, one point a
line: ``{"at": <unix time>, "step": <int or null>, "values": {"<name>": <number>, ...}}``.
Chunks are numbered within their attempt and written in order, so listing a job's
``metrics/`` prefix gives its points in the order they were written: attempt, then line.
The key says how many points a chunk holds, so a reader who wants only newer points skips
older chunks by their keys alone.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass

from dstack.models import JobSpec
from dstack.state.keys import metric_chunk_key, metrics_prefix, parse_metric_chunk_key
from dstack.storage.base import Storage

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredPoint:
    """One metric point as stored: when the runner read it, its step, its values."""

    at: float
    step: int | None
    values: dict[str, float]


@dataclass(frozen=True)
class MetricChunk:
    """A chunk's place in the job's series, from its key."""

    key: str
    attempt: int
    seq: int
    points: int


def encode_points(points: list[StoredPoint]) -> bytes:
    lines = [
        json.dumps({"at": p.at, "step": p.step, "values": p.values}, separators=(",", ":"))
        for p in points
    ]
    return ("\n".join(lines) + "\n").encode()


def decode_points(data: bytes, key: str) -> list[StoredPoint]:
    """The points of a chunk; a line that is not a point (a damaged object) is left out and
    logged, so one bad chunk never hides the rest of a run's metrics.

    The lines are parsed as one JSON array (one call into the C parser, not one a line: a
    run of 100,000 points reads in a fraction of a second); only a chunk that does not parse
    so is parsed line by line, to keep what it can."""
    lines = data.splitlines()
    try:
        objects: list[object] = json.loads(b"[" + b",".join(lines) + b"]")
    except (ValueError, RecursionError):
        objects = [_parse(line) for line in lines]
    if len(objects) != len(lines):  # a line held two objects, or a blank one: line by line
        objects = [_parse(line) for line in lines]
    points = []
    for number, raw in enumerate(objects, 1):
        point = _point(raw)
        if point is None:
            logger.warning("metric chunk %s: line %d is not a metric point; left out", key, number)
            continue
        points.append(point)
    return points


def write_metric_chunk(
    storage: Storage, spec: JobSpec, attempt: int, seq: int, points: list[StoredPoint]
) -> str:
    key = metric_chunk_key(spec, attempt, seq, len(points))
    storage.put(key, encode_points(points))
    return key


def next_metric_seq(storage: Storage, spec: JobSpec, attempt: int) -> int:
    """The number the attempt's next metric chunk takes (one list request)."""
    prefix = metrics_prefix(spec.repo.repo_id, spec.run_name, spec.job_index)
    seq = 0
    for info in storage.list_objects(prefix + f"{attempt:04d}-"):
        parsed = parse_metric_chunk_key(info.key)
        if parsed is not None:
            seq = max(seq, parsed[1] + 1)
    return seq


def list_metric_chunks(
    storage: Storage, repo_id: str, run_name: str, job_index: int
) -> Iterator[MetricChunk]:
    """The job's metric chunks in the order they were written (attempt, then number)."""
    for info in storage.list_objects(metrics_prefix(repo_id, run_name, job_index)):
        parsed = parse_metric_chunk_key(info.key)
        if parsed is not None:
            yield MetricChunk(info.key, *parsed)


def _parse(line: bytes) -> object:
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return None


def _point(raw: object) -> StoredPoint | None:
    """A stored point, as its runner checked it when it wrote it (``runner.metrics``); a
    damaged one gives None (the values are converted, not checked again: a point per
    microsecond matters when a run has 100,000)."""
    if not isinstance(raw, dict):
        return None
    try:
        at = float(raw["at"])
        step = raw["step"]
        values = {str(name): float(value) for name, value in raw["values"].items()}
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
        return None
    if step is not None and type(step) is not int:
        return None
    return StoredPoint(at=at, step=step, values=values)


def finite_number(value: object) -> float | None:
    """``value`` as a float when it is a JSON number (int or float, not bool) that is finite
    as a float; else None."""
    if type(value) not in (int, float):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except OverflowError:  # an int beyond a float's range
        return None
    return number if math.isfinite(number) else None
