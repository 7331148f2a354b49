"""The rules every writer of a job's state obeys, below the runner and the services alike.

Each change is a compare-and-swap (``move``): decided from the newest recorded state and
recorded as the next version only if nobody recorded one meanwhile; which writer may move a job
from which status to which is one table (``check``). The writers and their rules:
docs/design/job-lifecycle.md.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

from dstack import retry, state
from dstack.errors import AlreadyExistsError, TagExistsError
from dstack.models import JobSpec, JobState, JobStatus, RunRecord
from dstack.storage.base import Storage

ABORT_REASON = "aborted by request"


class Writer(str, enum.Enum):
    SUBMITTER = "submitter"
    RUNNER = "runner"
    STOPPER = "stopper"
    CONCLUDER = "concluder"


#: the statuses each writer may record
WRITES: dict[Writer, frozenset[JobStatus]] = {
    Writer.SUBMITTER: frozenset({JobStatus.SUBMITTED, JobStatus.FAILED}),
    Writer.RUNNER: frozenset(JobStatus),
    Writer.STOPPER: frozenset({JobStatus.ABORTED}),
    Writer.CONCLUDER: frozenset(
        {JobStatus.SUBMITTED, JobStatus.INTERRUPTED, JobStatus.FAILED, JobStatus.ABORTED}
    ),
}

#: how far along its attempt an active job is: the runner never moves it back
_STAGE = {
    JobStatus.SUBMITTED: 0,
    JobStatus.PROVISIONING: 1,
    JobStatus.DOWNLOADING: 2,
    JobStatus.RUNNING: 3,
    JobStatus.STOPPING: 4,
    JobStatus.UPLOADING: 4,
}


def check(writer: Writer, current: JobState, new: JobState) -> str | None:
    """Why ``writer`` may not move the job from ``current`` to ``new``; None when it may."""
    if current.status.is_finished:
        return f"the job is already {current.status.value}"
    if new.attempt < current.attempt:
        return f"attempt {new.attempt} is over: the job is at attempt {current.attempt}"
    if new.status is JobStatus.PROVISIONING and current.status is not JobStatus.SUBMITTED:
        return f"attempt {current.attempt} was started by another runner"
    if new.attempt == current.attempt and new.status is current.status:
        return None  # a note on the same state (the runner's ports, the supervisor's pid)
    if new.status not in WRITES[writer]:
        return f"the {writer.value} does not record {new.status.value}"
    if new.attempt > current.attempt:
        if new.attempt != current.attempt + 1 or new.status is not JobStatus.SUBMITTED:
            return "a next attempt starts as submitted, one attempt at a time"
        return None
    if new.status.is_finished:
        return None
    if writer is Writer.RUNNER and _STAGE[new.status] >= _STAGE[current.status]:
        return None
    return f"the {writer.value} does not move a {current.status.value} job to {new.status.value}"


@dataclass(frozen=True)
class Moved:
    """The outcome of ``move``: the job's state afterwards, and whether it is the change
    asked for (False: another writer's state, which made the change disallowed or moot)."""

    state: JobState
    applied: bool
    refused: str | None = None


def move(
    storage: Storage,
    spec: JobSpec,
    owner: str,
    writer: Writer,
    change: Callable[[JobState], JobState | None],
) -> Moved:
    """Change the job's state as ``change`` decides from the newest recorded state, as one
    compare-and-swap; when another writer records a state first, decide again from it.

    ``change`` returns the new state (its ``version`` and ``updated_at`` are set here) or None
    to leave the job as it is. A change the rules do not allow is not recorded: the result
    says why (``refused``). Raises StorageError when the store fails.
    """
    while True:
        current = state.read_latest_job_state(storage, spec)
        wanted = change(current)
        if wanted is None:
            return Moved(current, applied=False)
        problem = check(writer, current, wanted)
        if problem is not None:
            return Moved(current, applied=False, refused=problem)
        new = wanted.model_copy(
            update={
                "version": current.version + 1,
                # heads order states by time: never behind the state this one follows
                "updated_at": max(wanted.updated_at or time.time(), current.updated_at + 0.001),
            }
        )
        try:
            state.record_job_state(storage, spec, owner, new)
        except AlreadyExistsError:
            continue  # another writer recorded this version first: decide again
        return Moved(new, applied=True)


def set_state(storage: Storage, spec: JobSpec, owner: str, writer: Writer, new: JobState) -> Moved:
    """``move`` to ``new`` whatever the current state (the rules still apply)."""
    return move(storage, spec, owner, writer, lambda current: new)


def conclude(
    storage: Storage,
    spec: JobSpec,
    owner: str,
    ended: JobState,
    writer: Writer,
    *,
    since: int | None = None,
) -> JobState:
    """Record the end of an attempt, or the next attempt when the workflow's ``retry`` allows
    it; the job's state afterwards.

    A runner that died after an abort was asked for was killed by it (``dstack stop -x`` kills
    the runner, then records ``aborted``): whoever concludes first records ``aborted`` too, so
    the two writes agree in either order. Of two writers concluding the same attempt, one
    records it; the other gets the recorded state back. With ``since``, nothing is recorded
    unless the job is still at that version (the end was judged from it).
    """

    def unless_moved(new: JobState) -> Callable[[JobState], JobState | None]:
        return lambda current: None if since is not None and current.version != since else new

    request = state.stop_requested(storage, spec)
    if request == "abort" and ended.status is JobStatus.INTERRUPTED:
        ended = ended.model_copy(update={"status": JobStatus.ABORTED, "reason": ABORT_REASON})
    if request or not retry.should_retry(spec.retry, ended, spec.submitted_at):
        return move(storage, spec, owner, writer, unless_moved(ended)).state
    message = retry.describe_attempt_end(ended, spec.retry)
    following = JobState(
        status=JobStatus.SUBMITTED,
        reason=message,
        attempt=ended.attempt + 1,
        updated_at=time.time(),
        supervisor_pid=ended.supervisor_pid,
        supervisor_started=ended.supervisor_started,
        hostname=ended.hostname,
    )
    moved = move(storage, spec, owner, writer, unless_moved(following))
    if moved.applied:
        state.record_attempt(storage, spec, ended)
        marker = f"\n[dstack] {message}\n".encode()
        state.write_log_chunk(storage, spec, state.next_log_seq(storage, spec), marker)
    return moved.state


def tag_on_success(storage: Storage, run: RunRecord, job_index: int) -> str | None:
    """Called by the runner of a job of a run submitted with ``-t`` once the job succeeded,
    before it records ``done`` (so whoever sees the run done finds the tag). Each job marks
    itself succeeded, then counts the marks: the last to mark (or several, racing) writes the
    tag, idempotently. Returns a line for the job's log when the tag was not moved."""
    assert run.tag is not None
    state.mark_job_succeeded(storage, run.repo_id, run.run_name, job_index)
    if state.succeeded_jobs(storage, run.repo_id, run.run_name) < run.job_count:
        return None
    tag = state.run_tag(storage, run, run.tag, run.owner)
    try:
        state.create_tag(storage, tag, replace=run.replace_tag)
    except TagExistsError as exc:
        return f"{exc}; it was not moved (`dstack tags add {run.tag} {run.run_name} -y` moves it)"
    return None
