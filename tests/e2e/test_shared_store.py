"""A team in one store: several users (own DSTACK_HOME, own git identity) and their runs.

On S3 each user has a home of their own, as on separate machines; on the local store they
share this machine's folder (the only way two users can share it).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dstack import state
from dstack.models import RunRecord
from tests.conftest import git
from tests.e2e.cli import FINISHED, Dstack, job_lines
from tests.e2e.conftest import Store

WORKFLOWS = """\
workflows:
  - name: hello
    commands:
      - echo "hello from $RUN_NAME"
"""
REPO_ID = "github.com/acme/mnist"
ROOT = Path(__file__).resolve().parents[2]


def user(tmp_path: Path, store: Store, name: str, repo_factory) -> tuple[Dstack, Path]:  # type: ignore[no-untyped-def]
    """A user: their own clone of the repo with their git identity, and their own dstack."""
    repo = repo_factory({".dstack/workflows.yaml": WORKFLOWS})
    git(repo, "config", "user.name", name)
    git(repo, "config", "user.email", f"{name.lower()}@example.com")
    home = tmp_path / f"home-{name}" if store.kind == "s3" else tmp_path / "dstack-home"
    home.mkdir(exist_ok=True)
    return Dstack(home, store.env), repo


def ps_all(cli: Dstack, repo: Path) -> list[dict]:
    result = cli("ps", "-a", "--json", cwd=repo)
    assert result.code == 0, result.err
    return json.loads(result.out)


def test_ps_shows_each_runs_owner(tmp_path: Path, store: Store, repo_factory) -> None:  # type: ignore[no-untyped-def]
    ada, ada_repo = user(tmp_path, store, "Ada", repo_factory)
    bob, bob_repo = user(tmp_path, store, "Bob", repo_factory)
    assert ada("run", "hello", cwd=ada_repo).code == 0
    assert bob("run", "hello", cwd=bob_repo).code == 0
    for cli, repo in ((ada, ada_repo), (bob, bob_repo)):
        rows = ps_all(cli, repo)
        assert [r["owner"] for r in rows] == ["Bob", "Ada"]  # newest first
        table = cli("ps", "-a", cwd=repo).out.splitlines()
        assert table[0].split() == ["RUN", "WORKFLOW", "SUBMITTED", "OWNER", "STATUS", "COST"]
        at = table[0].index("OWNER")
        assert [line[at:].split()[0] for line in table[1:]] == [
            "Bob",
            "Ada",
        ]  # newest first, as --json
    detail = ada.ps_json(ps_all(ada, ada_repo)[0]["run"], ada_repo)
    assert detail["owner"] == "Bob"
    assert detail["owner_email"] == "bob@example.com"


@pytest.mark.parametrize("store", ["s3"], indirect=True)
def test_two_users_submitting_at_once_lose_nothing(
    tmp_path: Path,
    store: Store,
    repo_factory,  # type: ignore[no-untyped-def]
) -> None:
    users = [user(tmp_path, store, name, repo_factory) for name in ("Ada", "Bob")]
    per_user = 25
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.submit_many", str(per_user), "hello"],
            cwd=repo,
            env={**cli.env, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for cli, repo in users
    ]
    submitted = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        submitted.extend(out.decode().split())
    assert len(submitted) == len(set(submitted)) == 2 * per_user
    storage = store.storage()
    deadline = time.monotonic() + 120
    while True:
        runs = state.list_runs(storage, REPO_ID)
        if all(r.status.value in FINISHED for r in runs) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert sorted(r.run_name for r in runs) == sorted(submitted)
    assert sorted(r.owner for r in runs) == ["Ada"] * per_user + ["Bob"] * per_user
    assert {r.status.value for r in runs} == {"done"}
    for summary in runs:
        record = RunRecord.model_validate_json(
            storage.get(state.run_key(REPO_ID, summary.run_name))
        )
        assert record.owner.git_name == summary.owner
        assert record.owner.git_email == f"{summary.owner.lower()}@example.com"
        spec = state.read_job_spec(storage, REPO_ID, summary.run_name, 0)
        assert spec.run_name == summary.run_name
        job = state.read_job_state(storage, REPO_ID, summary.run_name, 0)
        assert (job.status.value, job.exit_code) == ("done", 0)
        assert storage.exists(state.name_key(summary.run_name))
        logs = state.logs_prefix(REPO_ID, summary.run_name, 0)
        output = b"".join(storage.get(i.key) for i in storage.list_objects(logs)).decode()
        assert job_lines(output) == [f"hello from {summary.run_name}"]
    for cli, repo in users:
        assert {r["run"] for r in ps_all(cli, repo)} == {r.run_name for r in runs}
