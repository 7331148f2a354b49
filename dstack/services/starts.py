"""Starting a run's jobs through the compute: at submit, and a next attempt nobody else starts.

A failed start ends the attempt ``failed`` with the compute's line; when the line says the
cloud had no capacity, ``lifecycle.conclude`` records the next attempt instead if the
workflow's ``retry`` has ``no-capacity``, and it is started at once, until none is left.

Who starts a next attempt: on this machine, the job's supervisor (it outlives the runner).
On a cloud, the instance that recorded it powers off, and the runner cannot provision another
(its role cannot): any reader that sees the job ``submitted`` at a later attempt with nothing
to run it — an attached `dstack run`, `ps`, `logs` — claims the attempt, as one compare-and-swap
(``start_requested_at``, so one reader of several starts it), then starts it.
"""

from __future__ import annotations

import time

from dstack import retry, state
from dstack.compute.base import Compute
from dstack.errors import ComputeError
from dstack.lifecycle import Writer, conclude, move, set_state
from dstack.models import JobSpec, JobState, JobStatus, RunRecord
from dstack.storage.base import Storage


def start_jobs(
    storage: Storage, compute: Compute, run: RunRecord, jobs: list[JobSpec], writer: Writer
) -> None:
    """Start ``jobs`` of ``run``; a failed start is concluded for the jobs it concerns, and
    the next attempts the retry policy allows are started in turn. Raises the last
    ``ComputeError`` when a job ended failed because of it."""
    owner = run.owner.display
    while jobs:
        try:
            compute.start(storage, run, jobs)
            return
        except ComputeError as exc:
            failed = set(exc.job_indices or [job.job_index for job in jobs])
            retried = []
            for job in jobs:
                if job.job_index not in failed:
                    continue
                now = time.time()
                current = state.read_latest_job_state(storage, job)
                if current.status is not JobStatus.SUBMITTED:
                    continue  # stopped meanwhile, or another reader moved it on
                ended = current.model_copy(
                    update={"status": JobStatus.FAILED, "reason": str(exc),
                            "updated_at": now, "finished_at": now}
                )  # fmt: skip
                if retry.event_of(ended) != "no-capacity":  # starting again would fail again
                    set_state(storage, job, owner, writer, ended)
                    continue
                following = conclude(storage, job, owner, ended, writer, since=current.version)
                next_attempt = following.attempt > ended.attempt
                if next_attempt and claim(storage, job, following, owner, writer):
                    retried.append(job)
            if not retried:
                raise
            jobs = retried


def needs_start(job_state: JobState) -> bool:
    """Whether the job is at a later attempt that nothing is starting: submitted, with no
    runner, no supervisor to start it and no reader having claimed it."""
    return (
        job_state.status is JobStatus.SUBMITTED
        and job_state.attempt > 1
        and not job_state.runner_pid
        and not job_state.supervisor_pid
        and job_state.start_requested_at is None
    )


def claim(storage: Storage, spec: JobSpec, seen: JobState, owner: str, writer: Writer) -> bool:
    """Record that this reader starts the attempt ``seen`` is about; False when another
    writer recorded anything since (then it is theirs)."""
    moved = move(
        storage, spec, owner, writer,
        lambda current: None if current.version != seen.version else current.model_copy(
            update={"start_requested_at": time.time(), "updated_at": time.time()}
        ),
    )  # fmt: skip
    return moved.applied


def start_next_attempt(
    storage: Storage, compute: Compute, run: RunRecord, spec: JobSpec, seen: JobState
) -> JobState:
    """Claim and start the attempt of ``seen`` (``needs_start``); the job's state after."""
    owner = run.owner.display
    if not claim(storage, spec, seen, owner, Writer.CONCLUDER):
        return state.read_latest_job_state(storage, spec)
    try:
        start_jobs(storage, compute, run, [spec], Writer.CONCLUDER)
    except ComputeError:
        pass  # recorded as the attempt's end
    return state.read_latest_job_state(storage, spec)
