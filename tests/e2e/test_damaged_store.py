"""What another bucket user (or a careless one) can do to a run's records, and what dstack
says about it: missing output is named, damaged records never block clean-up, and who
stopped or removed a run is recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dstack import state
from tests.e2e.cli import Dstack

WORKFLOWS = """\
workflows:
  - name: chatty
    commands:
      - for i in 1 2 3 4 5 6; do echo "line $i"; sleep 0.3; done
  - name: quiet
    commands:
      - "true"
  - name: slow
    commands:
      - sleep 60
"""


@pytest.fixture
def repo(repo_factory) -> Path:  # type: ignore[no-untyped-def]
    return repo_factory({".dstack/workflows.yaml": WORKFLOWS})


def chunks(dstack: Dstack, repo: Path, run: str) -> list[str]:
    repo_id = dstack._repo_id(repo)
    prefix = state.logs_prefix(repo_id, run, 0)
    return [info.key for info in dstack.storage().list_objects(prefix)]


def latest_run(dstack: Dstack, repo: Path) -> str:
    rows = json.loads(dstack("ps", "-a", "--json", cwd=repo).out)
    return str(rows[0]["run"])


def test_deleted_and_emptied_log_chunks_are_named(dstack: Dstack, repo: Path) -> None:
    assert dstack("run", "chatty", cwd=repo).code == 0
    run = latest_run(dstack, repo)
    keys = chunks(dstack, repo, run)
    assert len(keys) >= 3, keys
    storage = dstack.storage()
    storage.delete(keys[1])
    storage.put(keys[2], b"")
    result = dstack("logs", run, cwd=repo)
    assert result.code == 0
    assert "log chunk 1 of job" in result.err and "missing from the store" in result.err
    assert "log chunk 2 of job" in result.err and "is empty" in result.err


def test_a_run_whose_log_objects_are_all_gone_says_so(dstack: Dstack, repo: Path) -> None:
    assert dstack("run", "chatty", cwd=repo).code == 0
    run = latest_run(dstack, repo)
    for key in chunks(dstack, repo, run):
        dstack.storage().delete(key)
    result = dstack("logs", run, cwd=repo)
    assert result.out == ""
    assert "missing from the store" in result.err


def test_a_job_that_printed_nothing_is_not_reported_missing(dstack: Dstack, repo: Path) -> None:
    assert dstack("run", "quiet", cwd=repo).code == 0
    result = dstack("logs", latest_run(dstack, repo), cwd=repo)
    # only dstack's own phase lines (code ready in …): nothing of the job's is missing
    assert (result.code, result.job_lines, result.err) == (0, [], "")


def test_who_stopped_and_who_removed_a_run_is_shown(
    tmp_path: Path,
    store,
    repo_factory,  # type: ignore[no-untyped-def]
) -> None:
    from tests.e2e.test_shared_store import user

    ada, ada_repo = user(tmp_path, store, "Ada", repo_factory)
    bob, bob_repo = user(tmp_path, store, "Bob", repo_factory)
    for repo in (ada_repo, bob_repo):
        (repo / ".dstack/workflows.yaml").write_text(WORKFLOWS)
    run = ada.run_detached("slow", cwd=ada_repo)
    ada.wait_status(run, ada_repo, lambda s: s == "running")
    assert bob("stop", run, "-y", cwd=bob_repo).code == 0
    detail = ada.ps_json(run, ada_repo)
    assert detail["stopped_by"].startswith("Bob (") and detail["stop_request"] == "stop"
    assert "stopped by Bob (" in ada("ps", run, cwd=ada_repo).out
    assert bob("rm", run, "-y", cwd=bob_repo).code == 0
    gone = ada("ps", run, cwd=ada_repo)
    assert gone.code != 0 and f"run {run} was removed by Bob (" in gone.err
