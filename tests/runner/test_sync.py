"""Artifacts on their way to the store: changed files only, failures sent again at the next pass,
and what a new attempt restored is not sent back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dstack import state
from dstack.errors import StorageError
from dstack.models import Artifact, JobSpec, RepoSnapshot
from dstack.runner.sync import ArtifactSync, restore_artifacts
from dstack.storage.local import LocalStorage

REPO = "github.com/acme/sync"


class RecordingStorage(LocalStorage):
    """A LocalStorage that records the keys it stores, and refuses those in ``refuse`` once."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.uploaded: list[str] = []
        self.refuse: set[str] = set()

    def upload_file(self, path, key, *, progress=None):  # type: ignore[no-untyped-def]
        if key in self.refuse:
            self.refuse.discard(key)
            raise StorageError(f"refused {key}")
        super().upload_file(path, key, progress=progress)
        self.uploaded.append(key)


@pytest.fixture
def storage(tmp_path: Path) -> RecordingStorage:
    return RecordingStorage(tmp_path / "store")


def job(*paths: str) -> JobSpec:
    return JobSpec(
        run_name="calm-cod-1",
        workflow="train",
        provider="bash",
        repo=RepoSnapshot(repo_id=REPO, code_key="codes/x.tar.gz"),
        artifacts=[Artifact(path=p) for p in paths],
    )


def names(storage: RecordingStorage) -> list[str]:
    prefix = state.artifacts_prefix(REPO, "calm-cod-1", 0)
    return sorted(key[len(prefix) :] for key in storage.uploaded)


def test_a_pass_sends_only_what_changed(storage: RecordingStorage, tmp_path: Path) -> None:
    (tmp_path / "job/ckpt").mkdir(parents=True)
    (tmp_path / "job/ckpt/a").write_text("1")
    (tmp_path / "job/ckpt/b").write_text("2")
    sync = ArtifactSync(storage, job("ckpt"), tmp_path / "job", interval=60)
    assert sync.sync_once()
    assert names(storage) == ["ckpt/a", "ckpt/b"]
    storage.uploaded.clear()
    assert sync.sync_once() and names(storage) == []
    (tmp_path / "job/ckpt/b").write_text("22")
    (tmp_path / "job/ckpt/c").write_text("3")
    assert sync.sync_once()
    assert names(storage) == ["ckpt/b", "ckpt/c"]
    assert sync.uploaded_files == 4


def test_a_refused_file_is_sent_again_at_the_next_pass(
    storage: RecordingStorage, tmp_path: Path
) -> None:
    (tmp_path / "job/out").mkdir(parents=True)
    for name in "abc":
        (tmp_path / f"job/out/{name}").write_text(name)
    storage.refuse.add(state.artifacts_prefix(REPO, "calm-cod-1", 0) + "out/b")
    sync = ArtifactSync(storage, job("out"), tmp_path / "job", interval=60)
    assert not sync.sync_once()
    sent_first = names(storage)
    assert "out/b" not in sent_first
    storage.uploaded.clear()
    assert sync.sync_once()
    assert "out/b" in names(storage)
    assert not set(sent_first) & set(names(storage)), "a stored file was sent twice"


def test_restored_artifacts_are_not_sent_back(storage: RecordingStorage, tmp_path: Path) -> None:
    spec = job("ckpt")
    first = tmp_path / "attempt1"
    (first / "ckpt").mkdir(parents=True)
    (first / "ckpt/epoch1.pt").write_bytes(b"1" * 1000)
    (first / "ckpt/epoch2.pt").write_bytes(b"2" * 1000)
    (first / "ckpt/run.sh").write_text("#!/bin/sh\n")
    os.chmod(first / "ckpt/run.sh", 0o755)
    assert ArtifactSync(storage, spec, first, interval=60).sync_once()
    storage.uploaded.clear()

    second = tmp_path / "attempt2"
    restored = restore_artifacts(storage, spec, second)
    assert sorted(restored) == ["ckpt/epoch1.pt", "ckpt/epoch2.pt", "ckpt/run.sh"]
    assert (second / "ckpt/epoch2.pt").read_bytes() == b"2" * 1000
    assert os.access(second / "ckpt/run.sh", os.X_OK)
    sync = ArtifactSync(storage, spec, second, interval=60, synced=restored)
    assert sync.sync_once() and names(storage) == []
    (second / "ckpt/epoch3.pt").write_bytes(b"3" * 1000)
    assert sync.sync_once()
    assert names(storage) == ["ckpt/epoch3.pt"]


def test_links_leading_out_of_the_job_folder_are_not_saved(
    storage: RecordingStorage, tmp_path: Path
) -> None:
    secret = tmp_path / "outside" / "passwd"
    secret.parent.mkdir()
    secret.write_text("root:x:0:0")
    (tmp_path / "outside" / "more").write_text("more")
    out = tmp_path / "job/out"
    out.mkdir(parents=True)
    (out / "model.bin").write_text("weights")
    (out / "pw").symlink_to(secret)  # a file link out of the job
    (out / "etc").symlink_to(secret.parent)  # a folder link out of the job
    (out / "alias").symlink_to(out / "model.bin")  # a link inside the job: fine
    (tmp_path / "job/whole").symlink_to(secret.parent)  # the artifact itself is a link
    lines: list[str] = []
    sync = ArtifactSync(storage, job("out", "whole"), tmp_path / "job", interval=60,
                        notice=lines.append)  # fmt: skip
    assert sync.sync_once()
    assert names(storage) == ["out/alias", "out/model.bin"]
    assert sorted(line.split()[2] for line in lines) == ["out/etc", "out/pw", "whole"]
    assert all("outside the job's folder: not saved" in line for line in lines)
    sync.sync_once()
    assert len(lines) == 3  # said once
