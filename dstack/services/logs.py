"""Following a run: its output chunks in order, and its status changes, from the store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from dstack import state
from dstack.models import JobState
from dstack.services import monitor
from dstack.services.context import Context
from dstack.services.runs import RunView


@dataclass
class Output:
    job_index: int
    data: bytes


@dataclass
class StatusChange:
    job_index: int
    state: JobState


@dataclass
class Missing:
    """Output the store should hold and does not: a log chunk deleted or emptied."""

    job_index: int
    message: str


@dataclass
class StoreProblem:
    """The store cannot be written (a full disk): the run's output and status wait in its
    runner until it can. ``message`` is None once it can be written again."""

    message: str | None


Event = Output | StatusChange | Missing | StoreProblem

PROBE_INTERVAL = 2.0  # seconds between checks that the store can be written, while attached


def _gap(job_id: str, first: int, last: int) -> str:
    which = f"chunk {first}" if first == last else f"chunks {first}-{last}"
    return f"log {which} of job {job_id} missing from the store: deleted by someone"


def follow(
    ctx: Context, view: RunView, *, attach: bool = True, since: float | None = None
) -> Iterator[Event]:
    """Yield the run's output from the start (or from ``since``), then, with ``attach``, new
    output and status changes as they happen until every job has finished."""
    storage = ctx.storage
    cursors: list[str | None] = [None] * len(view.jobs)
    expected = [0] * len(view.jobs)  # the next chunk number of each job
    states = list(view.states)
    for i, st in enumerate(states):
        yield StatusChange(i, st)
    problem: str | None = None
    probe_at = time.monotonic() + PROBE_INTERVAL
    while True:
        finished_before = all(s.status.is_finished for s in states)
        for i, job in enumerate(view.jobs):
            prefix = state.logs_prefix(job.repo.repo_id, job.run_name, job.job_index)
            for info in storage.list_objects(prefix, after=cursors[i]):
                cursors[i] = info.key
                seq = state.chunk_seq(info.key)
                if seq is not None and seq > expected[i]:
                    yield Missing(i, _gap(job.job_id, expected[i], seq - 1))
                expected[i] = max(expected[i], (seq or 0) + 1)
                if since is not None and state.chunk_time(info.key) < since:
                    continue
                data = storage.get(info.key)
                if not data:
                    yield Missing(
                        i, f"log chunk {seq} of job {job.job_id} is empty: it was emptied"
                    )
                yield Output(i, data)
        if not attach or finished_before:
            for i, job in enumerate(view.jobs):
                written = states[i].log_chunks
                if written is not None and written > expected[i]:
                    yield Missing(i, _gap(job.job_id, expected[i], written - 1))
            return
        for i, job in enumerate(view.jobs):
            if states[i].status.is_finished:
                continue
            fresh = state.read_job_state(storage, job.repo.repo_id, job.run_name, job.job_index)
            fresh = monitor.refresh(storage, ctx.compute, view.run, job, fresh)
            if fresh.status != states[i].status:
                yield StatusChange(i, fresh)
            states[i] = fresh
        if not all(s.status.is_finished for s in states):
            if time.monotonic() >= probe_at:
                probe_at = time.monotonic() + PROBE_INTERVAL
                found = storage.write_problem()
                if found != problem:
                    problem = found
                    yield StoreProblem(found)
            time.sleep(storage.poll_interval)
