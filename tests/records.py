"""Arranging a store for a test: a submitted one-job run, and a job's state put in place
directly.

``put_job_state`` is a test double for the way a job gets to a state for real — its writers
moving it through ``dstack.lifecycle`` under the transition rules, tested in
``tests/test_lifecycle.py`` and end to end in ``tests/e2e`` — so that a test can start from
any state (a failed job, a job at its second attempt) without running one.
"""

from __future__ import annotations

from dstack import state
from dstack.models import JobSpec, JobState, Owner, RepoSnapshot, RunRecord
from dstack.storage.base import Storage

REPO = RepoSnapshot(repo_id="github.com/acme/mnist", code_key="codes/x.tar.gz")


def one_job_run(storage: Storage, run_name: str = "calm-cat-1") -> JobSpec:
    """A submitted run of one bash job by ``ada`` in ``REPO``; the job's spec."""
    run = RunRecord(
        run_name=run_name, repo_id=REPO.repo_id, workflow="train", provider="bash",
        submitted_at=1000.0, owner=Owner(user="ada"), job_count=1, repo=REPO,
    )  # fmt: skip
    spec = JobSpec(run_name=run_name, job_index=0, workflow="train", provider="bash",
                   repo=REPO, submitted_at=1000.0)  # fmt: skip
    state.create_run(storage, run, [spec])
    return spec


def put_job_state(storage: Storage, spec: JobSpec, owner: str, job_state: JobState) -> JobState:
    """Record ``job_state`` as the job's newest state, whatever the rules would say; the state
    as recorded (with its version)."""
    latest = state.read_latest_job_state(storage, spec)
    recorded = job_state.model_copy(update={"version": latest.version + 1})
    state.record_job_state(storage, spec, owner, recorded)
    return recorded
