"""A spot interruption in the box (scenario b): the notice comes from the instance's metadata
service, the runner saves the job's artifacts and records the next attempt, EC2 takes the
instance back, and the attached `dstack run` starts the second instance, on which the job
resumes from its artifacts. See ``conftest`` and ``box`` for the tier itself."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cloud.conftest import Box
from tests.cloud.test_box_runs import BOOT_TIMEOUT, boot_report, leftovers
from tests.e2e.cli import Dstack

pytestmark = pytest.mark.slow

STEPS = 8
# Each step is counted in an artifact before it runs; a resumed job continues after the last
# step counted (and no longer pauses between steps: the test waits for no second notice).
WORKFLOWS = f"""\
workflows:
  - name: resumable
    provider: bash
    commands:
      - |
        mkdir -p out
        done=$(cat out/steps 2>/dev/null || echo 0)
        pause=20
        if [ "$done" -gt 0 ]; then echo "resuming after step $done"; pause=0; fi
        for n in $(seq $((done + 1)) {STEPS}); do
          echo "$n" > out/steps && echo "step $n" && sleep "$pause"
        done
        echo "all {STEPS} steps done"
    artifacts:
      - path: out
    resources:
      interruptible: true
    retry:
      on: [interruption]
      limit: 1
"""
#: the spot warning here: EC2 gives two minutes; the runner needs seconds (box.interrupt)
WARNING_SECONDS = 60.0


def test_b_a_spot_interruption_resumes_on_a_second_instance(
    cli: Dstack, box: Box, repo_factory: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    repo: Path = repo_factory({".dstack/workflows.yaml": WORKFLOWS})
    before = leftovers(box)
    booted = len(box.hypervisor.instances)
    started = time.monotonic()
    process = cli.popen("run", "resumable", cwd=repo)  # the user stays attached
    try:
        first = box.hypervisor.wait_for(booted + 1, timeout=BOOT_TIMEOUT)[-1]
        storage = cli.storage()
        deadline = time.monotonic() + BOOT_TIMEOUT
        while _steps_saved(storage) < 2:
            assert time.monotonic() < deadline, first.boot_log()[-3000:]
            assert not first.ended.is_set(), first.boot_log()[-3000:]
            time.sleep(1)
        box.hypervisor.interrupt(first.instance_id, warning=WARNING_SECONDS)
        second = box.hypervisor.wait_for(booted + 2, timeout=BOOT_TIMEOUT)[-1]
        out, err = process.communicate(timeout=BOOT_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    took = time.monotonic() - started
    text, errors = out.decode(), err.decode()
    report = f"{text[-3000:]}\n{errors[-3000:]}\n{first.boot_log()[-3000:]}"
    assert process.returncode == 0, report
    resumed = re.search(r"^resuming after step (\d+)$", text, re.M)
    assert resumed and int(resumed.group(1)) >= 2, report
    assert f"all {STEPS} steps done" in text, report
    assert first.ended.is_set()
    assert "spot interruption notice" in first.boot_log(), first.boot_log()[-3000:]

    run = errors.split("Run ", 1)[1].split()[0]
    shown = cli("ps", run, cwd=repo)
    assert "attempt 1: interrupted" in shown.out, shown.out
    assert "attempt 2: done" in shown.out, shown.out
    assert len(box.hypervisor.instances) == booted + 2

    deadline = time.monotonic() + 180
    while leftovers(box, before) and time.monotonic() < deadline:
        time.sleep(1)
    assert leftovers(box, before) == {}
    with capsys.disabled():
        print(f"\n[box] spot interruption and resume, `dstack run` to its end: {took:.0f}s")
        said = r"attempt|previous instance|Provisioning|Stack \S+ (is up|destroyed)|^Run "
        for line in errors.splitlines():  # what the attached user was told, not the engine
            if re.search(said, line):
                print(f"[box] dstack run: {line}")
        for instance in (first, second):
            print("[box] " + boot_report(instance).replace("\n", "\n[box] "))


def _steps_saved(storage: Any) -> int:
    """How many steps the job has counted in its artifact in the bucket (0 before any)."""
    for info in storage.list_objects(""):
        if "/artifacts/" in info.key and info.key.endswith("/out/steps"):
            return int(storage.get(info.key).decode().strip() or 0)
    return 0


# Scenario h, with the real launcher: `torchrun` from the workflow's requirements, its static
# rendezvous (TCPStore at MASTER_ADDR:MASTER_PORT, as the runners published it) and gloo over
# the instances' network. torch 1.12.1 is the newest torch whose wheel carries its CUDA
# libraries itself (776 MB, 1.6 GB installed); later ones pull 2.8 GB of nvidia packages, too
# much to install on every instance here. It has wheels up to Python 3.10; the job runs on
# the instance's own Python (bullseye's 3.9).
ALLREDUCE = """\
import socket

import torch
import torch.distributed as dist

dist.init_process_group("gloo")  # env:// from torchrun: RANK, WORLD_SIZE, MASTER_ADDR/PORT
rank, world = dist.get_rank(), dist.get_world_size()
value = torch.full((1,), float(rank + 1))
dist.all_reduce(value)
print(f"rank {rank} of {world} on {socket.gethostname()}: all-reduce sum {value.item():g}")
dist.destroy_process_group()
"""
NODES = """\
workflows:
  - name: allreduce
    provider: torchrun
    nodes: 2
    python: "3.9"
    requirements: requirements.txt
    file: allreduce.py
"""


def test_h_two_nodes_find_each_other_and_all_reduce(
    cli: Dstack, box: Box, repo_factory: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    repo: Path = repo_factory({
        ".dstack/workflows.yaml": NODES,
        "allreduce.py": ALLREDUCE,
        "requirements.txt": "torch==1.12.1\n",
    })  # fmt: skip
    before = leftovers(box)
    booted = len(box.hypervisor.instances)
    started = time.monotonic()
    result = cli("run", "allreduce", cwd=repo, timeout=BOOT_TIMEOUT)
    took = time.monotonic() - started
    instances = list(box.hypervisor.instances.values())[booted:]
    logs = "\n".join(f"--- {i.instance_id}\n{i.boot_log()[-2000:]}" for i in instances)
    report = f"exit {result.code}\n{result.out[-3000:]}\n{result.err[-3000:]}\n{logs}"
    assert result.code == 0, report
    assert len(instances) == 2, report
    for rank in (0, 1):
        assert f"rank {rank} of 2 on " in result.out and "all-reduce sum 3" in result.out, report
    run = result.err.split("Run ", 1)[1].split()[0]
    shown = cli("ps", run, "--json", cwd=repo)
    assert shown.code == 0 and '"done"' in shown.out, shown.out

    deadline = time.monotonic() + 180
    while leftovers(box, before) and time.monotonic() < deadline:
        time.sleep(1)
    assert leftovers(box, before) == {}
    with capsys.disabled():
        print(f"\n[box] 2-node run, `dstack run` to its end: {took:.0f}s")
        for instance in instances:
            print("[box] " + boot_report(instance).replace("\n", "\n[box] "))
