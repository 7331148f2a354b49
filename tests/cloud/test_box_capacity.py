"""Scenario c of the box tier: AWS has no capacity for a run's first offer. The stand-in
Instance answers its launch as RunInstances does (``InsufficientInstanceCapacity``, through
``$DSTACK_BOX_NO_CAPACITY``); the try's stack is destroyed, the run moves on to its second
offer (one line of its output), boots there from its exact user data, ends ``done``, and
leaves nothing in the account (see ``test_box_runs`` for the tier itself)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cloud.conftest import Box
from tests.cloud.test_box_runs import BOOT_TIMEOUT, _diagnose, leftovers
from tests.e2e.cli import Dstack

pytestmark = pytest.mark.slow

WORKFLOWS = """\
workflows:
  - name: hello
    provider: bash
    commands:
      - echo "hello from the second offer"
"""


def _offer_text(offer: dict[str, Any]) -> str:
    zone = offer["availability_zone"] or "any zone"
    return f"{offer['instance_type']} {offer['market']} in {zone}"


def test_c_no_capacity_for_the_first_offer_lands_on_the_second(
    cli: Dstack, box: Box, repo_factory: Any
) -> None:
    repo: Path = repo_factory({".dstack/workflows.yaml": WORKFLOWS})
    planned = cli("run", "--plan", "--json", "hello", cwd=repo)
    assert planned.code == 0, planned.err
    first, second = json.loads(planned.out)["jobs"][0]["offers"][:2]
    assert first["instance_type"] != second["instance_type"], (first, second)
    zone = first["availability_zone"]
    cli.env["DSTACK_BOX_NO_CAPACITY"] = first["instance_type"] + (f"@{zone}" if zone else "")
    before = leftovers(box)
    launched = {i["InstanceId"] for i in _instances(box)}

    result = cli("run", "hello", cwd=repo, timeout=BOOT_TIMEOUT)
    instances = list(box.hypervisor.instances.values())
    assert result.code == 0, _diagnose(result, instances)
    assert "hello from the second offer" in result.out, _diagnose(result, instances)
    line = (
        f"[dstack] {_offer_text(first)}: no capacity (InsufficientInstanceCapacity); trying "
        f"{second['instance_type']} {second['market']} in {second['availability_zone'] or 'any zone'}"
    )
    assert line in result.out + result.err, _diagnose(result, instances)
    run = result.err.split("Run ", 1)[1].split()[0]
    # the one instance the run had is of the second offer; the first was never launched
    ours = [i for i in _instances(box) if i["InstanceId"] not in launched]
    assert [i["InstanceType"] for i in ours] == [second["instance_type"]]
    status = cli("ps", run, cwd=repo)
    assert status.code == 0 and "done" in status.out, status.out + status.err

    deadline = time.monotonic() + 180
    while leftovers(box, before) and time.monotonic() < deadline:
        time.sleep(1)
    assert leftovers(box, before) == {}
    pruned = cli("prune", "--dry-run", cwd=repo)
    assert run not in pruned.out, pruned.out


def _instances(box: Box) -> list[dict[str, Any]]:
    return [i for r in box.client("ec2").describe_instances()["Reservations"]
            for i in r["Instances"]]  # fmt: skip


def test_c_every_offer_without_capacity_fires_no_capacity(
    cli: Dstack, box: Box, repo_factory: Any
) -> None:
    """With one offer (``--max-price`` at its price) and no capacity for it, the start fails
    classed ``no-capacity``; ``retry: no-capacity`` walks the offers again at attempt 2, which
    fails the same way, and the run fails in one line with nothing left."""
    repo: Path = repo_factory({
        ".dstack/workflows.yaml": WORKFLOWS + "    retry: {on: [no-capacity], limit: 1}\n",
    })  # fmt: skip
    planned = cli("run", "--plan", "--json", "hello", cwd=repo)
    assert planned.code == 0, planned.err
    first, second = json.loads(planned.out)["jobs"][0]["offers"][:2]
    assert second["price_per_hour"] > first["price_per_hour"], (first, second)
    cli.env["DSTACK_BOX_NO_CAPACITY"] = first["instance_type"]
    before = leftovers(box)

    price = str(first["price_per_hour"])
    result = cli("run", "--max-price", price, "hello", cwd=repo, timeout=BOOT_TIMEOUT)
    assert result.code == 1, result.out + result.err
    error = result.err.strip().splitlines()[-1]
    assert error.startswith("Error: no capacity (capacity, InsufficientInstanceCapacity): "), error
    assert error.endswith("every offer of workflow 'hello' was tried (1)"), error
    assert result.err.count("Provisioning run ") == 2, result.err  # attempts 1 and 2
    run = result.err.split("Provisioning run ", 1)[1].split()[0]
    logs = cli("logs", run, cwd=repo)
    walked = f"[dstack] {_offer_text(first)}: no capacity (InsufficientInstanceCapacity); no offer left (1 tried)"
    assert logs.out.count(walked) == 2, logs.out + logs.err
    assert "starting attempt 2 of 2" in logs.out, logs.out
    status = cli("ps", run, cwd=repo)
    assert "failed" in status.out, status.out + status.err

    deadline = time.monotonic() + 180
    while leftovers(box, before) and time.monotonic() < deadline:
        time.sleep(1)
    assert leftovers(box, before) == {}
    pruned = cli("prune", "--dry-run", cwd=repo)
    assert run not in pruned.out, pruned.out
