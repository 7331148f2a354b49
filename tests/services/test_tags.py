"""Tags: made from runs (by hand and by the runner for `run -t`), from uploads; replaced only
on request; idempotent for the racing jobs of one run."""

from __future__ import annotations

from pathlib import Path

import pytest

from dstack import state
from dstack.compute.base import Compute
from dstack.errors import DstackError, InvalidStateError, TagExistsError
from dstack.models import JobSpec, JobState, JobStatus, RunRecord
from dstack.services import tags
from dstack.services.context import Context
from dstack.services.runs import remove
from dstack.storage.base import Storage
from dstack.storage.local import LocalStorage
from tests.services.test_deps import REPO, make_run


class AliveCompute(Compute):
    """Every runner is alive: states are shown as written."""

    name = "test"

    def check(self, jobs: list[JobSpec]) -> None:
        pass

    def start(self, storage: Storage, run: RunRecord, jobs: list[JobSpec]) -> None:
        pass

    def is_alive(self, state: JobState) -> bool | None:
        return True

    def kill(self, state: JobState) -> None:
        pass


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "store")


@pytest.fixture
def ctx(storage: LocalStorage, tmp_path: Path) -> Context:
    return Context(storage=storage, compute=AliveCompute(), repo_path=tmp_path, _repo_id=REPO)


def put_artifact(storage: LocalStorage, run: str, job: int, path: str, size: int) -> None:
    source = storage.root.parent / "src" / path
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(b"x" * size)
    storage.upload_file(source, state.artifacts_prefix(REPO, run, job) + path)


@pytest.mark.parametrize("name", ["moons", "v1.2", "a_b-c", "9lives"])
def test_good_names(name: str) -> None:
    assert tags.validate_name(name) == name


@pytest.mark.parametrize("name", ["", "-x", ".x", "a/b", "a b", ":x", "é", "x" * 101])
def test_bad_names(name: str) -> None:
    with pytest.raises(DstackError, match="invalid tag name"):
        tags.validate_name(name)


def test_a_done_run_is_tagged_with_its_artifacts(ctx: Context, storage: LocalStorage) -> None:
    make_run(storage, "bold-owl-1", "prepare", 1000)
    put_artifact(storage, "bold-owl-1", 0, "data/train.csv", 100)
    put_artifact(storage, "bold-owl-1", 0, "data/test.csv", 20)
    tag = tags.add_run_tag(ctx, "moons", "bold-owl-1")
    assert (tag.run_name, tag.workflow, tag.artifacts, tag.files, tag.size) == (
        "bold-owl-1", "prepare", ["data"], 2, 120,
    )  # fmt: skip
    assert [t.name for t in tags.list_tags(ctx)] == ["moons"]


@pytest.mark.parametrize(
    ("status", "words"),
    [(JobStatus.RUNNING, "only a finished run"), (JobStatus.FAILED, "may be incomplete")],
)
def test_an_unfinished_or_failed_run_is_refused(
    ctx: Context, storage: LocalStorage, status: JobStatus, words: str
) -> None:
    make_run(storage, "bold-owl-1", "prepare", 1000, status)
    with pytest.raises(InvalidStateError, match=words):
        tags.add_run_tag(ctx, "moons", "bold-owl-1")
    assert tags.list_tags(ctx) == []


def test_an_existing_tag_is_replaced_only_on_request(ctx: Context, storage: LocalStorage) -> None:
    make_run(storage, "bold-owl-1", "prepare", 1000)
    make_run(storage, "calm-cat-1", "prepare", 2000)
    tags.add_run_tag(ctx, "moons", "bold-owl-1")
    tags.add_run_tag(ctx, "moons", "bold-owl-1")  # the same target again: nothing to do
    with pytest.raises(TagExistsError, match=r"tag 'moons' already exists .*run bold-owl-1"):
        tags.add_run_tag(ctx, "moons", "calm-cat-1")
    tags.add_run_tag(ctx, "moons", "calm-cat-1", replace=True)
    assert tags.get_tag(ctx, "moons").run_name == "calm-cat-1"


def test_upload_keeps_relative_paths_and_replacing_drops_old_files(
    ctx: Context, storage: LocalStorage, tmp_path: Path
) -> None:
    cwd = tmp_path / "work"
    (cwd / "data/sub").mkdir(parents=True)
    (cwd / "data/sub/a.csv").write_text("a")
    outside = tmp_path / "elsewhere/weights"
    outside.mkdir(parents=True)
    (outside / "w.bin").write_text("ww")
    files = tags.collect_upload([Path("data"), outside], cwd)
    assert [f.relative for f in files] == ["data/sub/a.csv", "weights/w.bin"]
    first = tags.add_upload_tag(ctx, "raw", files)
    assert (first.files, first.size, first.artifacts) == (2, 3, ["data", "weights"])
    old_prefix = state.tag_data_prefix(REPO, "raw", first.upload_id or "")
    assert len(list(storage.list_objects(old_prefix))) == 2
    with pytest.raises(TagExistsError):
        tags.add_upload_tag(ctx, "raw", files)
    second = tags.add_upload_tag(ctx, "raw", files[:1], replace=True)
    assert list(storage.list_objects(old_prefix)) == []
    assert tags.get_tag(ctx, "raw").upload_id == second.upload_id
    tags.delete_tag(ctx, "raw")
    assert list(storage.list_objects(f"repos/{REPO}/tagdata/")) == []


def test_rm_refuses_a_tagged_run_until_the_tag_is_gone(ctx: Context, storage: LocalStorage) -> None:
    make_run(storage, "bold-owl-1", "prepare", 1000)
    tags.add_run_tag(ctx, "moons", "bold-owl-1")
    with pytest.raises(InvalidStateError, match=r"tagged moons.*dstack tags delete moons"):
        remove(ctx, "bold-owl-1")
    tags.delete_tag(ctx, "moons")
    remove(ctx, "bold-owl-1")
    assert state.list_runs(storage, REPO) == []


def test_tags_add_y_wins_over_a_tag_created_after_its_check(
    ctx: Context, storage: LocalStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two `tags add T -a D -y` racing on a new tag: the other user creates the tag between
    this command's check and its write; with -y this one replaces it instead of failing."""
    from dstack import api
    from dstack.cli import tags as cli_tags

    data = tmp_path / "d"
    data.mkdir()
    (data / "f").write_text("mine")
    other = tmp_path / "other"
    other.mkdir()
    (other / "f").write_text("theirs")
    real_find = api.find_tag

    def find_then_lose_the_race(context: Context, name: str) -> object:
        found = real_find(context, name)  # nothing yet...
        tags.add_upload_tag(context, name, tags.collect_upload([other], tmp_path))  # ...then
        return found

    monkeypatch.setattr(api, "find_tag", find_then_lose_the_race)
    monkeypatch.setattr(api, "Context", lambda: ctx)
    monkeypatch.chdir(tmp_path)
    cli_tags.add_command("T", None, [data], yes=True)
    tag = real_find(ctx, "T")
    assert tag is not None and tag.files == 1
    (key,) = [
        i.key for i in storage.list_objects(f"repos/{REPO}/tagdata/T/") if i.key.endswith("/f")
    ]
    assert storage.get(key) == b"mine"
