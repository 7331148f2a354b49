"""Placing a job's dependencies: relative paths, executable bits, the machine cache."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from dstack import state
from dstack.errors import RunnerError
from dstack.models import Dependency, JobSpec, RepoSnapshot
from dstack.runner import depcache
from dstack.runner.deps import fetch_deps
from dstack.storage.local import LocalStorage
from tests.services.test_deps import REPO, make_run


class CountingStorage(LocalStorage):
    """A LocalStorage that counts the bytes it hands out through downloads."""

    downloaded = 0

    def download_file(self, key, path, *, progress=None):  # type: ignore[no-untyped-def]
        super().download_file(key, path, progress=progress)
        self.downloaded += Path(path).stat().st_size


@pytest.fixture
def storage(tmp_path: Path) -> CountingStorage:
    return CountingStorage(tmp_path / "store")


def put_artifact(
    storage: LocalStorage, run: str, job: int, path: str, data: bytes, mode: int = 0o644
) -> None:
    source = storage.root.parent / "src" / f"{run}-{job}" / path
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(data)
    os.chmod(source, mode)
    storage.upload_file(source, state.artifacts_prefix(REPO, run, job) + path)


def consumer(*deps: Dependency) -> JobSpec:
    repo = RepoSnapshot(repo_id=REPO, code_key="codes/x.tar.gz")
    return JobSpec(
        run_name="eager-eel-1", workflow="evaluate", provider="bash", repo=repo, deps=list(deps)
    )


def test_files_land_at_their_paths_with_their_modes(
    storage: CountingStorage, tmp_path: Path
) -> None:
    make_run(storage, "bold-owl-1", "train", 1000)
    put_artifact(storage, "bold-owl-1", 0, "model/ckpt.bin", b"weights")
    put_artifact(storage, "bold-owl-1", 0, "bin/tool.sh", b"#!/bin/sh\n", mode=0o755)
    workdir = tmp_path / "job"
    (workdir / "model").mkdir(parents=True)
    (workdir / "model/ckpt.bin").write_text("from the repo")
    report = fetch_deps(
        storage,
        consumer(Dependency(repo_id=REPO, run_name="bold-owl-1")),
        workdir,
        tmp_path / "cache",
    )
    assert (workdir / "model/ckpt.bin").read_bytes() == b"weights"
    assert os.access(workdir / "bin/tool.sh", os.X_OK)
    assert not os.access(workdir / "model/ckpt.bin", os.X_OK)
    assert (report.files, report.size, report.downloaded_bytes) == (2, 17, 17)


def test_a_second_consumer_downloads_nothing(storage: CountingStorage, tmp_path: Path) -> None:
    make_run(storage, "bold-owl-1", "prepare", 1000)
    put_artifact(storage, "bold-owl-1", 0, "data/train.csv", b"x" * 1000)
    spec = consumer(Dependency(repo_id=REPO, run_name="bold-owl-1", tag="moons"))
    first = fetch_deps(storage, spec, tmp_path / "job1", tmp_path / "cache")
    assert storage.downloaded == first.downloaded_bytes == 1000
    # the first job rewrites its copy in place: the cache must not change
    (tmp_path / "job1/data/train.csv").write_text("scribbled")
    second = fetch_deps(storage, spec, tmp_path / "job2", tmp_path / "cache")
    assert (second.downloaded_bytes, second.downloaded_files, storage.downloaded) == (0, 0, 1000)
    assert (tmp_path / "job2/data/train.csv").read_bytes() == b"x" * 1000


def test_a_reused_run_name_is_not_served_from_the_cache(
    storage: CountingStorage, tmp_path: Path
) -> None:
    run = make_run(storage, "bold-owl-1", "prepare", 1000)
    put_artifact(storage, "bold-owl-1", 0, "data/a.txt", b"old")
    spec = consumer(Dependency(repo_id=REPO, run_name="bold-owl-1"))
    fetch_deps(storage, spec, tmp_path / "job1", tmp_path / "cache")
    state.delete_run(storage, run)
    make_run(storage, "bold-owl-1", "prepare", 2000)  # `rm`, then the name is taken again
    put_artifact(storage, "bold-owl-1", 0, "data/a.txt", b"new")
    fetch_deps(storage, spec, tmp_path / "job2", tmp_path / "cache")
    assert (tmp_path / "job2/data/a.txt").read_bytes() == b"new"


def test_jobs_of_a_run_and_several_deps_merge_later_wins(
    storage: CountingStorage, tmp_path: Path
) -> None:
    make_run(storage, "multi-1", "train", 1000, jobs=2)
    put_artifact(storage, "multi-1", 0, "out/shared.txt", b"job0")
    put_artifact(storage, "multi-1", 0, "out/zero.txt", b"0")
    put_artifact(storage, "multi-1", 1, "out/shared.txt", b"job1")
    make_run(storage, "later-1", "prepare", 2000)
    put_artifact(storage, "later-1", 0, "out/zero.txt", b"later")
    spec = consumer(
        Dependency(repo_id=REPO, run_name="multi-1"), Dependency(repo_id=REPO, run_name="later-1")
    )
    fetch_deps(storage, spec, tmp_path / "job", tmp_path / "cache")
    assert (tmp_path / "job/out/shared.txt").read_bytes() == b"job1"
    assert (tmp_path / "job/out/zero.txt").read_bytes() == b"later"


def test_an_uploaded_tag_and_a_vanished_run(storage: CountingStorage, tmp_path: Path) -> None:
    source = tmp_path / "upload.txt"
    source.write_text("raw")
    storage.upload_file(source, state.tag_data_prefix(REPO, "raw", "1-abc") + "raw/upload.txt")
    uploaded = Dependency(repo_id=REPO, tag="raw", upload_id="1-abc")
    fetch_deps(storage, consumer(uploaded), tmp_path / "job", tmp_path / "cache")
    assert (tmp_path / "job/raw/upload.txt").read_text() == "raw"
    gone = consumer(Dependency(repo_id=REPO, run_name="gone-1", workflow="train"))
    with pytest.raises(RunnerError, match=r"run gone-1 of github\.com/acme/mnist no longer exists"):
        fetch_deps(storage, gone, tmp_path / "job2", tmp_path / "cache")
    storage.delete_prefix(state.tag_data_prefix(REPO, "raw", "1-abc"))
    with pytest.raises(RunnerError, match="files are gone"):
        fetch_deps(storage, consumer(uploaded), tmp_path / "job3", tmp_path / "cache2")


def test_the_cache_keeps_under_its_limit_least_recently_used_first(
    storage: CountingStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    for i, name in enumerate(("old-1", "mid-1", "new-1")):
        make_run(storage, name, "prepare", 1000 + i)
        put_artifact(storage, name, 0, "data/blob.bin", bytes([i]) * 1000)
    monkeypatch.setenv(depcache.MAX_SIZE_ENV, "2500B")
    for name in ("old-1", "mid-1"):
        spec = consumer(Dependency(repo_id=REPO, run_name=name))
        assert fetch_deps(storage, spec, tmp_path / name, cache).pruned_entries == 0
    # mid-1 was used last, old-1 first (their use times set apart, whatever the clock's
    # resolution); using old-1 again makes mid-1 the least recent: a third entry pushes it out
    now = time.time()
    for entry in depcache.entries(cache / "artifacts"):
        used = now - (100 if entry.path.parent.name.startswith("old-1") else 50)
        os.utime(depcache.index_path(cache / "artifacts", entry.path), (used, used))
    used_again = fetch_deps(storage, consumer(Dependency(repo_id=REPO, run_name="old-1")),
                            tmp_path / "again", cache)  # fmt: skip
    assert used_again.downloaded_bytes == 0
    report = fetch_deps(storage, consumer(Dependency(repo_id=REPO, run_name="new-1")),
                        tmp_path / "new", cache)  # fmt: skip
    assert (report.pruned_entries, report.pruned_bytes) == (1, 1000)
    left = sorted(entry.path.parent.name for entry in depcache.entries(cache / "artifacts"))
    assert left == ["new-1@1002000", "old-1@1000000"]
    assert (tmp_path / "new/data/blob.bin").read_bytes() == bytes([2]) * 1000
    # the evicted one comes back from the store when asked for again
    storage.downloaded = 0
    fetch_deps(storage, consumer(Dependency(repo_id=REPO, run_name="mid-1")), tmp_path / "m", cache)
    assert storage.downloaded == 1000


def test_an_entry_in_use_or_just_used_is_never_pruned(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    entries = [root / "store" / f"e{i}" for i in range(3)]
    for i, entry in enumerate(entries):
        entry.mkdir(parents=True)
        (entry / "f").write_bytes(b"x" * 100)
        depcache.mark_used(root, entry, 100)
        os.utime(depcache.index_path(root, entry), (1000 + i, 1000 + i))
    with depcache.locked(entries[0], shared=True):  # another job copies out of e0
        removed = depcache.prune(root, keep={entries[1]}, limit=0)
    assert [entry.path for entry in removed] == [entries[2]]
    assert entries[0].exists() and entries[1].exists() and not entries[2].exists()


def test_a_bad_cache_limit_is_a_warning_not_a_failure(
    storage: CountingStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_run(storage, "bold-owl-1", "prepare", 1000)
    put_artifact(storage, "bold-owl-1", 0, "data/a.txt", b"a")
    monkeypatch.setenv(depcache.MAX_SIZE_ENV, "lots")
    spec = consumer(Dependency(repo_id=REPO, run_name="bold-owl-1"))
    report = fetch_deps(storage, spec, tmp_path / "job", tmp_path / "cache")
    assert (tmp_path / "job/data/a.txt").read_bytes() == b"a"
    assert report.warning is not None and report.warning.startswith("DSTACK_CACHE_MAX_SIZE:")
