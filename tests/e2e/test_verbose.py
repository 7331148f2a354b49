"""Diagnostics through ``logging``: ``dstack -v`` and ``DSTACK_LOG_LEVEL`` show them on stderr,
by default nothing changes, and the runner writes its own file beside its output."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from dstack import settings
from tests.e2e.cli import Dstack
from tests.e2e.test_local_runs import WORKFLOWS  # its `hello` workflow

LOCAL_ONLY = pytest.mark.parametrize("store", ["local"], indirect=True)
#: the usual format: timestamp, level, logger, message
RECORD = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) dstack\.\S+: "
)


@pytest.fixture
def repo(repo_factory) -> Path:  # type: ignore[no-untyped-def]
    return repo_factory({".dstack/workflows.yaml": WORKFLOWS})


def records(text: str) -> list[str]:
    return [line for line in text.splitlines() if RECORD.match(line)]


@LOCAL_ONLY
def test_verbose_shows_debug_lines_and_default_shows_none(dstack: Dstack, repo: Path) -> None:
    quiet = dstack("run", "hello", cwd=repo)
    assert quiet.code == 0, quiet.err
    assert records(quiet.err) == []

    loud = dstack("-v", "run", "hello", cwd=repo)
    assert loud.code == 0, loud.err
    lines = records(loud.err)
    assert any(" DEBUG dstack.storage: store: the folder " in line for line in lines), loud.err
    # what users saw before is still there, unchanged, around the diagnostics
    assert [line for line in loud.err.splitlines() if not RECORD.match(line)] == [
        line for line in quiet.err.replace(_run_name(quiet), _run_name(loud)).splitlines()
    ]
    assert records(loud.out) == []
    assert len(loud.job_lines) == len(quiet.job_lines) == 1


@LOCAL_ONLY
def test_the_level_from_the_environment(dstack: Dstack, repo: Path) -> None:
    dstack.env["DSTACK_LOG_LEVEL"] = "debug"
    assert records(dstack("ps", cwd=repo).err)
    dstack.env["DSTACK_LOG_LEVEL"] = "warning"
    assert records(dstack("ps", cwd=repo).err) == []
    dstack.env["DSTACK_LOG_LEVEL"] = "loud"
    bad = dstack("ps", cwd=repo)
    assert bad.code != 0
    assert bad.err.splitlines() == [
        "Error: DSTACK_LOG_LEVEL='loud': expected one of debug, info, warning, error, "
        "critical or a number"
    ]


@LOCAL_ONLY
def test_the_runner_logs_to_a_file_beside_its_output(
    dstack: Dstack, repo: Path, dstack_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = dstack("run", "hello", cwd=repo)
    assert result.code == 0, result.err
    run_name = _run_name(result)
    monkeypatch.setenv("DSTACK_HOME", str(dstack_home))
    repo_id = "github.com/acme/mnist"
    log = settings.runner_log_path(repo_id, f"{run_name}-0")
    assert log.parent == settings.runner_output_path(repo_id, f"{run_name}-0").parent
    lines = log.read_text().splitlines()
    assert lines and all(RECORD.match(line) for line in lines), lines
    text = "\n".join(lines)
    assert "INFO dstack.runner.__main__: runner " in text
    assert f"INFO dstack.runner.agent: job {run_name}-0: running" in text
    assert "the job ended done" in text


def test_help_imports_no_sdk() -> None:
    """``dstack --help`` stays fast: the logging set-up brings in no SDK."""
    code = (
        "import sys, runpy\n"
        "sys.argv = ['dstack', '--help']\n"
        "try:\n    runpy.run_module('dstack', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "heavy = [m for m in ('boto3', 'botocore', 'pulumi', 'git', 'tenacity') if m in sys.modules]\n"
        "print(heavy, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stderr.strip().splitlines()[-1] == "[]"


def _run_name(result) -> str:  # type: ignore[no-untyped-def]
    return result.out.split("hello from ")[1].split()[0]
