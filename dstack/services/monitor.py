"""Noticing jobs whose runner is gone, so that no job stays "running" forever.

Whoever looks at a job (an attached CLI, `ps`, `logs`) checks it: on the runner's own machine
by its process, elsewhere by its heartbeat. A dead runner's job is recorded as ``interrupted``
and its leftover processes are killed; a runner that never started (or whose compute says it
never will: a cloud instance whose boot failed) is recorded as ``failed``.
What follows (the end, or another attempt) is decided by ``dstack.lifecycle.conclude``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from dstack import state
from dstack.compute.base import Compute, StartFailure
from dstack.errors import StorageError
from dstack.lifecycle import Writer, conclude
from dstack.models import JobSpec, JobState, JobStatus, RunRecord
from dstack.services import starts
from dstack.state import pins
from dstack.storage.base import Storage

#: how long a reader watches a stale heartbeat for a fresh beat before it declares the runner
#: lost (see ``_beats_again``), and how often it looks meanwhile
HEARTBEAT_GRACE = 8.0
HEARTBEAT_GRACE_POLL = 0.5
#: how the grace is waited and timed (tests pass a fake clock)
sleep: Callable[[float], None] = time.sleep
monotonic: Callable[[], float] = time.monotonic


def refresh(
    storage: Storage, compute: Compute, run: RunRecord, spec: JobSpec, job_state: JobState
) -> JobState:
    """``job_state``, or the state it must now be recorded as because its runner is gone;
    a next attempt nothing else starts (a cloud's) is started (``starts``)."""
    if job_state.status.is_finished:
        return job_state
    if (
        starts.needs_start(job_state)
        and run.compute == compute.name
        # only the machine holding the pin of the submitter's spec starts another attempt
        and pins.recall(storage, spec.repo.repo_id, spec.run_name, spec.job_index) is not None
    ):
        return starts.start_next_attempt(storage, compute, run, spec, job_state)
    owner = run.owner.display
    verdict = _verdict(storage, compute, spec, job_state)
    if verdict is None:
        return job_state
    status, reason = verdict
    # Another reader or the runner itself may have moved on meanwhile: re-read first.
    latest = state.read_latest_job_state(storage, spec)
    if latest.version != job_state.version:
        return latest
    if isinstance(reason, StartFailure):
        if reason.log:  # what the user sees of it, kept with the job's log
            state.write_log_chunk(
                storage, spec, state.next_log_seq(storage, spec), reason.log.encode()
            )
        reason = reason.reason
    compute.kill(job_state)
    now = time.time()
    ended = latest.model_copy(
        update={"status": status, "reason": reason, "updated_at": now, "finished_at": now}
    )
    if spec.retry is not None and (
        pins.recall(storage, spec.repo.repo_id, spec.run_name, spec.job_index) is None
    ):
        # only the machine holding the pin of the submitter's spec starts another attempt
        spec = spec.model_copy(update={"retry": None})
        ended = ended.model_copy(
            update={"reason": f"{reason}; not retried: only its submitter's machine retries it"}
        )
    try:
        # recorded only if the job is still where the verdict saw it (a compare-and-swap)
        following = conclude(storage, spec, owner, ended, Writer.CONCLUDER, since=latest.version)
        if following.status.is_active and following.attempt > ended.attempt:
            # the retry policy asks for another attempt
            following = starts.start_next_attempt(storage, compute, run, spec, following)
    except StorageError:
        return job_state
    return following


def _verdict(
    storage: Storage, compute: Compute, spec: JobSpec, job_state: JobState
) -> tuple[JobStatus, str | StartFailure] | None:
    now = time.time()
    if (
        job_state.status is JobStatus.SUBMITTED
        and not job_state.runner_pid
        and not job_state.supervisor_pid
    ):
        failure = compute.start_failure(storage, spec, job_state)
        if failure is not None:
            return JobStatus.FAILED, failure
        timeout = compute.start_timeout
        if now - max(job_state.updated_at, spec.submitted_at) > timeout:
            return JobStatus.FAILED, f"the runner did not start within {timeout:.0f}s"
        return None
    alive = compute.is_alive(job_state)
    if alive is True:
        return None
    if alive is False:
        return JobStatus.INTERRUPTED, "the runner process died"
    beat = state.last_heartbeat(storage, spec) or job_state.updated_at
    if now - beat <= state.HEARTBEAT_TIMEOUT or _beats_again(storage, spec, beat):
        return None
    return JobStatus.INTERRUPTED, f"no heartbeat from the runner for {time.time() - beat:.0f}s"


def _beats_again(storage: Storage, spec: JobSpec, beat: float) -> bool:
    """Whether a heartbeat newer than ``beat`` arrives within ``HEARTBEAT_GRACE`` seconds.

    A stale heartbeat alone does not prove a runner dead: after the store was unreachable for
    everyone (an outage, a network partition), every live runner's last beat is as old as the
    outage until its next write gets through — at most its retry backoff (``aws_errors``
    waits up to 5 s between attempts) plus one heartbeat interval later. A reader on the
    runner's own machine asks the process instead and never waits here.
    """
    deadline = monotonic() + HEARTBEAT_GRACE
    while monotonic() < deadline:
        sleep(min(HEARTBEAT_GRACE_POLL, max(0.0, deadline - monotonic())))
        latest = state.last_heartbeat(storage, spec)
        if latest is not None and latest > beat:
            return True
    return False
