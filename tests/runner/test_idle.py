"""``max_idle``: the idle watch on a fake clock and a scripted CPU probe, the CPU of a process
tree read from a fake ``/proc`` and from this machine's, the workflow key and its defaults per
provider, and a real run stopped for being idle through the `dstack` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from dstack.models import RepoSnapshot
from dstack.providers import RunInput, build_jobs
from dstack.runner.idle import BUSY_SHARE, IdleWatch, idle_text, tree_cpu_probe
from dstack.spec.workflows import Workflow
from tests.e2e.cli import Dstack
from tests.fakeclock import FakeClock

REPO = RepoSnapshot(repo_id="github.com/acme/mnist", code_key="codes/x.tar.gz")
ADAPTER: TypeAdapter[Workflow] = TypeAdapter(Workflow)


class ScriptedCpu:
    """Stands in for ``tree_cpu_probe``: the CPU seconds a job's processes used so far, as
    the test sets them (the real probe is tested below against /proc)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> float | None:
        return self.seconds


def test_idle_once_no_window_in_max_idle_was_busy() -> None:
    clock, cpu = FakeClock(), ScriptedCpu()
    watch = IdleWatch(3600, cpu, clock, window=60)
    for _ in range(59):
        clock.sleep(60)
        cpu.seconds += 0.1  # an idle server polled by an open tab: under 1% of a CPU
        assert not watch.expired()
    clock.sleep(60)
    assert watch.expired()


def test_a_busy_window_resets_the_idle_time() -> None:
    clock, cpu = FakeClock(), ScriptedCpu()
    watch = IdleWatch(600, cpu, clock, window=60)
    clock.sleep(540)
    assert watch.idle_for() == 540
    cpu.seconds += BUSY_SHARE * 60  # a cell that ran: exactly the threshold counts
    clock.sleep(60)
    assert watch.idle_for() == 0
    clock.sleep(599)
    assert not watch.expired()
    clock.sleep(1)
    assert watch.expired()


def test_cpu_that_cannot_be_read_never_counts_as_used() -> None:
    clock = FakeClock()
    watch = IdleWatch(120, lambda: None, clock, window=60)
    clock.sleep(120)
    assert watch.expired()


def stat_line(pid: int, ppid: int, ticks: int, name: str = "bash") -> str:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    # utime stime cutime cstime ...
    return f"{pid} ({name}) S {ppid} 1 1 0 -1 0 0 0 0 0 {ticks} 0 0 0 20 0 1 0\n"


def write_proc(proc: Path, processes: dict[int, tuple[int, int, str]]) -> None:
    for entry in proc.iterdir():
        (entry / "stat").unlink()
        entry.rmdir()
    for pid, (ppid, ticks, name) in processes.items():
        (proc / str(pid)).mkdir()
        (proc / str(pid) / "stat").write_text(stat_line(pid, ppid, ticks, name))


def test_tree_cpu_counts_descendants_only_and_never_goes_back(tmp_path: Path) -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    proc = tmp_path / "proc"
    proc.mkdir()
    write_proc(proc, {1: (0, 0, "init"), 10: (1, 100, "jupyter"), 20: (1, 5000, "other")})
    probe = tree_cpu_probe(10, proc)
    assert probe is not None
    assert probe() == 0  # the first sample is the baseline
    # the server spawned a kernel (a name with spaces and parentheses); another process,
    # not the job's, burnt CPU
    write_proc(
        proc,
        {1: (0, 0, "init"), 10: (1, 100 + ticks, "jupyter"), 11: (10, 2 * ticks, "k (x) y"),
         20: (1, 9000, "other")},
    )  # fmt: skip
    assert probe() == pytest.approx(3.0)
    write_proc(proc, {1: (0, 0, "init"), 10: (1, 100 + ticks, "jupyter")})  # the kernel exited
    assert probe() == pytest.approx(3.0)
    write_proc(proc, {1: (0, 0, "init")})
    assert probe() is None  # the job's main process is gone


