"""Provisioning walks the offers: when AWS has no capacity for the offer tried, the stack is
destroyed and created again on the next one (another zone, another type, on-demand after
spot), each move one line of the job's output; only when every offer fails does the start
fail, with the ``no-capacity`` class. Also: on-demand after the Nth interruption.

The engine is ``FakeAutomation`` (its ``refuse`` hook answers a launch as RunInstances would,
with InsufficientInstanceCapacity for a chosen type, market and zone; the real engine's errors
are driven in ``tests/engine``, a whole run in the box tier's scenario c); the store and EC2
are moto. Offers with zones need live prices: they are written to the price cache, as a lookup
of AWS's price APIs within the hour would have left them (the lookup itself:
``test_prices.py``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from dstack import api, retry, state
from dstack.compute.aws.catalog import Catalog
from dstack.compute.aws.failures import ProvisioningError
from dstack.compute.aws.walk import Walk, failed_jobs, next_text
from dstack.lifecycle import Writer, conclude
from dstack.models import JobStatus
from dstack.services.starts import start_jobs
from dstack.storage.base import Storage
from tests.compute.aws.doubles import FakeAutomation, Launch, no_capacity
from tests.compute.aws.test_aws_compute import setup, wheel  # noqa: F401 (fixtures)

WORKFLOWS = """\
workflows:
  - name: gpu
    commands: [echo hi]
    resources: {gpu: 1}
    spot_policy: auto
  - name: patient
    commands: [echo hi]
    resources: {gpu: 1}
    spot_policy: auto
    retry: {on: [no-capacity], limit: 1}
  - name: spotty
    commands: [echo hi]
    resources: {gpu: 1}
    spot_policy: spot
    on_demand_after: 2
    retry: {on: [interruption], limit: 5}
"""

#: the offers these prices make for one GPU with spot_policy auto, in the order tried
ORDER = [
    ("g4dn.xlarge", "spot", "us-east-1a"),
    ("g4dn.xlarge", "spot", "us-east-1b"),
    ("g5.xlarge", "spot", "us-east-1a"),
    ("g4dn.xlarge", "on-demand", "us-east-1a"),
    ("g4dn.xlarge", "on-demand", "us-east-1b"),
    ("g5.xlarge", "on-demand", "us-east-1a"),
]


@pytest.fixture
def live_prices(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Live prices of us-east-1 in the cache, fetched a minute ago."""
    import time

    monkeypatch.delenv("DSTACK_OFFLINE_PRICES", raising=False)
    monkeypatch.setenv("DSTACK_CACHE_DIR", str(tmp_path / "cache"))
    book = {
        "region": "us-east-1",
        "source": "live",
        "on_demand": {"g4dn.xlarge": 0.526, "g5.xlarge": 1.006},
        "spot": {
            "g4dn.xlarge": {"us-east-1a": 0.2, "us-east-1b": 0.21},
            "g5.xlarge": {"us-east-1a": 0.4},
        },
        "zones": {"g4dn.xlarge": ["us-east-1a", "us-east-1b"], "g5.xlarge": ["us-east-1a"]},
        "fetched_at": time.time() - 60,
        "reason": "",
        "asked": [t.name for t in Catalog.load().types],
    }
    path = tmp_path / "cache" / "prices" / "us-east-1.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(book))


def refusing(*offers: tuple[str, str, str | None]) -> Any:
    """A ``refuse`` hook: no capacity for these (type, market, zone)."""

    def refuse(launches: list[Launch]) -> BaseException | None:
        for launch in launches:
            if (launch.instance_type, launch.market, launch.availability_zone) in offers:
                return no_capacity(launch)
        return None

    return refuse


def tried(automation: FakeAutomation) -> list[tuple[str, str, str | None]]:
    return [(x.instance_type, x.market, x.availability_zone) for x in automation.launched]


def output(storage: Storage, repo_id: str, run_name: str, job_index: int = 0) -> str:
    prefix = state.keys.logs_prefix(repo_id, run_name, job_index)
    return "".join(storage.get(o.key).decode() for o in storage.list_objects(prefix))


