"""Arranging a store for a test: a job's state put in place directly.

``put_job_state`` is a test double for the way a job gets to a state for real — its writers
moving it through ``dstack.lifecycle`` under the transition rules, tested in
``tests/test_lifecycle.py`` and end to end in ``tests/e2e`` — so that a test can start from
any state (a failed job, a job at its second attempt) without running one.
"""

from __future__ import annotations

from dstack import state
from dstack.models import JobSpec, JobState
from dstack.storage.base import Storage


def put_job_state(storage: Storage, spec: JobSpec, owner: str, job_state: JobState) -> JobState:
    """Record ``job_state`` as the job's newest state, whatever the rules would say; the state
    as recorded (with its version)."""
    latest = state.read_latest_job_state(storage, spec)
    recorded = job_state.model_copy(update={"version": latest.version + 1})
    state.record_job_state(storage, spec, owner, recorded)
    return recorded
