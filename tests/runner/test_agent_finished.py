"""A runner started for a job already finished refuses it (e.g. an instance an interrupted
create launched boots after the job was recorded failed): no re-run, no rewritten record."""

from __future__ import annotations

from pathlib import Path

from dstack import state
from dstack.models import JobState, JobStatus
from dstack.runner.agent import Agent
from dstack.storage.local import LocalStorage
from tests.records import REPO, one_job_run, put_job_state


def test_a_finished_job_is_refused(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    spec = one_job_run(storage)
    failed = JobState(status=JobStatus.FAILED, reason="provisioning interrupted", updated_at=5.0)
    put_job_state(storage, spec, "ada", failed)

    agent = Agent(storage, spec, work_root=tmp_path / "work", cache_dir=tmp_path / "cache")
    final = agent.run()

    assert final.status is JobStatus.FAILED
    after = state.read_job_state(storage, REPO.repo_id, "calm-cat-1", 0)
    assert after.status is JobStatus.FAILED and after.reason == "provisioning interrupted"
    assert after.updated_at == 5.0
    assert not (tmp_path / "work").exists()
