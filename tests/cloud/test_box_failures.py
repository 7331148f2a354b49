"""Runs that do not go to plan, in the box: a boot that fails, and a user who stops a run.
Each ends with nothing left in the account (see ``test_box_runs`` for the tier itself)."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cloud.conftest import Box
from tests.cloud.test_box_runs import BOOT_TIMEOUT, leftovers
from tests.e2e.cli import Dstack

pytestmark = pytest.mark.slow

WORKFLOWS = """\
workflows:
  - name: broken
    provider: bash
    python: "3.11"
    requirements: requirements.txt
    commands:
      - echo never
  - name: long
    provider: bash
    commands:
      - echo started
      - sleep 600
"""


def _nothing_left(
    box: Box, before: dict[str, list[str]], timeout: float = 180, why: Any = str
) -> None:
    """Waits for what the runs made to be gone; else fails with ``why()``."""
    deadline = time.monotonic() + timeout
    while leftovers(box, before) and time.monotonic() < deadline:
        time.sleep(1)
    left = leftovers(box, before)
    assert left == {}, f"{left}\n{why()}"


@pytest.fixture
def repo(repo_factory: Any) -> Path:
    return repo_factory({  # type: ignore[no-any-return]
        ".dstack/workflows.yaml": WORKFLOWS,
        "requirements.txt": "this-package-does-not-exist-dstack-box==0.0.1\n",
    })  # fmt: skip


def test_e_ctrl_c_during_boot_then_stop_during_the_job_then_prune(
    cli: Dstack, box: Box, repo: Path
) -> None:
    before = leftovers(box)
    booted = len(box.hypervisor.instances)
    process = cli.popen("run", "long", cwd=repo)
    box.hypervisor.wait_for(booted + 1, timeout=BOOT_TIMEOUT)
    said = _read_until(process, b"To interrupt, press Ctrl+C.")  # the stack is up
    process.send_signal(signal.SIGINT)  # Ctrl+C while the instance boots
    said += process.communicate(timeout=600)[1]
    text = said.decode()
    assert process.returncode == 130, text
    assert "Traceback" not in text, text
    # the run is stopped, not left going: a Ctrl+C the moment the hint is seen used to be
    # lost (the CLI exited 130 silently and the job ran on, its instance too)
    [stopped] = [line for line in text.splitlines() if "interrupted without a terminal" in line]
    first = stopped.split()[1]
    assert cli.ps_json(first, repo)["status"] in ("aborted", "stopped"), text

    run = cli.run_detached("long", cwd=repo)
    deadline = time.monotonic() + BOOT_TIMEOUT
    while "started" not in cli("logs", run, cwd=repo).out:
        assert time.monotonic() < deadline, cli("logs", run, cwd=repo)
        time.sleep(2)
    stopped = cli("stop", run, cwd=repo, timeout=600)
    assert stopped.code == 0, stopped.err
    row = cli.wait_status(run, repo, lambda s: s in ("stopped", "done", "failed"), timeout=600)
    assert row["status"] == "stopped", row
    pruned = cli("prune", "-y", cwd=repo, timeout=600)
    assert pruned.code == 0, _why(cli, repo, pruned.out + pruned.err)
    runs = cli("ps", "-a", cwd=repo).out
    _nothing_left(box, before, why=lambda: f"prune said:\n{pruned.out}{pruned.err}\nps:\n{runs}")


def _read_until(process: subprocess.Popen[bytes], text: bytes) -> bytes:
    """The CLI's stderr up to the line holding ``text`` (the stream stays open)."""
    assert process.stderr is not None
    said = b""
    while text not in said:
        line = process.stderr.readline()
        assert line, said.decode()
        said += line
    return said


def _why(cli: Dstack, repo: Path, said: str) -> str:
    """What prune said, with `dstack infra -v` of every run it named."""
    names = set(re.findall(r"stack ([a-z]+-[a-z]+-\d+)", said))
    return said + "".join(cli("infra", "-v", name, cwd=repo).out for name in sorted(names))


def test_e_ctrl_c_while_the_instance_is_being_created_leaves_nothing(
    cli: Dstack, box: Box, repo: Path
) -> None:
    """Ctrl+C while the engine is still creating the instance: the engine cancels gracefully,
    what it created is destroyed at once, the CLI says so, and `dstack prune` finds nothing."""
    before = leftovers(box)
    booted = len(box.hypervisor.instances)
    hold = box.hypervisor.hold_next_boot = threading.Event()
    process = cli.popen("run", "long", cwd=repo)
    try:
        box.hypervisor.wait_for(booted + 1, timeout=BOOT_TIMEOUT)
        process.send_signal(signal.SIGINT)  # the instance's create has not returned yet
        said = _read_until(process, b"cancelling gracefully")  # the engine got the Ctrl+C
        hold.set()
        said += process.communicate(timeout=600)[1]
    finally:
        hold.set()
        if process.poll() is None:
            process.kill()
    text = said.decode()
    assert process.returncode != 0, text
    assert "Traceback" not in text, text
    assert "what it had created was destroyed" in text, text
    pruned = cli("prune", "-y", cwd=repo, timeout=600)
    assert pruned.code == 0, _why(cli, repo, pruned.out + pruned.err)
    _nothing_left(box, before)


def test_d_a_failed_boot_is_reported_within_two_minutes(cli: Dstack, box: Box, repo: Path) -> None:
    """A boot that fails on the boot script's own pip install: the instance powers off; the
    user sees the boot log's last lines and one clear error line, within two minutes."""
    before = leftovers(box)
    # the next instance's package index is unreachable: its boot script's pip install fails
    box.hypervisor.next_pip_conf = "[global]\nindex-url = http://127.0.0.1:9/simple\n"
    booted = len(box.hypervisor.instances)
    process = cli.popen("run", "long", cwd=repo)
    try:
        instance = box.hypervisor.wait_for(booted + 1, timeout=BOOT_TIMEOUT)[-1]
        assert instance.ended.wait(BOOT_TIMEOUT)
        ended = time.monotonic()
        out, err = process.communicate(timeout=180)
        assert time.monotonic() - ended < 120
        text = err.decode()
        assert process.returncode != 0, text
        [failed] = [line for line in text.splitlines() if " failed: " in line]
        assert "failed: the instance's boot failed while installing uv: " in failed, text
        # the boot log's last lines, kept with the job's log and streamed as it is
        assert "[boot] ERROR: " in out.decode(), out.decode()
    finally:
        if process.poll() is None:
            process.kill()
        cli("stop", "-a", "-y", cwd=repo, timeout=600)  # the run the CLI left waiting
    _nothing_left(box, before)


def test_g_a_code_workflow_is_refused_at_submit(cli: Dstack, box: Box, repo_factory: Any) -> None:
    """No VS Code server can be installed on an instance: one error line, nothing created."""
    repo = repo_factory(
        {".dstack/workflows.yaml": "workflows:\n  - name: ide\n    provider: code\n"}
    )
    before = leftovers(box)
    booted = len(box.hypervisor.instances)
    result = cli("run", "ide", cwd=repo, timeout=300)
    assert result.code == 1, result.err
    [line] = result.err.strip().splitlines()
    assert line.startswith("Error: workflow 'ide': provider code needs"), line
    assert len(box.hypervisor.instances) == booted
    assert leftovers(box, before) == {}
