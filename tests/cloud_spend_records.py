"""Arranging a store with cloud runs for the spend tests: a run submitted on AWS with its quoted
price, and each attempt's state as its runner would have recorded it.

The states are put in place directly (``tests.records.put_job_state``, a test double for a
runner moving a job through ``dstack.lifecycle``); a real cloud run writes the same records in
``tests/compute/aws/test_spend.py``."""

from __future__ import annotations

from dstack import state
from dstack.models import (
    InfraRecord,
    JobSpec,
    JobState,
    JobStatus,
    Owner,
    RepoSnapshot,
    Resources,
    RunRecord,
)
from dstack.storage.base import Storage
from tests.records import put_job_state

REPO = RepoSnapshot(repo_id="github.com/acme/mnist", code_key="codes/x.tar.gz")
HOUR = 3600.0


def cloud_run(
    storage: Storage,
    run_name: str,
    *,
    submitted_at: float,
    price: float = 3.06,
    owner: str = "ada",
    repo: RepoSnapshot = REPO,
    max_duration: float = 2 * HOUR,
    compute: str = "aws",
) -> tuple[RunRecord, JobSpec]:
    """A one-job run submitted on ``compute`` at ``submitted_at``, quoted at ``price`` $/h."""
    run = RunRecord(
        run_name=run_name, repo_id=repo.repo_id, workflow="train", provider="bash",
        submitted_at=submitted_at, owner=Owner(git_name=owner, user=owner), job_count=1,
        repo=repo, compute=compute,
    )  # fmt: skip
    spec = JobSpec(
        run_name=run_name, job_index=0, workflow="train", provider="bash", repo=repo,
        submitted_at=submitted_at, spot_policy="on-demand",
        resources=Resources(),
        price_per_hour=price if compute != "local" else None,
        max_duration=max_duration if compute != "local" else None,
    )  # fmt: skip
    state.create_run(storage, run, [spec])
    if compute != "local":  # what provisioning records first, before anything is created
        state.write_infra_record(
            storage, run.repo_id, run.run_name,
            InfraRecord(kind="plan", stack=run_name, at=submitted_at),
        )  # fmt: skip
    return run, spec


def ran(
    storage: Storage,
    spec: JobSpec,
    started_at: float,
    finished_at: float | None,
    *,
    attempt: int = 1,
    instance_id: str | None = "i-0123456789abcdef0",
    status: JobStatus | None = None,
) -> JobState:
    """The job's attempt as its runner recorded it: started, and finished unless
    ``finished_at`` is None."""
    final = status or (JobStatus.DONE if finished_at is not None else JobStatus.RUNNING)
    owner = state.read_run(storage, spec.repo.repo_id, spec.run_name).owner.display
    return put_job_state(
        storage, spec, owner,
        JobState(status=final, attempt=attempt, started_at=started_at, finished_at=finished_at,
                 updated_at=finished_at or started_at, instance_id=instance_id),
    )  # fmt: skip