def test_no_capacity_in_a_zone_moves_on_to_the_next_zone(
    setup: Any,  # noqa: F811 (the fixture imported above)
    automation: FakeAutomation,
    repo_factory: Any,
    live_prices: None,
) -> None:
    ctx, storage, _, _ = setup
    ctx.repo_path = repo_factory({".dstack/workflows.yaml": WORKFLOWS})
    automation.refuse = refusing(ORDER[0])
    run = api.submit(ctx, "gpu").run
    assert tried(automation) == ORDER[:2]
    calls = automation.calls(run.run_name)
    # the failed try was destroyed before the next was created
    assert calls.count("up") == 2 and calls.index("destroy") < len(calls) - calls[::-1].index("up")
    lines = [x for x in output(storage, run.repo_id, run.run_name).splitlines() if x]
    assert lines == [
        "[dstack] g4dn.xlarge spot in us-east-1a: no capacity (InsufficientInstanceCapacity); "
        "trying us-east-1b"
    ]
    now = state.read_job_state(storage, run.repo_id, run.run_name, 0)
    assert (now.status, now.attempt) != (JobStatus.FAILED, 1)
    # the plan (of the last try: a run keeps its latest plan) records the offer in use
    plans = [r for r in state.read_infra_records(storage, run.repo_id, run.run_name)
             if r.kind == "plan"]  # fmt: skip
    assert [p.offers["0"] for p in plans] == [
        {"instance_type": "g4dn.xlarge", "market": "spot", "availability_zone": "us-east-1b",
         "price_per_hour": 0.21}
    ]  # fmt: skip
    assert state.read_stack_record(storage, run.run_name) is not None


def test_auto_falls_back_from_spot_to_on_demand_across_types(
    setup: Any,  # noqa: F811 (the fixture imported above)
    automation: FakeAutomation,
    repo_factory: Any,
    live_prices: None,
) -> None:
    ctx, storage, _, _ = setup
    ctx.repo_path = repo_factory({".dstack/workflows.yaml": WORKFLOWS})
    automation.refuse = refusing(*ORDER[:3])
    run = api.submit(ctx, "gpu").run
    assert tried(automation) == ORDER[:4]
    lines = [x for x in output(storage, run.repo_id, run.run_name).splitlines() if x]
    assert lines[1:] == [
        "[dstack] g4dn.xlarge spot in us-east-1b: no capacity (InsufficientInstanceCapacity); "
        "trying g5.xlarge spot in us-east-1a",
        "[dstack] g5.xlarge spot in us-east-1a: no capacity (InsufficientInstanceCapacity); "
        "trying g4dn.xlarge on-demand in us-east-1a",
    ]


def test_when_every_offer_fails_the_start_fails_and_nothing_is_left(
    setup: Any,  # noqa: F811 (the fixture imported above)
    automation: FakeAutomation,
    repo_factory: Any,
    live_prices: None,
) -> None:
    ctx, storage, _, _ = setup
    ctx.repo_path = repo_factory({".dstack/workflows.yaml": WORKFLOWS})
    automation.refuse = refusing(*ORDER)
    with pytest.raises(ProvisioningError) as caught:
        api.submit(ctx, "gpu")
    line = str(caught.value)
    assert "\n" not in line
    assert line.startswith("no capacity (capacity, InsufficientInstanceCapacity)")
    assert line.endswith("every offer of workflow 'gpu' was tried (6)")
    assert tried(automation) == ORDER
    [run] = state.list_runs(storage, ctx.repo_id)
    calls = automation.calls(run.run_name)
    assert calls.count("up") == calls.count("destroy") == 6
    assert state.read_stack_record(storage, run.run_name) is None
    assert output(storage, ctx.repo_id, run.run_name).splitlines()[-1] == (
        "[dstack] g5.xlarge on-demand in us-east-1a: no capacity "
        "(InsufficientInstanceCapacity); no offer left (6 tried)"
    )


