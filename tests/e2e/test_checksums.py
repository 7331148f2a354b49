"""Artifacts and uploaded tag files are verified against the checksums their producer
recorded: a file swapped in the store is one clear error for whoever downloads it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dstack import state
from dstack.state import manifest
from tests.e2e.cli import Dstack

WORKFLOWS = """\
workflows:
  - name: make
    commands:
      - mkdir -p out && echo "real weights" > out/model.bin && echo cfg > out/config
    artifacts: [out]
  - name: use
    deps:
      - tag: model
    commands:
      - cat out/model.bin
"""


@pytest.fixture
def repo(repo_factory) -> Path:  # type: ignore[no-untyped-def]
    return repo_factory({".dstack/workflows.yaml": WORKFLOWS})


def last_run(dstack: Dstack, repo: Path) -> str:
    return str(json.loads(dstack("ps", "-a", "--json", cwd=repo).out)[0]["run"])


def test_a_swapped_artifact_is_refused_by_every_consumer(
    dstack: Dstack, repo: Path, tmp_path: Path
) -> None:
    assert dstack("run", "make", "-t", "model", cwd=repo).code == 0
    run = last_run(dstack, repo)
    repo_id = dstack._repo_id(repo)
    storage = dstack.storage()
    recorded = manifest.read_manifest(storage, manifest.job_manifest_key(repo_id, run, 0))
    assert recorded is not None and set(recorded) == {"out/model.bin", "out/config"}
    good = dstack("artifacts", "download", run, "-o", str(tmp_path / "good"), cwd=repo)
    assert good.code == 0, good.err
    key = state.artifacts_prefix(repo_id, run, 0) + "out/model.bin"
    storage.put(key, b"evil weights\n")
    bad = dstack("artifacts", "download", run, "-o", str(tmp_path / "bad"), cwd=repo)
    assert bad.code != 0 and len(bad.err.strip().splitlines()) == 1
    assert "out/model.bin does not match the checksum its producer recorded" in bad.err
    used = dstack("run", "use", cwd=repo)
    assert used.code != 0 and "evil" not in used.out
    assert "does not match the checksum" in used.out + used.err


def test_a_swapped_uploaded_file_is_refused(dstack: Dstack, repo: Path, tmp_path: Path) -> None:
    data = repo / "out"
    data.mkdir()
    (data / "model.bin").write_text("uploaded weights\n")
    assert dstack("tags", "add", "model", "-a", "out", cwd=repo).code == 0
    storage = dstack.storage()
    repo_id = dstack._repo_id(repo)
    keys = [i.key for i in storage.list_objects(f"repos/{repo_id}/tagdata/model/")]
    (file_key,) = [k for k in keys if k.endswith("/out/model.bin")]
    storage.put(file_key, b"evil!\n")
    used = dstack("run", "use", cwd=repo)
    assert used.code != 0 and "evil" not in used.out
    assert "does not match the checksum" in used.out + used.err
