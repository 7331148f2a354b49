"""A job's environment is clean and documented: this machine's credentials never reach it."""

from __future__ import annotations

from pathlib import Path

import pytest

from dstack.models import FROM_HOST, JobSpec, RepoSnapshot
from dstack.runner.executor import JobProcess
from dstack.runner.prepare import job_environment, write_script

REPO = RepoSnapshot(repo_id="github.com/acme/mnist", code_key="codes/x.tar.gz")
HOST = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/home/ann",
    "USER": "ann",
    "LANG": "en_US.UTF-8",
    "LC_ALL": "C.UTF-8",
    "TERM": "xterm",
    "TMPDIR": "/tmp/ann",
    "HTTPS_PROXY": "http://proxy:3128",
    "no_proxy": "localhost",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI",
    "AWS_SESSION_TOKEN": "FwoGZXIvYXdzE",
    "GITHUB_TOKEN": "ghp_123",
    "DSTACK_HOME": "/home/ann/.dstack",
    "PYTHONPATH": "/runner/site",
    "HF_HOME": "/data/hf",
}


def spec(**fields: object) -> JobSpec:
    return JobSpec(run_name="wise-owl-1", workflow="train", provider="bash", repo=REPO, **fields)


def test_only_the_documented_host_variables_reach_the_job() -> None:
    env = job_environment(spec(env={"A": "1"}), {}, [], host=HOST)
    for name in ("HOME", "USER", "LANG", "LC_ALL", "TERM", "TMPDIR", "HTTPS_PROXY", "no_proxy"):
        assert env[name] == HOST[name]
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "GITHUB_TOKEN", "HF_HOME"):
        assert name not in env
    assert "DSTACK_HOME" not in env and "PYTHONPATH" not in env
    assert env["A"] == "1" and env["RUN_NAME"] == "wise-owl-1"


def test_a_host_variable_reaches_the_job_when_the_workflow_names_it() -> None:
    env = job_environment(
        spec(env={"HF_HOME": FROM_HOST, "UNSET_HERE": FROM_HOST}), {}, [], host=HOST
    )
    assert env["HF_HOME"] == "/data/hf" and "UNSET_HERE" not in env


def test_a_bare_name_in_the_workflow_env_takes_the_submitting_shells_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As `docker run -e NAME` does; a name the shell does not have is empty (2022)."""
    from dstack.spec.fields import parse_env

    monkeypatch.setenv("HF_HOME", "/data/hf")
    monkeypatch.delenv("UNSET_HERE", raising=False)
    assert parse_env(["HF_HOME", "UNSET_HERE", "A=1"]) == {
        "HF_HOME": "/data/hf", "UNSET_HERE": "", "A": "1",
    }  # fmt: skip


def test_a_job_printing_its_environment_shows_no_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-leaked")
    job = spec(commands=["env"])
    env = job_environment(job, {}, [])

    class Sink:
        data = b""

        def write(self, data: bytes) -> None:
            Sink.data += data

    process = JobProcess(write_script(job, tmp_path), tmp_path, env, Sink())  # type: ignore[arg-type]
    assert process.wait(60) == 0
    assert b"wJalrXUtnFEMI-leaked" not in Sink.data and b"RUN_NAME=wise-owl-1" in Sink.data


def test_a_job_path_of_its_own_does_not_stop_bash_from_starting(tmp_path: Path) -> None:
    job = spec(commands=["echo started"], env={"PATH": "/evil"})
    env = job_environment(job, {}, [])
    assert env["PATH"] == "/evil"

    class Sink:
        data = b""

        def write(self, data: bytes) -> None:
            Sink.data += data

    process = JobProcess(write_script(job, tmp_path), tmp_path, env, Sink())  # type: ignore[arg-type]
    assert process.wait(60) == 0 and Sink.data == b"started\n"  # bash: the runner's PATH