def test_no_capacity_retry_walks_the_offers_again(
    setup: Any,  # noqa: F811 (the fixture imported above)
    automation: FakeAutomation,
    repo_factory: Any,
    live_prices: None,
) -> None:
    ctx, storage, _, _ = setup
    ctx.repo_path = repo_factory({".dstack/workflows.yaml": WORKFLOWS})
    refuse_all = refusing(*ORDER)
    automation.refuse = lambda launches: (
        refuse_all(launches) if len(automation.launched) <= len(ORDER) else None
    )
    submission = api.submit(ctx, "patient")
    assert tried(automation) == ORDER + ORDER[:1]
    now = state.read_job_state(storage, submission.run.repo_id, submission.run.run_name, 0)
    assert now.attempt == 2
    [first] = state.list_attempts(storage, submission.jobs[0])
    assert first.status is JobStatus.FAILED and retry.event_of(first) == "no-capacity"


def test_a_try_whose_destroy_failed_is_not_tried_again(
    setup: Any,  # noqa: F811 (the fixture imported above)
    automation: FakeAutomation,
    repo_factory: Any,
    live_prices: None,
) -> None:
    ctx, storage, _, _ = setup
    ctx.repo_path = repo_factory({".dstack/workflows.yaml": WORKFLOWS})
    automation.refuse = refusing(ORDER[0])
    automation.fail("destroy", RuntimeError("the engine crashed"), RuntimeError("again"))
    with pytest.raises(ProvisioningError, match="could not all be destroyed"):
        api.submit(ctx, "gpu")
    assert tried(automation) == ORDER[:1]
    [run] = state.list_runs(storage, ctx.repo_id)
    assert state.read_stack_record(storage, run.run_name) is not None  # prune finds it


def test_on_demand_after_the_nth_interruption(
    setup: Any,  # noqa: F811 (the fixture imported above)
    automation: FakeAutomation,
    repo_factory: Any,
    live_prices: None,
) -> None:
    ctx, storage, compute, _ = setup
    ctx.repo_path = repo_factory({".dstack/workflows.yaml": WORKFLOWS})
    automation.refuse = refusing()
    submission = api.submit(ctx, "spotty")
    run, [job] = submission.run, submission.jobs
    markets = []
    for attempt in (1, 2):  # the spot instance is reclaimed twice
        current = state.read_latest_job_state(storage, job)
        ended = current.model_copy(update={"status": JobStatus.INTERRUPTED, "reason": "spot"})
        following = conclude(storage, job, run.owner.display, ended, Writer.CONCLUDER)
        assert following.attempt == attempt + 1
        start_jobs(storage, compute, run, [job], Writer.SUBMITTER)
        markets.append(automation.launched[-1].market)
    assert [x.market for x in automation.launched[:1]] == ["spot"]
    assert markets == ["spot", "on-demand"]
    text = output(storage, run.repo_id, run.run_name)
    assert (
        "[dstack] 2 interruptions (on_demand_after: 2): this attempt goes on-demand, on "
        "g4dn.xlarge on-demand in us-east-1a at $0.526/h"
    ) in text
    assert text.count("goes on-demand") == 1


def test_the_config_default_of_on_demand_after(
    setup: Any,  # noqa: F811 (the fixture imported above)
    automation: FakeAutomation,
    repo_factory: Any,
    live_prices: None,
) -> None:
    ctx, storage, compute, _ = setup
    compute.config = compute.config.model_copy(update={"on_demand_after": 1})
    ctx.repo_path = repo_factory({".dstack/workflows.yaml": WORKFLOWS.replace(
        "    on_demand_after: 2\n", "")})  # fmt: skip
    automation.refuse = refusing()
    submission = api.submit(ctx, "spotty")
    run, [job] = submission.run, submission.jobs
    current = state.read_latest_job_state(storage, job)
    ended = current.model_copy(update={"status": JobStatus.INTERRUPTED, "reason": "spot"})
    conclude(storage, job, run.owner.display, ended, Writer.CONCLUDER)
    start_jobs(storage, compute, run, [job], Writer.SUBMITTER)
    assert [x.market for x in automation.launched] == ["spot", "on-demand"]
    assert "1 interruption (on_demand_after: 1)" in output(storage, run.repo_id, run.run_name)


