"""``monitor.refresh`` as a reader on another machine sees a job: by its heartbeat alone."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from dstack import state
from dstack.compute.base import Compute
from dstack.models import JobSpec, JobState, JobStatus, Owner, RepoSnapshot, RunRecord
from dstack.services import monitor
from dstack.storage.base import Storage
from dstack.storage.local import LocalStorage
from tests.records import put_job_state


class Elsewhere(Compute):
    """The runner is on another machine: this reader cannot ask its process."""

    def check(self, jobs: list[JobSpec]) -> None:
        pass

    def start(self, storage: Storage, run: RunRecord, jobs: list[JobSpec]) -> None:
        raise AssertionError("nothing may be started")

    def is_alive(self, state: JobState) -> bool | None:
        return None

    def kill(self, state: JobState) -> None:
        pass


@pytest.fixture
def running(tmp_path: Path) -> tuple[Storage, JobSpec, JobState]:
    storage = LocalStorage(tmp_path / "store")
    repo = RepoSnapshot(repo_id="github.com/acme/mnist", code_key="codes/x.tar.gz")
    at = time.time() - 60
    record = RunRecord(
        run_name="calm-owl-1", repo_id=repo.repo_id, workflow="w", provider="bash",
        submitted_at=at, owner=Owner(git_name="Ada"), repo=repo,
    )  # fmt: skip
    spec = JobSpec(run_name="calm-owl-1", workflow="w", provider="bash", repo=repo, submitted_at=at)
    state.create_run(storage, record, [spec])
    job = JobState(status=JobStatus.RUNNING, runner_pid=4242, hostname="gpu-box", updated_at=at + 1)
    job = put_job_state(storage, spec, "Ada", job)
    write_beat(storage, spec, time.time() - 25)  # as old as an outage of the store
    return storage, spec, job


def run_of(storage: Storage, spec: JobSpec) -> RunRecord:
    return state.read_run(storage, spec.repo.repo_id, spec.run_name)


def write_beat(storage: Storage, spec: JobSpec, at: float) -> None:
    key = state.heartbeat_key(spec.repo.repo_id, spec.run_name, spec.job_index)
    storage.put(key, json.dumps({"t": at}).encode())


def test_a_runner_that_beats_again_after_an_outage_is_not_declared_lost(
    running: tuple[Storage, JobSpec, JobState], monkeypatch: pytest.MonkeyPatch
) -> None:
    storage, spec, job = running
    monkeypatch.setattr(monitor, "HEARTBEAT_GRACE", 5.0)
    monkeypatch.setattr(monitor, "HEARTBEAT_GRACE_POLL", 0.05)
    beat = threading.Timer(0.3, lambda: write_beat(storage, spec, time.time()))
    beat.start()
    start = time.monotonic()
    after = monitor.refresh(storage, Elsewhere(), run_of(storage, spec), spec, job)
    beat.join()
    assert after.status is JobStatus.RUNNING
    assert time.monotonic() - start < 2.0  # it stopped waiting at the fresh beat
    assert state.read_job_state(storage, spec.repo.repo_id, spec.run_name, 0).status is (
        JobStatus.RUNNING
    )


def test_a_runner_that_stays_silent_is_declared_lost(
    running: tuple[Storage, JobSpec, JobState], monkeypatch: pytest.MonkeyPatch
) -> None:
    storage, spec, job = running
    monkeypatch.setattr(monitor, "HEARTBEAT_GRACE", 0.3)
    monkeypatch.setattr(monitor, "HEARTBEAT_GRACE_POLL", 0.05)
    after = monitor.refresh(storage, Elsewhere(), run_of(storage, spec), spec, job)
    assert after.status is JobStatus.INTERRUPTED
    assert after.reason is not None and "no heartbeat from the runner" in after.reason


def test_a_fresh_heartbeat_costs_no_wait(
    running: tuple[Storage, JobSpec, JobState], monkeypatch: pytest.MonkeyPatch
) -> None:
    storage, spec, job = running
    monkeypatch.setattr(monitor, "HEARTBEAT_GRACE", 30.0)
    write_beat(storage, spec, time.time())
    start = time.monotonic()
    assert (
        monitor.refresh(storage, Elsewhere(), run_of(storage, spec), spec, job).status
        is JobStatus.RUNNING
    )
    assert time.monotonic() - start < 1.0
