"""The account's vCPU quotas, checked before any stack: a run that cannot fit is refused in
one line naming the quota and how to raise it; offers whose quota is full are skipped; a
policy that may not read quotas gets one warning and the run goes on.

Service Quotas is ``tests.quotas_standin`` (moto serves no EC2 vCPU quotas); EC2 (the
instances already running) and the store are moto; the engine is ``FakeAutomation``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from dstack import api, state
from dstack.compute.aws import quotas
from dstack.errors import ComputeError
from tests.compute.aws.doubles import FakeAutomation
from tests.compute.aws.test_aws_compute import setup, wheel  # noqa: F401 (fixtures)
from tests.compute.aws.test_offer_walk import output, refusing, tried
from tests.moto_server import MotoServer
from tests.quotas_standin import QuotasStandIn, start_quotas

WORKFLOWS = """\
workflows:
  - name: gpu
    commands: [echo hi]
    resources: {gpu: 1}
    spot_policy: auto
    max_price: 0.6      # g4dn.xlarge only (4 vCPUs), spot then on-demand
"""
G_SPOT, G_ON_DEMAND = quotas.QUOTAS[("g", "spot")], quotas.QUOTAS[("g", "on-demand")]


@pytest.fixture
def standin() -> Iterator[QuotasStandIn]:
    server = start_quotas({G_SPOT.code: 8, G_ON_DEMAND.code: 8})
    yield server
    server.stop()


@pytest.fixture
def quota_setup(setup: Any, standin: QuotasStandIn, repo_factory: Any) -> Any:  # noqa: F811
    ctx, storage, compute, _ = setup
    compute.service_quotas = boto3.client(
        "service-quotas", endpoint_url=standin.endpoint_url, region_name="us-east-1"
    )
    said: list[str] = []
    compute.reporter = said.append
    ctx.repo_path = repo_factory({".dstack/workflows.yaml": WORKFLOWS})
    return ctx, storage, compute, said


@pytest.mark.parametrize(
    ("instance_type", "family"),
    [("p3.2xlarge", "p"), ("g4dn.xlarge", "g"), ("vt1.3xlarge", "g"), ("m5.large", "standard"),
     ("t3.micro", "standard"), ("inf2.xlarge", "inf"), ("trn1.2xlarge", "trn"),
     ("x2idn.16xlarge", "x"), ("dl1.24xlarge", "dl"), ("f1.2xlarge", "f")],
)  # fmt: skip
def test_each_type_counts_against_its_familys_quota(instance_type: str, family: str) -> None:
    assert quotas.family(instance_type) == family


def test_a_run_that_cannot_fit_is_refused_naming_the_quota(
    quota_setup: Any, standin: QuotasStandIn, automation: FakeAutomation, moto_server: MotoServer
) -> None:
    ctx, storage, _, _ = quota_setup
    standin.values = {G_SPOT.code: 2, G_ON_DEMAND.code: 4}
    # the 4 on-demand G vCPUs are taken by an instance already running
    moto_server.client("ec2").run_instances(
        ImageId="ami-12c6146b", InstanceType="g4dn.xlarge", MinCount=1, MaxCount=1
    )
    try:
        with pytest.raises(ComputeError) as caught:
            api.submit(ctx, "gpu")
    finally:
        ec2 = moto_server.client("ec2")
        live = [i["InstanceId"] for r in ec2.describe_instances()["Reservations"]
                for i in r["Instances"] if i["State"]["Name"] != "terminated"]  # fmt: skip
        ec2.terminate_instances(InstanceIds=live)
    line = str(caught.value)
    assert "\n" not in line
    assert line.startswith(
        "workflow 'gpu' does not fit the account's vCPU quotas in us-east-1: g4dn.xlarge spot "
        f"needs 4 vCPUs of quota {G_SPOT.code} (All G and VT Spot Instance Requests), which "
        "allows 2 with 0 in use"
    )
    assert f"services/ec2/quotas/{G_SPOT.code}" in line
    assert f"--quota-code {G_SPOT.code} --desired-value 4 --region us-east-1" in line
    assert automation.log == []  # nothing created
    assert list(state.list_runs(storage, ctx.repo_id)) == []  # nothing written


def test_offers_whose_quota_is_full_are_skipped_with_a_line(
    quota_setup: Any, standin: QuotasStandIn, automation: FakeAutomation
) -> None:
    ctx, storage, _, _ = quota_setup
    standin.values = {G_SPOT.code: 0, G_ON_DEMAND.code: 8}
    automation.refuse = refusing()
    run = api.submit(ctx, "gpu").run
    assert tried(automation) == [("g4dn.xlarge", "on-demand", None)]
    assert output(storage, run.repo_id, run.run_name).strip() == (
        f"[dstack] offers skipped for lack of vCPU quota: {G_SPOT.code} (All G and VT Spot "
        "Instance Requests) has 0 of 0 vCPUs free"
    )


def test_a_policy_that_may_not_read_quotas_is_warned_once(
    quota_setup: Any, automation: FakeAutomation, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, _, compute, said = quota_setup
    denied = start_quotas({}, denied=True)
    monkeypatch.setattr(quotas, "_warned", set())
    try:
        compute.service_quotas = boto3.client(
            "service-quotas", endpoint_url=denied.endpoint_url, region_name="us-east-1"
        )
        automation.refuse = refusing()
        api.submit(ctx, "gpu")
        api.submit(ctx, "gpu")
    finally:
        denied.stop()
    warnings = [line for line in said if line.startswith("warning: the account's vCPU quotas")]
    assert len(warnings) == 1
    assert "servicequotas:GetServiceQuota" in warnings[0]
    assert automation.calls().count("up") == 2  # the runs went on
