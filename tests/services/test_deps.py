"""Resolving deps to runs at submit: tags, latest successful runs, other repos, and the errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from dstack import state
from dstack.errors import SpecError
from dstack.models import (
    Dependency,
    JobSpec,
    JobState,
    JobStatus,
    Owner,
    RepoSnapshot,
    RunRecord,
    Tag,
)
from dstack.services.deps import other_repo_id, resolve
from dstack.spec.models import DepRef
from dstack.storage.local import LocalStorage
from tests.records import put_job_state

REPO = "github.com/acme/mnist"
OWNER = Owner(git_name="Ada", user="ada")


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "store")


def make_run(
    storage: LocalStorage,
    name: str,
    workflow: str,
    at: float,
    status: JobStatus = JobStatus.DONE,
    repo_id: str = REPO,
    jobs: int = 1,
) -> RunRecord:
    repo = RepoSnapshot(repo_id=repo_id, code_key="codes/x.tar.gz")
    record = RunRecord(
        run_name=name,
        repo_id=repo_id,
        workflow=workflow,
        provider="bash",
        submitted_at=at,
        owner=OWNER,
        repo=repo,
        job_count=jobs,
    )
    specs = [
        JobSpec(
            run_name=name,
            job_index=i,
            workflow=workflow,
            provider="bash",
            repo=repo,
            submitted_at=at,
        )
        for i in range(jobs)
    ]
    state.create_run(storage, record, specs)
    for spec in specs:
        put_job_state(storage, spec, "Ada", JobState(status=status, updated_at=at + 1))
    return record


def make_tag(storage: LocalStorage, name: str, run: RunRecord | None, repo_id: str = REPO) -> Tag:
    tag = Tag(
        name=name,
        repo_id=repo_id,
        run_name=run.run_name if run else None,
        workflow=run.workflow if run else None,
        upload_id=None if run else "1-abc",
        owner=OWNER,
        created_at=1.0,
    )
    state.write_tag(storage, tag)
    return tag


def refs(*items: object) -> list[DepRef]:
    from pydantic import TypeAdapter

    from dstack.spec.models import DepItem

    adapter = TypeAdapter(list[DepItem])
    return adapter.validate_python(list(items))


def test_a_tag_resolves_to_the_run_it_points_at(storage: LocalStorage) -> None:
    run = make_run(storage, "bold-owl-1", "prepare", 1000)
    make_tag(storage, "moons", run)
    [dep] = resolve(storage, REPO, refs(":moons"))
    assert dep == Dependency(repo_id=REPO, run_name="bold-owl-1", tag="moons", workflow="prepare")


def test_an_uploaded_tag_resolves_to_its_upload(storage: LocalStorage) -> None:
    make_tag(storage, "raw", None)
    [dep] = resolve(storage, REPO, refs({"tag": "raw"}))
    assert (dep.run_name, dep.upload_id, dep.tag) == (None, "1-abc", "raw")


def test_a_workflow_resolves_to_its_newest_done_run(storage: LocalStorage) -> None:
    make_run(storage, "old-done-1", "train", 1000)
    make_run(storage, "new-done-1", "train", 2000)
    make_run(storage, "other-wf-1", "prepare", 3000)
    make_run(storage, "newer-failed-1", "train", 4000, JobStatus.FAILED)
    make_run(storage, "newest-running-1", "train", 5000, JobStatus.RUNNING)
    [dep] = resolve(storage, REPO, refs("train"))
    assert (dep.run_name, dep.workflow, dep.tag) == ("new-done-1", "train", None)


def test_a_multi_job_run_counts_only_when_every_job_is_done(storage: LocalStorage) -> None:
    make_run(storage, "single-1", "train", 1000)
    record = make_run(storage, "multi-1", "train", 2000, jobs=2)
    spec = state.read_job_spec(storage, REPO, record.run_name, 1)
    put_job_state(storage, spec, "Ada", JobState(status=JobStatus.FAILED, updated_at=3000))
    [dep] = resolve(storage, REPO, refs("train"))
    assert dep.run_name == "single-1"


def test_a_tag_of_another_repo_on_the_same_host(storage: LocalStorage) -> None:
    other = "github.com/acme/datasets"
    run = make_run(storage, "calm-cat-1", "build", 1000, repo_id=other)
    make_tag(storage, "mnist", run, repo_id=other)
    [dep] = resolve(storage, REPO, refs("acme/datasets/mnist"))
    assert (dep.repo_id, dep.run_name, dep.tag) == (other, "calm-cat-1", "mnist")


def test_the_same_run_twice_is_one_dependency(storage: LocalStorage) -> None:
    run = make_run(storage, "bold-owl-1", "train", 1000)
    make_tag(storage, "best", run)
    deps = resolve(storage, REPO, refs(":best", "train"))
    assert [d.run_name for d in deps] == ["bold-owl-1"]


@pytest.mark.parametrize(
    ("dep", "words"),
    [
        (":missing", ["no tag 'missing'", REPO, "dstack tags"]),
        ("train", ["no successful run of workflow 'train'", "dstack run train"]),
        ("acme/nowhere/mnist", ["no repo github.com/acme/nowhere in the store"]),
    ],
)
def test_what_cannot_be_resolved_is_one_clear_line(
    storage: LocalStorage, dep: str, words: list[str]
) -> None:
    make_run(storage, "failed-1", "train", 1000, JobStatus.FAILED)
    with pytest.raises(SpecError) as error:
        resolve(storage, REPO, refs(dep), where="--dep")
    message = str(error.value)
    assert message.startswith("--dep: ")
    assert "\n" not in message
    for word in words:
        assert word in message


def test_a_tag_whose_run_is_gone_is_refused(storage: LocalStorage) -> None:
    run = make_run(storage, "bold-owl-1", "train", 1000)
    make_tag(storage, "best", run)
    state.delete_run(storage, run)
    with pytest.raises(SpecError, match="points at run bold-owl-1, which no longer exists"):
        resolve(storage, REPO, refs(":best"))


def test_another_repo_needs_a_host() -> None:
    assert other_repo_id("gitlab.com/a/b", "c/d") == "gitlab.com/c/d"
    with pytest.raises(SpecError, match="need this repo to have a remote"):
        other_repo_id("local/mnist", "acme/datasets")


def test_resolution_reads_only(storage: LocalStorage, tmp_path: Path) -> None:
    run = make_run(storage, "bold-owl-1", "train", 1000)
    make_tag(storage, "best", run)
    before = sorted(p for p in (tmp_path / "store").rglob("*"))
    resolve(storage, REPO, refs(":best", "train"))
    with pytest.raises(SpecError):
        resolve(storage, REPO, refs(":nope"))
    assert sorted(p for p in (tmp_path / "store").rglob("*")) == before
