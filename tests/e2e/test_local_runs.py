"""End-to-end: the `dstack` CLI running real workflows of real git repos on this machine.

Each test that concerns runs, logs or artifacts runs once per state store (``store`` in
``conftest.py``): this machine's folder, and an S3 bucket on a moto server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from dstack import state
from tests.conftest import git
from tests.e2e.cli import DSTACK, FINISHED, Dstack, wait_for
from tests.e2e.conftest import Store

LOCAL_ONLY = pytest.mark.parametrize("store", ["local"], indirect=True)

WORKFLOWS = """\
workflows:
  - name: hello
    provider: bash
    commands:
      - echo "hello from $RUN_NAME"
  - name: files
    provider: bash
    commands:
      - cat tracked.txt
      - cat new.txt
      - test ! -e ignored.txt && echo "no ignored file"
  - name: pydefault
    provider: bash
    commands:
      - python --version
  - name: envargs
    provider: bash
    env:
      - GREETING=hi there
    commands:
      - echo "$GREETING|${{ run.args }}|$EXTRA|${{ run.name }}|$RUN_NAME|$REPO_ID|$PYTHONUNBUFFERED"
  - name: fail
    provider: bash
    commands:
      - echo before
      - exit 3
      - echo after
  - name: firstfail
    provider: bash
    commands:
      - "false"
      - echo "must not print"
  - name: slow
    provider: bash
    commands:
      - mkdir -p out
      - echo "epoch 1" > out/ckpt.txt
      - echo started
      - for i in $(seq 1 600); do if [ -e "$RELEASE" ]; then break; fi; sleep 0.05; done
      - echo finished
    artifacts:
      - out
  - name: counter
    provider: bash
    commands:
      - for i in $(seq 1 40); do echo "line $i"; sleep 0.05; done
  - name: pyscript
    provider: python
    file: script.py
    args: ["--name", "world"]
