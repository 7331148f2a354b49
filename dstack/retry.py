"""Deciding whether a job that ended starts again as a new attempt of the same run.

Events: ``interruption`` (the runner or its machine went away: a reclaimed spot instance, a
killed process), ``error`` (the commands failed, optionally only with some exit codes, or the
job could not be prepared), ``no-capacity`` (the cloud had no instance to give). A stopped or
aborted job never restarts.
"""

from __future__ import annotations

import time

from dstack.models import JobState, JobStatus, RetryPolicy

NO_CAPACITY_PREFIX = "no capacity"


def event_of(job_state: JobState) -> str | None:
    """The retry event an ended attempt counts as, or None (done, stopped, aborted)."""
    if job_state.status is JobStatus.INTERRUPTED:
        return "interruption"
    if job_state.status is JobStatus.FAILED:
        if (job_state.reason or "").startswith(NO_CAPACITY_PREFIX):
            return "no-capacity"
        return "error"
    return None


def should_retry(
    policy: RetryPolicy | None, job_state: JobState, submitted_at: float, now: float | None = None
) -> bool:
    """Whether the attempt that ended in ``job_state`` is followed by another one."""
    if policy is None:
        return False
    event = event_of(job_state)
    if event is None or event not in policy.on:
        return False
    if (
        event == "error"
        and policy.exit_codes is not None
        and job_state.exit_code not in policy.exit_codes
    ):
        return False
    if job_state.attempt > policy.limit:
        return False
    deadline_passed = (
        policy.duration is not None and (now or time.time()) - submitted_at > policy.duration
    )
    return not deadline_passed


def describe_attempt_end(job_state: JobState, policy: RetryPolicy | None) -> str:
    """``attempt 1 interrupted (the runner process died); starting attempt 2 of 4``."""
    total = 1 + (policy.limit if policy else 0)
    why = f" ({job_state.reason})" if job_state.reason else ""
    return (
        f"attempt {job_state.attempt} {job_state.status.value}{why}; "
        f"starting attempt {job_state.attempt + 1} of {total}"
    )
