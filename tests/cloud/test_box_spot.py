"""A spot interruption in the box: the notice comes from the instance's metadata service, EC2
ends the instance, and `retry: interruption` brings the job back on a second instance."""

from __future__ import annotations

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
  - name: resumable
    provider: bash
    commands:
      - mkdir -p out
      - if [ -f out/step ]; then echo "resumed after step $(cat out/step)"; exit 0; fi
      - echo 1 > out/step && echo "step 1 saved"
      - sleep 900
    artifacts:
      - path: out
    resources:
      interruptible: true
    retry:
      on: [interruption]
      limit: 2
"""


def test_b_a_spot_interruption_resumes_on_a_second_instance(
    cli: Dstack, box: Box, repo_factory: Any
) -> None:
    repo: Path = repo_factory({".dstack/workflows.yaml": WORKFLOWS})
    before = leftovers(box)
    booted = len(box.hypervisor.instances)
    run = cli.run_detached("resumable", cwd=repo)
    first = box.hypervisor.wait_for(booted + 1, timeout=BOOT_TIMEOUT)[-1]
    deadline = time.monotonic() + BOOT_TIMEOUT
    while "step 1 saved" not in cli("logs", run, cwd=repo).out:
        assert time.monotonic() < deadline, first.boot_log()[-3000:]
        time.sleep(2)
    # AWS's two-minute notice, then EC2 takes the instance back (here: 30 s later)
    first.imds.notice = {"action": "terminate", "time": "2026-12-07T10:00:00Z"}
    box.hypervisor.shutdown(first.instance_id, minutes=0.5)
    row = cli.wait_status(run, repo, lambda s: s in ("done", "failed", "stopped"), timeout=1500)
    assert row["status"] == "done", (row, cli("logs", run, cwd=repo).out)
    assert len(box.hypervisor.instances) == booted + 2
    assert "resumed after step 1" in cli("logs", run, cwd=repo).out
    deadline = time.monotonic() + 180
    while leftovers(box, before) and time.monotonic() < deadline:
        time.sleep(1)
    assert leftovers(box, before) == {}
