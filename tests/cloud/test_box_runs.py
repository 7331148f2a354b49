"""Runs through the `dstack` CLI on AWS compute, every instance booted in the box from its exact
user data on Debian bullseye's Python 3.9 (see ``conftest`` and ``box``): what a cloud run does
from `dstack run` to nothing left behind."""

from __future__ import annotations

import itertools
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cloud.box import Instance
from tests.cloud.conftest import BUCKET, Box
from tests.e2e.cli import Dstack

pytestmark = pytest.mark.slow

WORKFLOWS = """\
workflows:
  - name: hello
    provider: bash
    commands:
      - echo "hello from $(. /etc/os-release && echo $VERSION_CODENAME)"
      - mkdir -p out && echo 42 > out/answer.txt
      - echo '{"step":1,"answer":42}' >> "$DSTACK_METRICS"
    artifacts:
      - path: out
  - name: train
    provider: python
    python: "3.11"
    requirements: requirements.txt
    file: train.py
"""
TRAIN = """\
import platform, sys
import six
print(f"python {platform.python_version()} (six {six.__version__}) on", sys.platform)
"""
BOOT_TIMEOUT = 900  # a first boot downloads uv, CPython and the pins


def leftovers(box: Box, before: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """What a finished run must not leave in the account (less what was there ``before``)."""
    ec2, iam = box.client("ec2"), box.client("iam")
    running = [
        i["InstanceId"]
        for r in ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] not in ("terminated", "shutting-down")
    ]
    groups = [
        g["GroupId"]
        for g in ec2.describe_security_groups()["SecurityGroups"]
        if g["GroupName"] != "default"
    ]
    spot = [
        s["SpotInstanceRequestId"]
        for s in ec2.describe_spot_instance_requests()["SpotInstanceRequests"]
        if s["State"] in ("open", "active")
    ]
    roles = [r["RoleName"] for r in iam.list_roles(PathPrefix="/dstack/")["Roles"]]
    profiles = [p["InstanceProfileName"] for p in iam.list_instance_profiles()["InstanceProfiles"]]
    found = {"instances": running, "security groups": groups, "spot requests": spot,
             "roles": roles, "instance profiles": profiles}  # fmt: skip
    before = before or {}
    found = {
        kind: [i for i in items if i not in before.get(kind, [])] for kind, items in found.items()
    }
    return {kind: items for kind, items in found.items() if items}


def boot_report(instance: Instance) -> str:
    """Boot-to-first-output of one instance, and where the time went (the boot log's steps)."""
    steps = re.findall(r"^dstack-boot (\d\d):(\d\d):(\d\d\.\d+) (.*)$", instance.boot_log(), re.M)
    if not steps:
        return f"{instance.instance_id}: no boot steps logged"
    times = [(int(h) * 3600 + int(m) * 60 + float(s), what) for h, m, s, what in steps]
    lines = [f"{instance.instance_id}: boot to runner start {times[-1][0] - times[0][0]:.1f}s"]
    for (start, what), (end, _) in itertools.pairwise(times):
        lines.append(f"  {end - start:6.1f}s  {what}")
    return "\n".join(lines)


def test_a_bash_and_a_python_workflow_on_an_older_instance_python(
    cli: Dstack, box: Box, repo_factory: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    repo: Path = repo_factory({
        ".dstack/workflows.yaml": WORKFLOWS, "train.py": TRAIN, "requirements.txt": "six\n",
    })  # fmt: skip
    before = leftovers(box)
    started = time.monotonic()
    hello = cli("run", "hello", cwd=repo, timeout=BOOT_TIMEOUT)
    first = time.monotonic() - started
    instances = list(box.hypervisor.instances.values())
    assert hello.code == 0, _diagnose(hello, instances)
    assert "hello from bullseye" in hello.out, _diagnose(hello, instances)
    run = hello.err.split("Run ", 1)[1].split()[0] if "Run " in hello.err else None
    keys = [
        o["Key"]
        for o in box.client("s3").list_objects_v2(Bucket=BUCKET).get("Contents", [])
        if run and f"/runs/{run}/" in o["Key"]
    ]
    assert any(k.endswith("answer.txt") for k in keys), keys
    metrics = cli("metrics", run or "", "--json", cwd=repo)  # written by the run role
    assert metrics.code == 0, metrics.err
    assert [(p["step"], p["values"]) for p in json.loads(metrics.out)] == [(1, {"answer": 42.0})]

    train = cli("run", "train", cwd=repo, timeout=BOOT_TIMEOUT)
    instances = list(box.hypervisor.instances.values())
    assert train.code == 0, _diagnose(train, instances)
    assert re.search(r"python 3\.11\.\d+ \(six [\d.]+\) on linux", train.out), train.out
    assert box.mirror.requests, "uv did not download its CPython from the stand-in mirror"

    deadline = time.monotonic() + 120
    while leftovers(box, before) and time.monotonic() < deadline:
        time.sleep(1)
    assert leftovers(box, before) == {}
    with capsys.disabled():
        print(f"\n[box] first `dstack run` (cold instance) to its end: {first:.0f}s")
        for instance in instances:
            print("[box] " + boot_report(instance).replace("\n", "\n[box] "))


def _diagnose(result: Any, instances: list[Instance]) -> str:
    logs = "\n".join(f"--- {i.instance_id}\n{i.boot_log()[-3000:]}" for i in instances)
    return (
        f"exit {result.code}\nstdout:\n{result.out[-3000:]}\nstderr:\n{result.err[-3000:]}\n{logs}"
    )
