"""Noticing jobs whose runner is gone, so that no job stays "running" forever.

Whoever looks at a job (an attached CLI, `ps`, `logs`) checks it: on the runner's own machine
by its process, elsewhere by its heartbeat. A dead runner's job is recorded as ``interrupted``
and its leftover processes are killed; a runner that never started is recorded as ``failed``.
"""

from __future__ import annotations

import time

from dstack import state
from dstack.backends.base import Compute, Storage
from dstack.errors import StorageError
from dstack.models import JobSpec, JobState, JobStatus

START_TIMEOUT = 30.0


def refresh(
    storage: Storage, compute: Compute, spec: JobSpec, job_state: JobState, owner: str
) -> JobState:
    """``job_state``, or the state it must now be recorded as because its runner is gone."""
    if job_state.status.is_finished:
        return job_state
    verdict = _verdict(storage, compute, spec, job_state)
    if verdict is None:
        return job_state
    status, reason = verdict
    # Another reader or the runner itself may have moved on meanwhile: re-read first.
    latest = state.read_job_state(storage, spec.repo.repo_id, spec.run_name, spec.job_index)
    if latest.status.is_finished or latest.updated_at > job_state.updated_at:
        return latest
    compute.kill(job_state)
    now = time.time()
    final = latest.model_copy(
        update={"status": status, "reason": reason, "updated_at": now, "finished_at": now}
    )
    try:
        state.write_job_state(storage, spec, owner, final)
    except StorageError:
        return job_state
    return final


def _verdict(
    storage: Storage, compute: Compute, spec: JobSpec, job_state: JobState
) -> tuple[JobStatus, str] | None:
    now = time.time()
    if job_state.status is JobStatus.SUBMITTED and not job_state.runner_pid:
        if now - max(job_state.updated_at, spec.submitted_at) > START_TIMEOUT:
            return JobStatus.FAILED, f"the runner did not start within {START_TIMEOUT:.0f}s"
        return None
    alive = compute.is_alive(job_state)
    if alive is True:
        return None
    if alive is False:
        return JobStatus.INTERRUPTED, "the runner process died"
    beat = state.last_heartbeat(storage, spec) or job_state.updated_at
    if now - beat > state.HEARTBEAT_TIMEOUT:
        return JobStatus.INTERRUPTED, f"no heartbeat from the runner for {now - beat:.0f}s"
    return None