CHILD = (
    "import sys, time\n"
    "sys.stdin.readline()\n"
    "t = time.process_time()\n"
    "while time.process_time() - t < 0.3: pass\n"
    "print('done', flush=True)\n"
    "sys.stdin.read()\n"
)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="no /proc on this system")
def test_tree_cpu_of_a_real_process_counts_its_childs_work() -> None:
    """A parent that only waits, and its child that burns 0.3 s of CPU once told to, then
    waits too."""
    parent = subprocess.Popen(
        [sys.executable, "-c",
         f"import subprocess, sys; subprocess.run([sys.executable, '-c', {CHILD!r}])"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        probe = tree_cpu_probe(parent.pid)
        assert probe is not None
        first = probe()
        assert first is not None
        assert parent.stdin is not None
        parent.stdin.write(b"go\n")
        parent.stdin.flush()
        assert parent.stdout is not None and parent.stdout.readline() == b"done\n"
        second = probe()
        assert second is not None and second - first >= 0.25
    finally:
        parent.kill()
        parent.wait()


def jobs(fields: dict[str, Any]) -> list[Any]:
    workflow = ADAPTER.validate_python({"name": "w", **fields})
    return build_jobs(RunInput(workflow, "wise-owl-1", REPO, [], 1.0))


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"provider": "lab"}, 3600.0),
        ({"provider": "notebook"}, 3600.0),
        ({"provider": "code"}, 3600.0),
        ({"provider": "lab", "max_idle": "30m"}, 1800.0),
        ({"provider": "lab", "max_idle": "off"}, None),
        ({"provider": "lab", "max_idle": False}, None),  # YAML's bare `off`
        ({"provider": "bash", "commands": ["train"]}, None),
        ({"provider": "bash", "commands": ["train"], "max_idle": "2h"}, 7200.0),
        ({"provider": "tensorboard", "runs": ["r-1"]}, None),
    ],
)
def test_max_idle_key_and_its_defaults(fields: dict[str, Any], expected: float | None) -> None:
    (job,) = jobs(fields)
    assert job.max_idle == expected


def test_a_bad_max_idle_is_refused() -> None:
    with pytest.raises(ValueError, match="duration"):
        jobs({"provider": "lab", "max_idle": "soon"})


@pytest.mark.parametrize("value", ["1h", "30m", "off", False, 90, "soon", 0, "-1h"])
def test_the_schema_and_the_loader_agree_on_max_idle(value: object) -> None:
    from tests.spec.test_schema_agrees import schema_accepts, validator_accepts

    document = {"workflows": [{"name": "w", "provider": "lab", "max_idle": value}]}
    assert validator_accepts(document) is schema_accepts(document), value


def test_idle_text() -> None:
    assert [idle_text(s) for s in (2, 60, 3600, 5400, 1800)] == ["2s", "1m", "1h", "1h 30m", "30m"]


IDLE_WORKFLOWS = """\
workflows:
  - name: idle
    provider: bash
    commands:
      - echo started
      - sleep 600
    max_idle: 1s
  - name: bad
    provider: bash
    commands: [echo hi]
    max_idle: soon
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="no /proc on this system")
def test_an_idle_run_is_stopped_through_the_cli(dstack_home: Path, repo_factory: Any) -> None:
    repo = repo_factory({".dstack/workflows.yaml": IDLE_WORKFLOWS})
    cli = Dstack(dstack_home)
    result = cli("run", "idle", cwd=repo)
    assert "[dstack] stopped: idle for 1s (max_idle)" in result.out
    [row] = json.loads(cli("ps", "-a", "--json", cwd=repo).out)
    assert row["status"] == "stopped" and row["cost_usd"] is None
    detail = json.loads(cli("ps", row["run"], "--json", cwd=repo).out)[0]
    assert detail["reason"] == "idle for 1s (max_idle)"

    bad = cli("run", "bad", cwd=repo)
    assert bad.code != 0 and "max_idle" in bad.err and "Traceback" not in bad.err
    assert len(bad.err.strip().splitlines()) == 1
