"""The store layout: heads, the active index, listing cost, deletion."""

from __future__ import annotations

from pathlib import Path

import pytest

from dstack import state
from dstack.errors import StorageError
from dstack.models import JobSpec, JobState, JobStatus, Owner, RepoSnapshot, RunRecord
from dstack.storage.local import LocalStorage
from tests.records import put_job_state

REPO = RepoSnapshot(repo_id="github.com/acme/mnist", code_key="codes/x.tar.gz")
OWNER = Owner(git_name="Ada", user="ada")


def make_run(storage: LocalStorage, name: str, at: float, jobs: int = 1) -> list[JobSpec]:
    record = RunRecord(
        run_name=name, repo_id=REPO.repo_id, workflow="train", provider="bash",
        submitted_at=at, owner=OWNER, repo=REPO, job_count=jobs,
    )  # fmt: skip
    specs = [
        JobSpec(
            run_name=name,
            job_index=i,
            workflow="train",
            provider="bash",
            repo=REPO,
            submitted_at=at,
        )
        for i in range(jobs)
    ]
    state.create_run(storage, record, specs)
    return specs


def test_status_change_moves_the_head_and_leaves_one(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    [spec] = make_run(storage, "bold-owl-1", 1000.0)
    put_job_state(storage, spec, "Ada", JobState(status=JobStatus.RUNNING, updated_at=1001))
    put_job_state(
        storage, spec, "Ada", JobState(status=JobStatus.FAILED, exit_code=3, updated_at=1002)
    )
    heads = list(storage.list_objects(state.heads_prefix(REPO.repo_id)))
    assert len(heads) == 1
    [summary] = state.list_runs(storage, REPO.repo_id)
    assert (summary.status, summary.exit_code, summary.owner) == (JobStatus.FAILED, 3, "Ada")
    assert state.list_active_runs(storage, REPO.repo_id) == []


def test_a_stale_duplicate_head_is_ignored(tmp_path: Path) -> None:
    """A writer that died between writing the new head and deleting the old one."""
    storage = LocalStorage(tmp_path)
    [spec] = make_run(storage, "bold-owl-1", 1000.0)
    done = JobState(status=JobStatus.DONE, exit_code=0, updated_at=1005)
    storage.put(state.head_key(spec, "Ada", done), b"")  # new head written, old not deleted
    [summary] = state.list_runs(storage, REPO.repo_id)
    assert summary.status is JobStatus.DONE


def test_runs_are_listed_newest_first_and_limit_stops_early(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    for i in range(5):
        make_run(storage, f"run-{i}", 1000.0 + i)
    names = [r.run_name for r in state.list_runs(storage, REPO.repo_id)]
    assert names == ["run-4", "run-3", "run-2", "run-1", "run-0"]
    assert [r.run_name for r in state.list_runs(storage, REPO.repo_id, limit=2)] == [
        "run-4",
        "run-3",
    ]


def test_multi_job_run_folds_into_one_summary(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    specs = make_run(storage, "team-run-1", 1000.0, jobs=3)
    put_job_state(storage, specs[0], "Ada", JobState(status=JobStatus.DONE, updated_at=1001))
    put_job_state(storage, specs[1], "Ada", JobState(status=JobStatus.RUNNING, updated_at=1001))
    [summary] = state.list_runs(storage, REPO.repo_id)
    assert summary.job_count == 3
    assert summary.status is JobStatus.SUBMITTED  # the least advanced active job
    [active] = state.list_active_runs(storage, REPO.repo_id)
    assert active.run_name == "team-run-1"


def test_delete_run_removes_everything(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    [spec] = make_run(storage, "bold-owl-1", 1000.0)
    state.write_log_chunk(storage, spec, 0, b"hello\n")
    record = state.read_run(storage, REPO.repo_id, "bold-owl-1")
    state.delete_run(storage, record)
    assert list(storage.list_objects("repos/")) == []


def test_a_truncated_run_record_is_a_one_line_storage_error(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    make_run(storage, "bold-owl-1", 1000.0)
    key = state.run_key(REPO.repo_id, "bold-owl-1")
    storage.put(key, storage.get(key)[:20])  # a write cut short
    with pytest.raises(StorageError) as excinfo:
        state.read_run(storage, REPO.repo_id, "bold-owl-1")
    message = str(excinfo.value)
    assert key in message and "RunRecord" in message
    assert "\n" not in message


def test_a_job_state_of_the_wrong_shape_is_a_one_line_storage_error(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    make_run(storage, "bold-owl-1", 1000.0)
    key = state.state_key(REPO.repo_id, "bold-owl-1", 0)
    storage.put(key, b'{"status": "no-such-status", "exit_code": "three"}')  # valid JSON
    with pytest.raises(StorageError) as excinfo:
        state.read_job_state(storage, REPO.repo_id, "bold-owl-1", 0)
    message = str(excinfo.value)
    assert key in message and "JobState" in message
    assert "\n" not in message


def test_an_unreadable_stack_record_is_skipped_when_listing(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    storage.put(state.stack_record_key("broken"), b"{not json")
    assert state.list_stack_records(storage) == []
    with pytest.raises(StorageError, match="broken"):
        state.read_stack_record(storage, "broken")


def test_a_job_cannot_add_an_infra_record_through_the_earlier_layout(tmp_path: Path) -> None:
    """The earlier keys sit in the run's prefix, which its instance role may write: a record a
    job plants there is not read for a run whose plan is at the current key."""
    from dstack.models import InfraRecord, dump

    storage = LocalStorage(tmp_path)
    repo, run = REPO.repo_id, "wise-owl-1"
    state.write_infra_record(storage, repo, run, InfraRecord(kind="plan", stack=run, at=1.0))
    state.write_infra_record(storage, repo, run, InfraRecord(kind="up", stack=run, at=2.0))
    forged = InfraRecord(kind="destroy", stack=run, at=3.0, by="someone@else")
    storage.put(state.legacy_infra_key(repo, run, "destroy"), dump(forged))
    records = state.read_infra_records(storage, repo, run)
    assert [r.kind for r in records] == ["plan", "up"]
