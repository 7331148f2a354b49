"""End-to-end: whoever may write the store cannot make a job run their commands.

A job's ``spec.json`` is pinned by its submitter (``dstack.state.pins``): an attacker who
rewrites it — racing a new job, or between two attempts of a retried one — gets the job
refused with one line in its log and a ``failed`` status, never their commands run. The retry
case runs on both stores (this machine's folder, and an S3 bucket of the moto server).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from dstack import state
from tests.conftest import make_repo
from tests.e2e.cli import FINISHED, Dstack
from tests.e2e.conftest import Store

REPO_ID = "github.com/acme/mnist"


def _workflows(gate: Path) -> str:
    return f"""\
workflows:
  - name: train
    commands:
      - echo "victim attempt $DSTACK_ATTEMPT"
      - while [ ! -e {gate} ]; do sleep 0.05; done
      - exit 3
  - name: quick
    commands:
      - echo "victim ran"
"""


def _rewrite(storage: object, key: str, marker: Path) -> None:
    """What the attacker does: replace the job's commands by their own, keep the rest."""
    record = json.loads(storage.get(key))  # type: ignore[attr-defined]
    record["commands"] = [f"touch {marker}", "echo attacker ran"]
    storage.put(key, json.dumps(record).encode())  # type: ignore[attr-defined]


def test_a_spec_rewritten_between_attempts_is_refused(
    tmp_path: Path, dstack: Dstack, store: Store
) -> None:
    gate, marker = tmp_path / "gate", tmp_path / "pwned"
    repo = make_repo(tmp_path / "repo", {".dstack/workflows.yaml": _workflows(gate)})
    run = dstack.run_detached("train", cwd=repo, options=("--retry", "error:1"))
    storage = dstack.storage()
    log_key = state.logs_prefix(REPO_ID, run, 0)
    deadline = time.monotonic() + 60
    while not any(
        storage.get(i.key).find(b"victim attempt 1") >= 0 for i in storage.list_objects(log_key)
    ):
        assert time.monotonic() < deadline, "attempt 1 did not start"
        time.sleep(0.05)
    _rewrite(storage, state.spec_key(REPO_ID, run, 0), marker)
    gate.touch()  # attempt 1 fails with 3; the retry policy asks for attempt 2
    row = dstack.wait_status(run, repo, lambda s: s in FINISHED, timeout=90)
    assert row["status"] == "failed"
    assert not marker.exists()
    log = dstack("logs", run, cwd=repo).out
    assert "attacker ran" not in log
    refusals = [line for line in log.splitlines() if "refused to run" in line]
    assert len(refusals) == 1, log
    assert "spec.json is not the spec its submitter wrote" in refusals[0]
    assert state.read_job_state(storage, REPO_ID, run, 0).attempt == 2
    assert "refused to run" in (row.get("reason") or json.dumps(row))


@pytest.mark.parametrize("store", ["local"], indirect=True)
def test_a_spec_rewritten_as_the_job_starts_is_refused(tmp_path: Path, dstack: Dstack) -> None:
    """The race of the report: a script watching the store rewrites each new spec.json at
    once. Whether it lands before or after the runner reads the spec, the attacker's commands
    never run; a few runs make sure it lands first at least once."""
    marker = tmp_path / "pwned"
    repo = make_repo(tmp_path / "repo", {".dstack/workflows.yaml": _workflows(tmp_path / "g")})
    storage = dstack.storage()
    runs_folder = Path(storage.describe()) / "repos" / REPO_ID / "runs"
    stop = threading.Event()
    rewritten: set[Path] = set()

    def watch() -> None:
        while not stop.is_set():
            for path in runs_folder.glob("*/jobs/0/spec.json"):
                if path not in rewritten:
                    key = str(path.relative_to(storage.describe()))
                    try:
                        _rewrite(storage, key, marker)
                    except (OSError, ValueError):
                        continue
                    rewritten.add(path)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    refused = 0
    try:
        for _ in range(5):
            result = dstack("run", "quick", cwd=repo)
            assert "attacker ran" not in result.out
            assert not marker.exists()
            if "refused to run" in result.out + result.err:
                assert result.code != 0
                refused += 1
                break
    finally:
        stop.set()
        watcher.join()
    assert refused, "the rewrite never landed before the runner read the spec"


@pytest.mark.parametrize("store", ["local"], indirect=True)
def test_a_secret_planted_in_the_store_is_not_given_to_a_job(
    tmp_path: Path, dstack: Dstack
) -> None:
    """The names of the secrets a job gets are pinned in its spec at submit, and a name that
    changes what the job's shell runs (BASH_ENV, LD_PRELOAD…) is never one of them."""
    from dstack.models import SecretRecord

    marker, script = tmp_path / "pwned", tmp_path / "evil.sh"
    script.write_text(f"touch {marker}\n")
    workflows = 'workflows:\n  - name: show\n    commands:\n      - echo "key=$API_KEY"\n'
    repo = make_repo(tmp_path / "repo", {".dstack/workflows.yaml": workflows})
    assert dstack("secrets", "add", "API_KEY", "k-1234567", cwd=repo).code == 0
    for name in ("BASH_ENV", "ENV"):
        record = SecretRecord(name=name, value=str(script), updated_at=0.0, owner="mallory")
        state.write_secret(dstack.storage(), REPO_ID, record)
    result = dstack("run", "show", cwd=repo)
    assert result.code == 0, result.err
    assert "key=***" in result.out  # the submitter's own secret is given, masked
    assert not marker.exists()
