"""What follows an attempt of a job that has ended: the job's final state, or the next attempt.

Whoever sees an attempt end calls :func:`conclude`: the runner itself (the commands exited, or
it could not prepare the job), the local supervisor (the runner was killed), or a reader that
found the runner gone. When the workflow's ``retry`` allows another attempt, the job goes back
to ``submitted`` with the next attempt number — it never shows a finished status in between, so
an attached CLI keeps following — the ended attempt is kept under ``attempts/`` and a line in
the job's log marks the boundary.
"""

from __future__ import annotations

import time

from dstack import retry, state
from dstack.models import JobSpec, JobState, JobStatus
from dstack.storage.base import Storage

ABORT_REASON = "aborted by request"


def conclude(storage: Storage, spec: JobSpec, owner: str, ended: JobState) -> JobState:
    """Record the end of an attempt; return the job's state afterwards.

    A runner that died after an abort was asked for was killed by it (``dstack stop -x`` kills
    the runner, then records ``aborted``): whoever concludes first records ``aborted`` too, so
    the two writes agree in either order."""
    request = state.stop_requested(storage, spec)
    if request == "abort" and ended.status is JobStatus.INTERRUPTED:
        ended = ended.model_copy(update={"status": JobStatus.ABORTED, "reason": ABORT_REASON})
    if request or not retry.should_retry(spec.retry, ended, spec.submitted_at):
        state.write_job_state(storage, spec, owner, ended)
        return ended
    state.record_attempt(storage, spec, ended)
    message = retry.describe_attempt_end(ended, spec.retry)
    marker = f"\n[dstack] {message}\n".encode()
    state.write_log_chunk(storage, spec, state.next_log_seq(storage, spec), marker)
    following = JobState(
        status=JobStatus.SUBMITTED,
        reason=message,
        attempt=ended.attempt + 1,
        updated_at=time.time(),
        supervisor_pid=ended.supervisor_pid,
        supervisor_started=ended.supervisor_started,
        hostname=ended.hostname,
    )
    state.write_job_state(storage, spec, owner, following)
    return following