def test_the_failed_job_is_the_one_the_engine_names() -> None:
    error = no_capacity(Launch(2, "g5.xlarge", "spot", "us-east-1a", None), "lively-yak-1")
    assert failed_jobs(error, [0, 1, 2]) == [2]
    assert failed_jobs(RuntimeError("api error VcpuLimitExceeded"), [0, 1]) == [0, 1]


def test_a_vpc_walks_only_zones_it_has_a_subnet_in(
    setup: Any,  # noqa: F811 (the fixture imported above)
    automation: FakeAutomation,
    repo_factory: Any,
    live_prices: None,
) -> None:
    """With a subnet configured, an offer in another zone of its VPC goes to that zone's
    subnet; a zone without one is not tried."""
    ctx, _, compute, _ = setup
    ec2 = compute.ec2()
    vpc = ec2.ask("create_vpc", "t", CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    gateway = ec2.ask("create_internet_gateway", "t")["InternetGateway"]["InternetGatewayId"]
    ec2.ask("attach_internet_gateway", "t", InternetGatewayId=gateway, VpcId=vpc)
    [table] = ec2.ask("describe_route_tables", "t",
                      Filters=[{"Name": "vpc-id", "Values": [vpc]}])["RouteTables"]  # fmt: skip
    ec2.ask("create_route", "t", RouteTableId=table["RouteTableId"],
            DestinationCidrBlock="0.0.0.0/0", GatewayId=gateway)  # fmt: skip
    subnet_a = ec2.ask("create_subnet", "t", VpcId=vpc, CidrBlock="10.9.1.0/24",
                       AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]  # fmt: skip
    subnet_b = ec2.ask("create_subnet", "t", VpcId=vpc, CidrBlock="10.9.2.0/24",
                       AvailabilityZone="us-east-1b")["Subnet"]["SubnetId"]  # fmt: skip
    for subnet in (subnet_a, subnet_b):
        ec2.ask("modify_subnet_attribute", "t", SubnetId=subnet,
                MapPublicIpOnLaunch={"Value": True})  # fmt: skip
    compute.config = compute.config.model_copy(update={"subnet_id": subnet_a})
    ctx.repo_path = repo_factory({".dstack/workflows.yaml": WORKFLOWS})
    automation.refuse = lambda launches: next(
        (no_capacity(x) for x in launches if x.subnet_id == subnet_a), None
    )
    api.submit(ctx, "gpu")
    # the zone is the subnet's: the instance names its subnet only
    assert [(x.instance_type, x.market, x.subnet_id) for x in automation.launched] == [
        ("g4dn.xlarge", "spot", subnet_a),
        ("g4dn.xlarge", "spot", subnet_b),
    ]


def test_the_next_try_is_said_as_briefly_as_it_differs() -> None:
    from dstack.compute.aws.choice import JobChoice
    from dstack.compute.aws.offers import Offer

    catalog = Catalog.load()
    g4, g5 = (next(t for t in catalog.types if t.name == n) for n in ("g4dn.xlarge", "g5.xlarge"))
    a = Offer(g4, "spot", "us-east-1a", 0.2)
    assert next_text(a, Offer(g4, "spot", "us-east-1b", 0.2)) == "us-east-1b"
    assert next_text(a, Offer(g4, "on-demand", None, 0.5)) == "on-demand in any zone"
    assert next_text(a, Offer(g5, "spot", "us-east-1a", 0.4)) == "g5.xlarge spot in us-east-1a"
    choice: Any = JobChoice(None, None, "auto", [a, Offer(g4, "spot", "us-east-1c", 0.3)],
                            None, 3600)  # type: ignore[arg-type]  # fmt: skip
    walk = Walk({0: choice}, {"us-east-1a": "subnet-a"})
    assert walk.choices[0].offers == [a]  # us-east-1c has no subnet: not tried
    assert walk.advance(0, "InsufficientInstanceCapacity") is None


def test_the_configs_on_demand_after_is_a_count_of_one_or_more() -> None:
    from pydantic import ValidationError

    from dstack.compute.aws.config import AwsComputeConfig

    assert AwsComputeConfig(on_demand_after=3).on_demand_after == 3
    with pytest.raises(ValidationError, match="on_demand_after"):
        AwsComputeConfig(on_demand_after=0)
