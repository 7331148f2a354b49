"""Interruptions and recovery: a killed runner's job resumes from its saved artifacts as a new
attempt of the same run; failing commands are retried as asked, and only as asked. Each test
runs on both stores (the ``dstack`` fixture of ``tests/e2e/conftest.py``)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from dstack import state
from dstack.models import JobState
from tests.e2e.cli import FINISHED, Dstack
from tests.e2e.conftest import Store

TRAIN = """\
import json, os, sys, time
from pathlib import Path

epochs = int(sys.argv[1])
ckpt = Path("checkpoints/last.json")
start = 0
if ckpt.exists():
    start = json.loads(ckpt.read_text())["epoch"]
    print(f"resuming from epoch {start}", flush=True)
print(f"attempt {os.environ['DSTACK_ATTEMPT']} starts at epoch {start + 1}", flush=True)
for epoch in range(start + 1, epochs + 1):
    time.sleep(1.5)
    ckpt.parent.mkdir(exist_ok=True)
    ckpt.write_text(json.dumps({"epoch": epoch}))
    print(f"finished epoch {epoch}", flush=True)
"""

WORKFLOWS = """\
workflows:
  - name: train
    commands:
      - python train.py 5
    artifacts:
      - checkpoints
    retry:
      on: [interruption]
      limit: 2
  - name: flaky
    commands:
      - echo "attempt $DSTACK_ATTEMPT"
      - exit 3
    retry: {on: [error], limit: 2}
  - name: failing
    commands:
      - echo "attempt $DSTACK_ATTEMPT"
      - exit 3
  - name: picky
    commands:
      - echo "attempt $DSTACK_ATTEMPT"
      - exit 4
    retry: {on: [error], exit_codes: [3], limit: 2}
"""


@pytest.fixture
def repo(repo_factory) -> Path:  # type: ignore[no-untyped-def]
    return repo_factory({".dstack/workflows.yaml": WORKFLOWS, "train.py": TRAIN})


REPO_ID = "github.com/acme/mnist"


def _job_state(store: Store, run: str) -> JobState:
    return state.read_job_state(store.storage(), REPO_ID, run, 0)


def _saved_epoch(store: Store, run: str) -> int:
    key = state.artifacts_prefix(REPO_ID, run, 0) + "checkpoints/last.json"
    data = store.storage().get_or_none(key)
    return json.loads(data)["epoch"] if data else 0


def _logged(store: Store, run: str, epoch: int) -> bool:
    """Whether the job's log in the store holds its line for the end of ``epoch``."""
    storage = store.storage()
    chunks = storage.list_objects(state.logs_prefix(REPO_ID, run, 0))
    text = b"".join(storage.get(info.key) for info in chunks)
    return f"finished epoch {epoch}\n".encode() in text


def test_killed_runner_resumes_from_its_checkpoint(
    dstack: Dstack, store: Store, repo: Path
) -> None:
    cli = dstack
    run = cli.run_detached("train", cwd=repo)
    deadline = time.monotonic() + 60
    # a checkpoint of epoch 2 or later in the store, and its "finished" line too: the job
    # writes the checkpoint first, so a kill between its sync and the line's would lose the
    # line with the runner (kill -9 lets nothing be flushed), and no attempt prints it again
    while (saved := _saved_epoch(store, run)) < 2 or not _logged(store, run, saved):
        assert time.monotonic() < deadline, "no checkpoint of epoch 2 and its line in the store"
        time.sleep(0.05)
    pid = _job_state(store, run).runner_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # a reclaimed instance
    row = cli.wait_status(run, repo, lambda s: s in FINISHED, timeout=90)
    assert row["status"] == "done"
    log = cli("logs", run, cwd=repo).out.splitlines()
    # Attempt 2 resumes from the last checkpoint that reached the store: at least the one seen
    # before the kill (an epoch that ended after the last sync is, rightly, done again).
    resumed = int(next(line for line in log if line.startswith("resuming from epoch")).split()[-1])
    assert resumed >= saved
    finished = [int(line.split()[-1]) for line in log if line.startswith("finished epoch")]
    assert sorted(set(finished)) == [1, 2, 3, 4, 5], log
    assert all(finished.count(epoch) == 1 for epoch in range(1, resumed + 1)), log
    assert "attempt 1 starts at epoch 1" in log
    assert f"attempt 2 starts at epoch {resumed + 1}" in log
    marker = next(line for line in log if line.startswith("[dstack] attempt 1 interrupted"))
    assert "starting attempt 2 of 3" in marker
    assert _job_state(store, run).attempt == 2
    attempts = json.loads(cli("ps", run, "--json", cwd=repo).out)[0]["attempts"]
    assert [(a["attempt"], a["status"]) for a in attempts] == [(1, "interrupted"), (2, "done")]
    names = [r["run"] for r in json.loads(cli("ps", "-a", "--json", cwd=repo).out)]
    assert names == [run]  # the same run, not a new one


def test_failing_command_with_retry_runs_three_times(dstack: Dstack, repo: Path) -> None:
    cli = dstack
    result = cli("run", "flaky", cwd=repo)
    assert result.code == 3
    attempts = [line for line in result.out.splitlines() if line.startswith("attempt ")]
    assert attempts == ["attempt 1", "attempt 2", "attempt 3"]
    assert "failed" in result.err


def test_without_retry_a_failing_command_runs_once(dstack: Dstack, repo: Path) -> None:
    cli = dstack
    result = cli("run", "failing", cwd=repo)
    assert result.code == 3
    assert [line for line in result.out.splitlines() if line.startswith("attempt ")] == [
        "attempt 1"
    ]
    override = cli("run", "--retry", "error:1", "failing", cwd=repo)
    assert override.code == 3
    assert override.out.count("attempt ") >= 2
    assert [line for line in override.out.splitlines() if line.startswith("attempt ")] == [
        "attempt 1",
        "attempt 2",
    ]


def test_exit_codes_limit_what_is_retried(dstack: Dstack, repo: Path) -> None:
    result = dstack("run", "picky", cwd=repo)
    assert result.code == 4
    assert [line for line in result.out.splitlines() if line.startswith("attempt ")] == [
        "attempt 1"
    ]


def test_stop_between_attempts_starts_no_new_attempt(
    dstack: Dstack, store: Store, repo: Path
) -> None:
    cli = dstack
    run = cli.run_detached("train", cwd=repo)
    cli.wait_status(run, repo, lambda s: s == "running")
    assert cli("stop", run, cwd=repo).code == 0
    row = cli.ps_json(run, repo)
    assert row["status"] == "stopped"
    assert _job_state(store, run).attempt == 1
