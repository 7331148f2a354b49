"""Unreadable records never block clean-up: each command reports a bad record in one line
and goes on; `rm` and `tags delete` remove damaged records. And two `tags add -y` racing on
a new tag both succeed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from dstack import state
from tests.e2e.cli import DSTACK, Dstack

WORKFLOWS = """\
workflows:
  - name: hello
    commands:
      - mkdir -p out && echo hi > out/x
    artifacts: [out]
"""
LOCAL_ONLY = pytest.mark.parametrize("store", ["local"], indirect=True)


@pytest.fixture
def repo(repo_factory) -> Path:  # type: ignore[no-untyped-def]
    return repo_factory({".dstack/workflows.yaml": WORKFLOWS})


def runs(dstack: Dstack, repo: Path) -> list[str]:
    result = dstack("ps", "-a", "--json", cwd=repo)
    assert result.code == 0, result.err
    return [row["run"] for row in json.loads(result.out)]


def submit(dstack: Dstack, repo: Path, count: int) -> list[str]:
    for _ in range(count):
        assert dstack("run", "hello", cwd=repo).code == 0
    return runs(dstack, repo)


def test_rm_removes_a_run_whose_spec_is_truncated(dstack: Dstack, repo: Path) -> None:
    (run,) = submit(dstack, repo, 1)
    repo_id = dstack._repo_id(repo)
    storage = dstack.storage()
    storage.put(state.spec_key(repo_id, run, 0), b'{"run_name": "x", "jo')
    shown = dstack("ps", run, cwd=repo)
    assert shown.code != 0 and "unreadable" in shown.err and len(shown.err.splitlines()) == 1
    result = dstack("rm", run, "-y", cwd=repo)
    assert result.code == 0, result.err
    assert runs(dstack, repo) == []
    assert list(storage.list_objects(state.run_prefix(repo_id, run))) == []


def test_rm_all_goes_on_past_a_run_it_cannot_remove(dstack: Dstack, repo: Path) -> None:
    names = submit(dstack, repo, 3)
    repo_id = dstack._repo_id(repo)
    storage = dstack.storage()
    storage.put(state.run_key(repo_id, names[1]), b"\x00garbage")  # damaged: still removed
    storage.put(state.state_key(repo_id, names[0], 0), b"not json")
    result = dstack("rm", "-a", "-y", cwd=repo)
    assert result.code == 0, result.err
    assert runs(dstack, repo) == []


def test_one_bad_tag_record_breaks_neither_tags_nor_rm(dstack: Dstack, repo: Path) -> None:
    first, second = submit(dstack, repo, 2)
    assert dstack("tags", "add", "good", first, cwd=repo).code == 0
    assert dstack("tags", "add", "bad", second, cwd=repo).code == 0
    repo_id = dstack._repo_id(repo)
    dstack.storage().put(state.tag_key(repo_id, "bad"), b"{truncated")
    listed = dstack("tags", cwd=repo)
    assert listed.code == 0 and "good" in listed.out
    assert "tag bad: its record is unreadable" in listed.err
    assert dstack("rm", second, "-y", cwd=repo).code == 0  # the bad tag no longer pins it
    refused = dstack("rm", first, "-y", cwd=repo)
    assert refused.code != 0 and "tagged good" in refused.err
    deleted = dstack("tags", "delete", "bad", "-y", cwd=repo)
    assert deleted.code == 0, deleted.err
    assert dstack("tags", cwd=repo).err == ""


@LOCAL_ONLY
def test_two_tags_add_y_racing_on_a_new_tag_both_succeed(
    dstack: Dstack, repo: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("1" * 100_000)
    for attempt in range(3):
        procs = [
            subprocess.Popen(
                [*DSTACK, "tags", "add", f"T{attempt}", "-a", str(data), "-y"],
                cwd=repo,
                env=dstack.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for _ in range(2)
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err.decode()
