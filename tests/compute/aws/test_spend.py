"""Recording what a cloud run spent (``dstack.compute.aws.spend``) against moto's EC2: launch
and termination times, type, market and zone from DescribeInstances, a spot node priced from
the spot price history, an instance whose runner never started, EC2 out of reach; and a run on
AWS end to end (the ``cloud_harness`` stand-ins) whose spend `dstack ps` and `dstack cost`
show, before and after its stack is destroyed."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest

from dstack import api, state
from dstack.compute.aws.ec2 import Ec2
from dstack.compute.aws.spend import record_spend, time_weighted
from dstack.models import InfraRecord, JobState, JobStatus
from dstack.state import spend
from dstack.storage.local import LocalStorage
from dstack.storage.s3.storage import S3Storage
from tests.cloud_spend_records import HOUR, cloud_run, ran
from tests.compute.aws.cloud_harness import FakeImds, InstanceStandIn
from tests.compute.aws.doubles import FakeAutomation
from tests.compute.aws.test_cloud_run import (  # noqa: F401 (fixtures)
    WORKFLOWS,
    imds,
    make_context,
    wait_finished,
    wheel,
    wheel_dir,
)
from tests.e2e.cli import Dstack
from tests.moto_server import MotoServer
from tests.records import put_job_state


def test_time_weighted_price() -> None:
    points = [(100.0, 1.0), (0.0, 3.0), (200.0, 2.0)]
    assert time_weighted(points, 50, 150) == pytest.approx((3.0 * 50 + 1.0 * 50) / 100)
    assert time_weighted(points, 250, 350) == 2.0  # the last price before it holds
    assert time_weighted([(500.0, 4.0)], 0, 100) == 4.0  # nothing before: the first
    assert time_weighted([], 0, 100) is None


def launch(ec2: Any, *, spot: bool = False) -> tuple[str, float]:
    """An instance in moto (spot when asked); its id and launch time."""
    extra = {"InstanceMarketOptions": {"MarketType": "spot"}} if spot else {}
    item = ec2.run_instances(
        ImageId="ami-12345678", MinCount=1, MaxCount=1, InstanceType="g4dn.xlarge", **extra
    )["Instances"][0]
    return item["InstanceId"], item["LaunchTime"].timestamp()


def test_recorded_from_what_ec2_says_of_each_instance(
    moto_server: MotoServer, tmp_path: Path
) -> None:
    ec2 = moto_server.client("ec2")
    storage = LocalStorage(tmp_path)
    spot_id, spot_launch = launch(ec2, spot=True)
    demand_id, demand_launch = launch(ec2)
    # attempt 1 on a spot instance (interrupted), attempt 2 on demand (done)
    run, spec = cloud_run(storage, "calm-cat-1", submitted_at=spot_launch - 60, price=0.526)
    first = ran(storage, spec, spot_launch + 90, spot_launch + 600,
                status=JobStatus.INTERRUPTED, instance_id=spot_id)  # fmt: skip
    state.record_attempt(storage, spec, first)
    ran(storage, spec, demand_launch + 90, demand_launch + 900, attempt=2, instance_id=demand_id)
    ec2.terminate_instances(InstanceIds=[spot_id, demand_id])
    said: list[str] = []

    recorded = record_spend(
        storage, run, Ec2("us-east-1", endpoint_url=moto_server.endpoint_url), said.append
    )
    assert recorded is not None and said == []
    assert spend.read_spend(storage, run.repo_id, run.run_name) == recorded
    assert recorded.final and not recorded.running
    spot, demand = recorded.nodes
    assert (spot.attempt, spot.instance_id, spot.market) == (1, spot_id, "spot")
    assert (demand.attempt, demand.instance_id, demand.market) == (2, demand_id, "on-demand")
    for node, launched in ((spot, spot_launch), (demand, demand_launch)):
        assert node.instance_type == "g4dn.xlarge" and node.availability_zone
        assert (node.start_from, node.started_at) == ("launch", launched)  # not the runner's
        assert node.end_from == "ec2"  # the termination EC2 recorded, not the runner's end
        assert node.ended_at is not None and node.ended_at >= int(launched)
    # the spot node at its zone's spot price history (moto's: $0.00001), the other as quoted
    assert (spot.price_source, spot.price_per_hour) == ("spot-history", 0.00001)
    assert (demand.price_source, demand.price_per_hour) == ("quoted", 0.526)


def test_an_instance_no_runner_reported_is_counted_from_the_stack(
    moto_server: MotoServer, tmp_path: Path
) -> None:
    """The instance booted but its runner never started (a failed boot): the stack's outputs
    name it, and EC2 says how long it lived."""
    ec2 = moto_server.client("ec2")
    storage = LocalStorage(tmp_path)
    instance_id, launched = launch(ec2)
    run, spec = cloud_run(storage, "calm-cat-1", submitted_at=launched - 60)
    put_job_state(storage, spec, "ada", JobState(status=JobStatus.FAILED, reason="no runner"))
    state.write_infra_record(
        storage, run.repo_id, run.run_name,
        InfraRecord(kind="up", stack=run.run_name, at=launched,
                    outputs={"instance_ids": {"0": instance_id}}),
    )  # fmt: skip
    ec2.terminate_instances(InstanceIds=[instance_id])
    recorded = record_spend(
        storage, run, Ec2("us-east-1", endpoint_url=moto_server.endpoint_url), print
    )
    assert recorded is not None
    [node] = recorded.nodes
    assert (node.instance_id, node.start_from, node.end_from) == (instance_id, "launch", "ec2")
    assert node.price_per_hour == 3.06


def test_a_node_the_walk_moved_is_priced_as_the_offer_it_was_created_on(
    moto_server: MotoServer, tmp_path: Path
) -> None:
    """Quoted on its first offer, created on a later one (the first had no capacity)."""
    ec2 = moto_server.client("ec2")
    storage = LocalStorage(tmp_path)
    instance_id, launched = launch(ec2)
    run, spec = cloud_run(storage, "calm-cat-1", submitted_at=launched - 60, price=0.526)
    ran(storage, spec, launched + 90, launched + 900, instance_id=instance_id)
    for price, kind in ((0.526, "g5.xlarge"), (0.81, "g4dn.xlarge")):  # the walk's two tries
        offer = {"instance_type": kind, "market": "on-demand", "price_per_hour": price}
        state.write_infra_record(
            storage, run.repo_id, run.run_name,
            InfraRecord(kind="plan", stack=run.run_name, at=launched, offers={"0": offer}),
        )  # fmt: skip
    ec2.terminate_instances(InstanceIds=[instance_id])
    recorded = record_spend(
        storage, run, Ec2("us-east-1", endpoint_url=moto_server.endpoint_url), print
    )
    assert recorded is not None
    [node] = recorded.nodes
    assert (node.instance_type, node.price_source, node.price_per_hour) == (
        "g4dn.xlarge", "offer", 0.81,
    )  # fmt: skip


def test_without_ec2_the_runners_times_are_recorded_and_the_problem_said(
    tmp_path: Path,
) -> None:
    storage = LocalStorage(tmp_path)
    run, spec = cloud_run(storage, "calm-cat-1", submitted_at=1000.0, price=2.0)
    ran(storage, spec, 1000.0, 1000.0 + HOUR)
    said: list[str] = []
    nowhere = Ec2("us-east-1", endpoint_url="http://127.0.0.1:9")  # nothing listens
    recorded = record_spend(storage, run, nowhere, said.append, now=5000.0 + HOUR)
    assert recorded is not None and recorded.final
    [node] = recorded.nodes
    assert (node.start_from, node.end_from) == ("runner", "runner")
    assert recorded.total(0) == pytest.approx(2.0)
    assert len(said) == 1 and said[0].startswith("could not read the instances of run calm-cat-1")


@pytest.mark.slow  # a runner in a subprocess, waiting on its job
def test_a_cloud_runs_spend_in_ps_and_cost(
    moto_server: MotoServer, bucket: str, automation: FakeAutomation, imds: FakeImds,  # noqa: F811
    wheel: Any, wheel_dir: Path, repo_factory: Any, tmp_path: Path, dstack_home: Path,  # noqa: F811
) -> None:  # fmt: skip
    repo = repo_factory({".dstack/workflows.yaml": WORKFLOWS})
    storage = S3Storage(bucket, endpoint_url=moto_server.endpoint_url, retry_deadline=5)
    ctx = make_context(storage, moto_server, automation, repo, wheel)
    stand_in = InstanceStandIn(moto_server.client("ec2"), imds, wheel_dir, tmp_path)
    stand_in.outputs = automation.outputs
    automation.on_up = stand_in.on_up
    try:
        submission = api.submit(ctx, "train")  # interruptible: a spot instance
        run, repo_id = submission.run.run_name, submission.run.repo_id
        assert wait_finished(storage, run, repo_id).status is JobStatus.DONE
        stand_in.wait()
    finally:
        stand_in.kill()
    cli = Dstack(
        dstack_home,
        {"DSTACK_AWS_S3_BUCKET": bucket, "DSTACK_AWS_ENDPOINT_URL": moto_server.endpoint_url},
    )

    # finished, its stack not destroyed yet: from the runner's times, at the quoted price
    [row] = json.loads(cli("ps", "-a", "--json", cwd=repo).out)
    assert row["run"] == run and row["cost_usd"] is not None  # a cloud run: not "-"
    assert (row["cost_final"], row["cost_running"]) == (False, False)
    [before] = json.loads(cli("ps", run, "--json", cwd=repo).out)[0]["spend"]
    final = state.read_job_state(storage, repo_id, run, 0)
    assert (before["start_from"], before["end_from"]) == ("runner", "runner")
    assert (before["started_at"], before["ended_at"]) == (final.started_at, final.finished_at)

    from dstack.services import infra

    assert infra.release(ctx, run) is True
    recorded = spend.read_spend(storage, repo_id, run)
    assert recorded is not None and recorded.final
    [node] = recorded.nodes
    instance_id = automation.outputs["instance_ids"]["0"]
    described = moto_server.client("ec2").describe_instances(InstanceIds=[instance_id])
    item = described["Reservations"][0]["Instances"][0]
    assert (node.instance_id, node.instance_type) == (instance_id, item["InstanceType"])
    assert (node.market, node.start_from, node.end_from) == ("spot", "launch", "ec2")
    assert node.started_at == item["LaunchTime"].timestamp()
    assert node.price_source == "spot-history"

    table = cli("ps", "-a", cwd=repo)
    assert table.code == 0, table.err
    header, line = table.out.splitlines()[:2]
    assert header.split()[-1] == "COST" and line.split()[-1] in ("<$0.01", "$0.00")
    detail = cli("ps", run, cwd=repo)
    assert "(recorded)" in detail.out
    assert f"job 0 attempt 1: {item['InstanceType']} spot " in detail.out
    [as_json] = json.loads(cli("ps", run, "--json", cwd=repo).out)
    assert as_json["cost_final"] is True and as_json["spend"][0]["instance_id"] == instance_id

    by_user = json.loads(cli("cost", "--by", "user", "--json", cwd=repo).out)
    [user_row] = by_user["rows"]
    assert (user_row["runs"], user_row["running"]) == (1, 0)
    assert user_row["usd"] == pytest.approx(recorded.total(0), abs=1e-4)


class DescribeOnly:
    """Stands in for a boto3 EC2 client answering DescribeInstances with AWS's own wording
    (moto writes ``UTC`` where AWS writes ``GMT``); moto itself is used by the tests above."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def get_paginator(self, name: str) -> Any:
        assert name == "describe_instances"
        items = self.items

        class Pages:
            def paginate(self, **kwargs: Any) -> list[dict[str, Any]]:
                return [{"Reservations": [{"Instances": items}]}]

        return Pages()


