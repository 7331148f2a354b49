"""End-to-end: an artifact whose name is not UTF-8 (Linux names are bytes) is saved, listed,
downloaded under the same bytes, tagged, restored and removed like any other
(``dstack.state.filenames``: such a name is escaped in its key, reversibly). Runs once per
store: S3 keys must be UTF-8, a folder's need not.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from dstack import state
from tests.conftest import make_repo
from tests.e2e.cli import Dstack
from tests.e2e.conftest import Store

REPO_ID = "github.com/acme/mnist"
WORKFLOWS = """\
workflows:
  - name: odd
    commands:
      - mkdir -p out
      - printf x > "out/$(printf 'bad\\377name')"
      - printf y > "out/plain%~"
      - echo made
    artifacts:
      - out
"""
BAD = os.fsdecode(b"bad\xffname")


def test_a_name_that_is_not_utf8_is_an_artifact_like_any_other(
    tmp_path: Path, dstack: Dstack, store: Store
) -> None:
    repo = make_repo(tmp_path / "repo", {".dstack/workflows.yaml": WORKFLOWS})
    ran = dstack("run", "odd", cwd=repo)
    assert ran.code == 0, ran.err
    assert "Traceback" not in ran.err and "made" in ran.out
    run = ran.err.split("Run ", 1)[1].split()[0]

    listed = dstack("artifacts", "list", run, "--json", cwd=repo)
    assert listed.code == 0, listed.err
    paths = sorted(entry["path"] for entry in json.loads(listed.out))
    assert paths == ["out/bad%FFname%~", "out/plain%25~%~"]

    target = tmp_path / "download"
    got = dstack("artifacts", "download", run, "-o", str(target), cwd=repo)
    assert got.code == 0, got.err
    assert sorted(os.listdir(os.fsencode(target / "out"))) == [b"bad\xffname", b"plain%~"]
    assert (target / "out" / BAD).read_bytes() == b"x"

    tagged = dstack("tags", "add", "odd-files", run, cwd=repo)
    assert tagged.code == 0, tagged.err
    assert "Traceback" not in tagged.err

    assert dstack("tags", "delete", "odd-files", "-y", cwd=repo).code == 0
    removed = dstack("rm", run, "-y", cwd=repo)
    assert removed.code == 0, removed.err
    storage = dstack.storage()
    assert list(storage.list_objects(state.run_prefix(REPO_ID, run))) == []
    assert dstack("ps", "-a", "--json", cwd=repo).out.strip() in ("", "[]")
