"""Ctrl+C on an attached `dstack run` at the moments between "the run is written" and "its
output is followed": each is handled as a Ctrl+C while following it (without a terminal: the
run is stopped), never a silent exit that leaves the run going (on a cloud, its instance).

The CLI runs in its own process, as a user starts it; the Ctrl+C is delivered at an exact
point by a small wrapper that sends the process SIGINT from inside the step named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cli import FINISHED, Dstack

WORKFLOWS = """\
workflows:
  - name: ticker
    commands:
      - for i in $(seq 1 600); do echo "tick $i"; sleep 0.1; done
"""

# the CLI's main(), with SIGINT sent to itself at one point: ``hint`` as the line "To
# interrupt, press Ctrl+C." is written; ``view`` as the run is first read back after the submit;
# ``started`` once the jobs were started, before the submit returns
WRAPPER = """\
import os, signal, sys

point = sys.argv.pop(1)


def interrupt():
    os.kill(os.getpid(), signal.SIGINT)


if point == "hint":
    class Stderr:
        def __init__(self, real):
            self.real = real

        def write(self, text):
            written = self.real.write(text)
            if "To interrupt" in text:
                self.real.flush()
                interrupt()
            return written

        def __getattr__(self, name):
            return getattr(self.real, name)

    sys.stderr = Stderr(sys.stderr)
elif point == "view":
    from dstack import api

    real_view_of = api.view_of

    def view_of(*args, **kwargs):
        interrupt()
        return real_view_of(*args, **kwargs)

    api.view_of = view_of
elif point == "started":
    from dstack.services import runs

    real_start_jobs = runs.start_jobs

    def start_jobs(*args, **kwargs):
        real_start_jobs(*args, **kwargs)
        interrupt()

    runs.start_jobs = start_jobs
from dstack.cli.main import main

main()
"""


@pytest.fixture
def repo(repo_factory: Any) -> Path:
    return repo_factory({".dstack/workflows.yaml": WORKFLOWS})  # type: ignore[no-any-return]


def _interrupted(cli: Dstack, repo: Path, point: str, *command: str) -> str:
    """Run the CLI's ``command`` with SIGINT at ``point``: it exits 130, saying it stopped the
    run, which is then finished. The run's name."""
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, point, *command],
        cwd=repo, env=cli.env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 130, done.stderr
    [line] = [line for line in done.stderr.splitlines() if "interrupted without a terminal" in line]
    run = line.split()[1]
    row = cli.ps_json(run, repo)
    assert row["status"] in FINISHED, (row, done.stderr)
    return run


@pytest.mark.parametrize("point", ["hint", "view", "started"])
def test_ctrl_c_before_the_output_is_followed_stops_the_run(
    dstack_home: Path, repo: Path, point: str
) -> None:
    _interrupted(Dstack(dstack_home), repo, point, "run", "ticker")


@pytest.mark.parametrize("point", ["hint", "started"])
def test_ctrl_c_before_a_restarts_output_is_followed_stops_it(
    dstack_home: Path, repo: Path, point: str
) -> None:
    """`dstack restart` of a stopped ticker: the new run is a ticker too, stopped in turn."""
    cli = Dstack(dstack_home)
    ticker = cli.run_detached("ticker", cwd=repo)
    assert cli("stop", ticker, cwd=repo).code == 0
    assert _interrupted(cli, repo, point, "restart", ticker) != ticker
