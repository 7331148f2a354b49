"""Runs written straight through the state layer, as dstack writes them (for listings)."""

from __future__ import annotations

import time

from dstack import state
from dstack.lifecycle import Writer, set_state
from dstack.models import JobSpec, JobState, JobStatus, Owner, RepoSnapshot, RunRecord
from dstack.storage.base import Storage


def seed_runs(storage: Storage, repo_id: str, count: int, *, workflow: str = "echo") -> None:
    """``count`` finished runs named ``seeded-<i>``, the last one newest."""
    repo = RepoSnapshot(repo_id=repo_id, code_key="codes/x.tar.gz")
    owner = Owner(git_name="Seed", user="seed")
    start = time.time() - count
    for i in range(count):
        name, at = f"seeded-{i}", start + i
        record = RunRecord(
            run_name=name, repo_id=repo_id, workflow=workflow, provider="bash",
            submitted_at=at, owner=owner, repo=repo,
        )  # fmt: skip
        spec = JobSpec(
            run_name=name, workflow=workflow, provider="bash", repo=repo, submitted_at=at,
            commands=["echo hello"],
        )  # fmt: skip
        state.create_run(storage, record, [spec])
        done = JobState(status=JobStatus.DONE, exit_code=0, updated_at=at + 1)
        set_state(storage, spec, owner.display, Writer.RUNNER, done)