def test_the_end_is_read_from_aws_wording_of_the_transition() -> None:
    launched = datetime.datetime(2026, 12, 7, 9, 2, 5, tzinfo=datetime.UTC)
    items = [
        {"InstanceId": "i-1", "State": {"Name": "terminated"}, "InstanceType": "p3.2xlarge",
         "Placement": {"AvailabilityZone": "us-east-1b"}, "LaunchTime": launched,
         "StateTransitionReason": "User initiated (2026-12-07 10:06:41 GMT)"},
        {"InstanceId": "i-2", "State": {"Name": "running"}, "InstanceType": "g5.xlarge",
         "InstanceLifecycle": "spot", "LaunchTime": launched, "StateTransitionReason": ""},
        {"InstanceId": "i-3", "State": {"Name": "terminated"}, "LaunchTime": launched,
         "StateTransitionReason": "Service initiated"},
    ]  # fmt: skip
    facts = Ec2("us-east-1", client=DescribeOnly(items)).describe(["i-1", "i-2", "i-3"])
    ended = datetime.datetime(2026, 12, 7, 10, 6, 41, tzinfo=datetime.UTC).timestamp()
    assert (facts["i-1"].ended_at, facts["i-1"].spot) == (ended, False)
    assert facts["i-1"].launched_at == launched.timestamp()
    assert (facts["i-2"].ended_at, facts["i-2"].spot) == (None, True)  # still running
    assert facts["i-3"].ended_at is None  # no time given: the runner's or the destroy's
