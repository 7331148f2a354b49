"""End-to-end: `dstack secrets`, and a secret's value kept out of everything but its record.

The tests that run jobs run once per store (``store`` in ``conftest.py``): on this machine's
folder, and on an S3 bucket of the moto server, where the record must be SSE-KMS encrypted.
"""

from __future__ import annotations

import json
import secrets as random_secrets
import stat
from pathlib import Path

import pytest

from dstack import state
from tests.conftest import make_repo
from tests.e2e.cli import Dstack, job_lines
from tests.e2e.conftest import Store

LOCAL_ONLY = pytest.mark.parametrize("store", ["local"], indirect=True)
REPO_ID = "github.com/acme/mnist"

# The second command prints the value in two writes a moment apart: the runner's pipe reads
# (and log chunks) split it, and it must still come out masked.
WORKFLOWS = """\
workflows:
  - name: show
    commands:
      - echo "value=$API_KEY"
      - python -c "import os, sys, time; v = os.environ['API_KEY']; sys.stdout.write('split=' + v[:7]); sys.stdout.flush(); time.sleep(0.3); print(v[7:])"
      - python -c "import os; print('length', len(os.environ['API_KEY']))"
"""


@LOCAL_ONLY
def test_add_list_replace_delete(tmp_path: Path, dstack: Dstack) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    empty = dstack("secrets", "list", cwd=repo)
    assert empty.code == 0 and "No secrets" in empty.err
    added = dstack("secrets", "add", "WANDB_API_KEY", cwd=repo, input="first-value\n")
    assert added.code == 0, added.err
    assert "added" in added.err and "first-value" not in added.out + added.err
    again = dstack("secrets", "add", "WANDB_API_KEY", "second", cwd=repo)
    assert again.code != 0
    assert again.err.strip().splitlines() == [
        "Error: Secret WANDB_API_KEY exists. Replace it? Nobody can answer here: pass -y to confirm"
    ]
    replaced = dstack("secrets", "add", "WANDB_API_KEY", "second-value", "-y", cwd=repo)
    assert replaced.code == 0 and "replaced" in replaced.err
    record = state.read_secret(dstack.storage(), REPO_ID, "WANDB_API_KEY")
    assert record is not None and record.value == "second-value"
    listed = dstack("secrets", "list", "--json", cwd=repo)
    assert json.loads(listed.out) == [{"name": "WANDB_API_KEY"}]
    assert "second-value" not in listed.out
    table = dstack("secrets", cwd=repo)
    assert table.out.split() == ["NAME", "WANDB_API_KEY"]
    refused = dstack("secrets", "delete", "WANDB_API_KEY", cwd=repo)
    assert refused.code != 0 and "pass -y" in refused.err
    deleted = dstack("secrets", "delete", "WANDB_API_KEY", "-y", cwd=repo)
    assert deleted.code == 0, deleted.err
    assert json.loads(dstack("secrets", "list", "--json", cwd=repo).out) == []
    missing = dstack("secrets", "delete", "WANDB_API_KEY", "-y", cwd=repo)
    assert missing.code != 0 and "no secret WANDB_API_KEY" in missing.err


@LOCAL_ONLY
@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("1BAD", ["'1BAD' is not a valid secret name", "environment variable"]),
        ("MY-KEY", ["'MY-KEY' is not a valid secret name"]),
        ("PORT_0", ["'PORT_0' is a variable dstack sets"]),
        ("RUN_NAME", ["'RUN_NAME' is a variable dstack sets"]),
    ],
)
def test_a_bad_secret_name_is_one_clear_line(
    tmp_path: Path, dstack: Dstack, name: str, words: list[str]
) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    result = dstack("secrets", "add", name, "value", cwd=repo)
    assert result.code != 0
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.err
    for word in words:
        assert word in lines[0]
    assert not (dstack.home / "store").exists() or not any(
        p.is_file() for p in (dstack.home / "store").rglob("*")
    )


def test_a_secret_is_masked_in_logs_and_only_in_its_own_record(
    tmp_path: Path, dstack: Dstack, store: Store
) -> None:
    repo = make_repo(tmp_path / "repo", {".dstack/workflows.yaml": WORKFLOWS})
    value = "tk-" + random_secrets.token_hex(12)
    assert dstack("secrets", "add", "API_KEY", value, cwd=repo).code == 0
    run = dstack("run", "show", cwd=repo)
    assert run.code == 0, run.err
    assert job_lines(run.out) == ["value=***", "split=***", f"length {len(value)}"]
    name = json.loads(dstack("ps", "-a", "--json", cwd=repo).out)[0]["run"]
    logs = dstack("logs", name, cwd=repo)
    assert logs.out == run.out
    shown = dstack("ps", name, "--json", cwd=repo)
    for output in (run, logs, shown):
        assert value not in output.out + output.err
    record_key = state.secret_key(REPO_ID, "API_KEY")
    holders = objects_holding(dstack, store, value.encode())
    assert holders == [record_key]
    assert_protected(dstack, store, record_key)


def objects_holding(dstack: Dstack, store: Store, needle: bytes) -> list[str]:
    """The keys of every object of the store (all of it: every byte) that contain ``needle``."""
    if store.kind == "local":
        root = dstack.home / "store"
        return sorted(
            path.relative_to(root).as_posix()
            for path in root.rglob("*")
            if path.is_file() and needle in path.read_bytes()
        )
    storage = dstack.storage()
    return sorted(info.key for info in storage.list_objects("") if needle in storage.get(info.key))


def assert_protected(dstack: Dstack, store: Store, key: str) -> None:
    if store.kind == "local":
        mode = (dstack.home / "store" / key).stat().st_mode
        assert stat.S_IMODE(mode) == 0o600
        return
    storage = dstack.storage()
    head = storage._client().head_object(Bucket=storage.bucket, Key=key)
    assert head["ServerSideEncryption"] == "aws:kms"