"""

SCRIPT = "import sys\nprint('script args:', sys.argv[1:])\n"


@pytest.fixture
def repo(repo_factory) -> Path:  # type: ignore[no-untyped-def]
    return repo_factory(
        {
            ".dstack/workflows.yaml": WORKFLOWS,
            "tracked.txt": "committed\n",
            ".gitignore": "ignored.txt\n",
            "script.py": SCRIPT,
        }
    )


def test_clean_repo_runs_and_shows_in_ps(dstack: Dstack, repo: Path) -> None:
    result = dstack("run", "hello", cwd=repo)
    assert result.code == 0, result.err
    assert "hello from " in result.out
    run_name = result.out.split("hello from ")[1].split()[0]
    rows = json.loads(dstack("ps", "-a", "--json", cwd=repo).out)
    assert [(r["run"], r["status"]) for r in rows] == [(run_name, "done")]


def test_job_sees_working_tree_not_ignored_files(dstack: Dstack, repo: Path) -> None:
    (repo / "tracked.txt").write_text("edited, not committed\n")
    (repo / "new.txt").write_text("untracked\n")
    (repo / "ignored.txt").write_text("secret\n")
    result = dstack("run", "files", cwd=repo)
    assert result.code == 0, result.err
    assert result.job_lines == ["edited, not committed", "untracked", "no ignored file"]
    # the user's checkout is untouched and was never the job's working directory
    assert (repo / "ignored.txt").read_text() == "secret\n"


def other_python(cache: Path) -> str | None:
    """A Python version this machine has (3.10 first) that is not the default one."""
    from dstack import pythons
    from dstack.errors import DstackError

    default = pythons.find_interpreter(None, cache).short
    for version in ("3.10", "3.11", "3.12", "3.9", "3.13"):
        if version == default:
            continue
        try:
            pythons.find_interpreter(version, cache)
        except DstackError:
            continue
        return version
    return None


@LOCAL_ONLY
def test_python_version_is_honoured(dstack: Dstack, repo: Path, machine_cache: Path) -> None:
    version = other_python(machine_cache)
    if version is None:
        pytest.skip("this machine has one Python version only (PATH, pyenv, uv, conda)")
    workflows = repo / ".dstack" / "workflows.yaml"
    workflows.write_text(
        workflows.read_text()
        + f"  - name: pyother\n    provider: bash\n    python: {version}\n"
        + "    commands:\n      - python --version\n"
    )
    wanted = dstack("run", "pyother", cwd=repo)
    assert wanted.code == 0, wanted.err
    assert wanted.job_lines[0].startswith(f"Python {version}.")
    default = dstack("run", "pydefault", cwd=repo)
    assert default.code == 0, default.err
    assert default.job_lines[0].startswith("Python 3.")
    assert not default.job_lines[0].startswith(f"Python {version}.")


def test_env_and_args_reach_the_commands(dstack: Dstack, repo: Path) -> None:
    result = dstack("run", "-e", "EXTRA=x=1", "envargs", "alpha", "beta gamma", cwd=repo)
    assert result.code == 0, result.err
    greeting, args, extra, name, run_name, repo_id, unbuffered = (
        "\n".join(result.job_lines).strip().split("|")
    )
    assert greeting == "hi there"
    assert args == "alpha beta gamma"
    assert extra == "x=1"
    assert name == run_name and name.count("-") == 2
    assert repo_id == "github.com/acme/mnist"
    assert unbuffered == "1"


def test_python_provider_runs_script_with_args(dstack: Dstack, repo: Path) -> None:
    result = dstack("run", "pyscript", "--extra", cwd=repo)
    assert result.code == 0, result.err
    assert "script args: ['--name', 'world', '--extra']" in result.out


def test_failing_command_sets_exit_code_and_stops(dstack: Dstack, repo: Path) -> None:
    result = dstack("run", "fail", cwd=repo)
    assert result.code == 3
    assert result.job_lines == ["before"]
    assert "failed" in result.err
    first = dstack("run", "firstfail", cwd=repo)
    assert first.code == 1
    assert "must not print" not in first.out


def test_artifact_is_saved_while_the_job_runs(dstack: Dstack, repo: Path, tmp_path: Path) -> None:
    release = tmp_path / "release"
    run = dstack.run_detached("slow", cwd=repo, options=("-e", f"RELEASE={release}"))

    def artifact_listed() -> bool:
        out = dstack("artifacts", "list", run, "--json", cwd=repo).out
        return any(f["path"] == "out/ckpt.txt" for f in json.loads(out or "[]"))

    wait_for(artifact_listed, what="artifact in the store mid-run")
    assert dstack.ps_json(run, repo)["status"] == "running"
    release.touch()
    row = dstack.wait_status(run, repo, lambda s: s in FINISHED)
    assert row["status"] == "done"
    target = tmp_path / "download"
    assert dstack("artifacts", "download", run, "-o", str(target), cwd=repo).code == 0
    assert (target / "out/ckpt.txt").read_text() == "epoch 1\n"


def test_stop_mid_run_saves_artifacts(dstack: Dstack, repo: Path, tmp_path: Path) -> None:
    run = dstack.run_detached("slow", cwd=repo, options=("-e", f"RELEASE={tmp_path / 'never'}"))
    dstack.wait_status(run, repo, lambda s: s == "running")
    result = dstack("stop", run, cwd=repo)
    assert result.code == 0, result.err
    assert dstack.ps_json(run, repo)["status"] == "stopped"
    files = json.loads(dstack("artifacts", "list", run, "--json", cwd=repo).out)
    assert [f["path"] for f in files] == ["out/ckpt.txt"]
    logs = dstack("logs", run, cwd=repo)
    assert "started" in logs.out and "finished" not in logs.out


def test_abort_does_not_wait(dstack: Dstack, repo: Path, tmp_path: Path) -> None:
    run = dstack.run_detached("slow", cwd=repo, options=("-e", f"RELEASE={tmp_path / 'never'}"))
    dstack.wait_status(run, repo, lambda s: s == "running")
    assert dstack("stop", "-x", run, cwd=repo).code == 0
    assert dstack.ps_json(run, repo)["status"] == "aborted"


def _runner_pid(store: Store, run: str) -> int:
    job = state.read_job_state(store.storage(), "github.com/acme/mnist", run, 0)
    assert job.runner_pid
    return job.runner_pid


def test_killed_runner_is_recorded_as_interrupted(
    dstack: Dstack, repo: Path, tmp_path: Path, store: Store
) -> None:
    run = dstack.run_detached("slow", cwd=repo, options=("-e", f"RELEASE={tmp_path / 'never'}"))
    dstack.wait_status(run, repo, lambda s: s == "running")
    os.kill(_runner_pid(store, run), signal.SIGKILL)
    row = dstack.wait_status(run, repo, lambda s: s in FINISHED, timeout=15)
    assert row["status"] == "interrupted"
    assert "runner" in row["reason"]


def test_killing_the_attached_cli_leaves_the_job_running(dstack: Dstack, repo: Path) -> None:
    attached = dstack.popen("run", "counter", cwd=repo)
    assert attached.stdout is not None
    first = attached.stdout.readline().decode()
    while first.startswith("[dstack] "):  # the runner's phase timings come first
        first = attached.stdout.readline().decode()
    assert first == "line 1\n"
    attached.send_signal(signal.SIGKILL)
    attached.wait()
    rows = json.loads(dstack("ps", "-a", "--json", cwd=repo).out)
    run = rows[0]["run"]
    assert rows[0]["status"] in ("running", "uploading", "done")
    result = dstack("logs", "-a", run, cwd=repo)
    assert result.code == 0, result.err
    assert result.job_lines == [f"line {i}" for i in range(1, 41)]


def test_unchanged_rerun_stores_no_new_code(dstack: Dstack, repo: Path, store: Store) -> None:
    def codes() -> list[str]:
        return sorted(info.key for info in store.storage().list_objects("code/"))

    first_run = dstack("run", "hello", cwd=repo)
    assert first_run.code == 0, first_run.err
    assert "[dstack] code ready in " in first_run.out  # where the time goes, in the job's log
    first = codes()
    assert dstack("run", "hello", cwd=repo).code == 0
    assert codes() == first
    (repo / "new.txt").write_text("changed\n")
    assert dstack("run", "hello", cwd=repo).code == 0
    added = set(codes()) - set(first)
    assert {key.split("/")[1] for key in added} == {"blobs", "trees"} and len(added) == 2


def test_code_replaced_in_the_store_is_refused_then_stored_anew(
    dstack: Dstack, repo: Path, store: Store
) -> None:
    """Another bucket user replaces the stored code of my file; my next run, on a machine that
    does not hold it yet (a fresh instance; here: the machine's code caches emptied), must not
    run their code. Written against the store as any version lays it out (``codes/`` archives
    before, ``code/blobs/`` now), so it shows the old behaviour too."""
    import gzip
    import hashlib
    import io
    import os
    import shutil
    import tarfile

    (repo / "new.txt").write_text("mine\n")
    assert dstack("run", "files", cwd=repo).code == 0
    storage = store.storage()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in (("tracked.txt", b"committed\n"), ("new.txt", b"theirs\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    replaced = 0
    for info in list(storage.list_objects("code")):  # "codes/…" and "code/…"
        if info.key.startswith("codes/"):
            storage.put(info.key, gzip.compress(raw.getvalue()))
            replaced += 1
        elif info.key == "code/blobs/" + hashlib.sha256(b"mine\n").hexdigest():
            storage.put(info.key, b"theirs\n")
            replaced += 1
    assert replaced == 1
    cache = Path(os.environ["DSTACK_CACHE_DIR"])
    for folder in (cache / "codes", cache / "code" / "checkouts"):
        shutil.rmtree(folder, ignore_errors=True)
    refused = dstack("run", "files", cwd=repo)
    assert "theirs" not in refused.out
    assert refused.code != 0
    assert "does not match its content address" in refused.out
    healed = dstack("run", "files", cwd=repo)  # the tampered object and its tree were removed
    assert healed.code == 0, healed.out + healed.err
    assert "mine" in healed.out


def test_rm_deletes_finished_runs_only(dstack: Dstack, repo: Path, tmp_path: Path) -> None:
    assert dstack("run", "hello", cwd=repo).code == 0
    done = json.loads(dstack("ps", "-a", "--json", cwd=repo).out)[0]["run"]
    running = dstack.run_detached("slow", cwd=repo, options=("-e", f"RELEASE={tmp_path / 'never'}"))
    refused = dstack("rm", running, "-y", cwd=repo)
    assert refused.code != 0 and "stop it first" in refused.err
    assert dstack("rm", done, "-y", cwd=repo).code == 0
    names = [r["run"] for r in json.loads(dstack("ps", "-a", "--json", cwd=repo).out)]
    assert names == [running]
    dstack("stop", "-x", running, cwd=repo)


def test_concurrent_runs_get_distinct_names(dstack: Dstack, repo: Path) -> None:
    procs = [dstack.popen("run", "-d", "hello", cwd=repo) for _ in range(6)]
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    rows = json.loads(dstack("ps", "-a", "--json", cwd=repo).out)
    assert len({r["run"] for r in rows}) == 6
    for row in rows:  # their runners write to the store until then, the bucket's teardown too
        dstack.wait_status(row["run"], repo, lambda s: s in FINISHED, timeout=120)


@LOCAL_ONLY
def test_not_a_git_repo_is_a_clear_error(dstack: Dstack, tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    result = dstack("run", "hello", cwd=folder)
    assert result.code != 0
    assert "not a git repository" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_detached_head_and_unpushed_commits(dstack: Dstack, repo: Path) -> None:
    (repo / "tracked.txt").write_text("second commit\n")
    git(repo, "commit", "-qam", "second")
    git(repo, "checkout", "-q", "--detach")
    (repo / "new.txt").write_text("n\n")
    result = dstack("run", "files", cwd=repo)
    assert result.code == 0, result.err
    assert result.job_lines[0] == "second commit"


def test_help_lists_commands() -> None:
    out = subprocess.run([*DSTACK, "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("run", "ps", "logs", "stop", "rm", "artifacts", "schema"):
        assert command in out
