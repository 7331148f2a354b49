"""``AwsCompute`` on a moto store and moto EC2, with ``FakeAutomation`` in place of Pulumi."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dstack import api, state
from dstack.compute.aws.compute import AwsCompute
from dstack.compute.aws.config import PORT_BASE, AwsComputeConfig
from dstack.compute.aws.driver import ENGINE_MISSING
from dstack.compute.aws.ec2 import Ec2
from dstack.compute.aws.wheel import Wheel, build_wheel
from dstack.compute.base import Compute
from dstack.errors import ComputeError
from dstack.models import JobSpec, JobState, JobStatus, RunRecord
from dstack.storage.local import LocalStorage
from dstack.storage.s3.storage import S3Storage
from tests.compute.aws.doubles import FakeAutomation
from tests.moto_server import MotoServer
from tests.records import put_job_state

WORKFLOWS = """\
workflows:
  - name: train
    commands: [echo hi]
    resources: {gpu: 1, interruptible: true}
  - name: serve
    commands: [echo hi]
    ports: 2
  - name: huge
    commands: [echo hi]
    resources: {gpu: {name: A100, count: 16}}
  - name: here
    commands: [echo hi]
    resources: {local: true}
"""


@pytest.fixture(scope="module")
def wheel() -> Wheel:
    return build_wheel()


class RecordingLocal(Compute):
    """Stands in for LocalCompute: records what is delegated to it."""

    name = "local"

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def check(self, jobs: list[JobSpec]) -> None:
        self.calls.append(("check", [j.workflow for j in jobs]))

    def start(self, storage: Any, run: RunRecord, jobs: list[JobSpec]) -> None:
        self.calls.extend(("start", job.workflow) for job in jobs)

    def is_alive(self, state: JobState) -> bool | None:
        self.calls.append(("is_alive", state.hostname))
        return None

    def kill(self, state: JobState) -> None:
        self.calls.append(("kill", state.hostname))


@pytest.fixture
def setup(
    moto_server: MotoServer, bucket: str, automation: FakeAutomation, wheel: Wheel,
    repo_factory: Any,
) -> tuple[api.Context, S3Storage, AwsCompute, RecordingLocal]:  # fmt: skip
    # moto builds its EC2 region on the first call, which can outlast Ec2's short read
    # timeout on a loaded machine: made here, with boto3's default timeout
    moto_server.client("ec2").describe_vpcs()
    storage = S3Storage(bucket, endpoint_url=moto_server.endpoint_url, retry_deadline=5)
    local = RecordingLocal()
    compute = AwsCompute(
        AwsComputeConfig(region="us-east-1"),
        driver_factory=automation.driver,
        ec2=Ec2("us-east-1", endpoint_url=moto_server.endpoint_url),
        wheel=wheel,
        local=local,
    )
    repo = repo_factory({".dstack/workflows.yaml": WORKFLOWS})
    return api.Context(storage=storage, compute=compute, repo_path=repo), storage, compute, local


def stored_keys(storage: S3Storage) -> list[str]:
    return [info.key for info in storage.list_objects("")]


def test_submit_records_the_plan_then_the_outputs(setup: Any, automation: FakeAutomation) -> None:
    ctx, storage, compute, _ = setup
    lines: list[str] = []
    compute.reporter = lines.append

    submission = api.submit(ctx, "train")
    run = submission.run

    assert run.compute == "aws"
    assert automation.calls() == ["open", "preview", "up"]
    plan, up = state.read_infra_records(storage, run.repo_id, run.run_name)
    assert plan.backend_url.startswith(f"s3://{storage.bucket}/pulumi?region=us-east-1")
    instance = next(r for r in plan.resources if r["type"] == "aws:ec2/instance:Instance")
    assert instance["inputs"]["instanceType"] == "g4dn.xlarge"
    assert instance["inputs"]["instanceMarketOptions"]["marketType"] == "spot"
    assert up.outputs["instance_ids"] == {"0": "i-0123456789abcdef0"}
    record = state.read_stack_record(storage, run.run_name)
    assert record is not None and record.repo_id == run.repo_id
    assert any("Stack" in line and "plan" in line for line in lines)
    assert automation.workspaces[-1].region == "us-east-1"


def test_a_request_no_type_meets_fails_at_submit_and_writes_nothing(setup: Any) -> None:
    ctx, storage, _, _ = setup
    with pytest.raises(ComputeError, match=r"workflow 'huge': .*closest are p4d\.24xlarge"):
        api.submit(ctx, "huge")
    assert stored_keys(storage) == []


def test_without_the_engine_submit_stops_with_one_line_and_writes_nothing(
    setup: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from dstack.compute.aws import engine as engine_module

    ctx, storage, _, _ = setup
    monkeypatch.setattr(engine_module, "engine_path", lambda: None)  # this machine has none anyway
    ctx.compute = AwsCompute(AwsComputeConfig(region="us-east-1"))  # the real driver
    with pytest.raises(ComputeError) as caught:
        api.submit(ctx, "train")
    assert str(caught.value) == ENGINE_MISSING
    assert stored_keys(storage) == []


def test_ports_open_fixed_numbers_to_the_caller(setup: Any) -> None:
    ctx, storage, _, _ = setup
    run = api.submit(ctx, "serve").run
    plan = state.read_infra_records(storage, run.repo_id, run.run_name)[0]
    group = next(r for r in plan.resources if r["type"].endswith(":SecurityGroup"))
    ingress = group["inputs"]["ingress"]
    assert [rule["fromPort"] for rule in ingress] == [PORT_BASE, PORT_BASE + 1]
    assert {tuple(rule["cidrBlocks"]) for rule in ingress} == {("203.0.113.7/32",)}
    instance = next(r for r in plan.resources if r["type"].endswith(":Instance"))
    assert f"DSTACK_RUNNER_PORTS={PORT_BASE},{PORT_BASE + 1}" in instance["inputs"]["userData"]


def test_local_jobs_run_on_this_machine(setup: Any, automation: FakeAutomation) -> None:
    ctx, _, _, local = setup
    api.submit(ctx, "here")
    assert local.calls == [("check", ["here"]), ("start", "here")]
    assert automation.calls() == []


def test_a_local_store_cannot_serve_cloud_runs(
    setup: Any, tmp_path: Path, automation: FakeAutomation
) -> None:
    ctx, _, _, _ = setup
    ctx.storage = LocalStorage(tmp_path / "store")
    with pytest.raises(ComputeError, match="needs the S3 state store"):
        api.submit(ctx, "train")
    assert automation.calls() == []


def test_ctrl_c_while_provisioning_destroys_and_fails_the_job(
    setup: Any, automation: FakeAutomation
) -> None:
    ctx, storage, _, _ = setup
    automation.fail("up", KeyboardInterrupt())
    with pytest.raises(ComputeError) as caught:
        api.submit(ctx, "train")
    assert caught.value.exit_code == 130
    assert automation.calls() == ["open", "preview", "up", "destroy", "remove"]
    (summary,) = state.list_runs(storage, ctx.repo_id)
    assert summary.status is JobStatus.FAILED
    records = state.read_infra_records(storage, ctx.repo_id, summary.run_name)
    assert [(r.kind, r.ok) for r in records] == [("plan", True), ("up", False), ("destroy", True)]


def test_a_failed_provision_sweeps_instances_by_tag(
    setup: Any, automation: FakeAutomation, moto_server: MotoServer
) -> None:
    """An interrupted create can launch an instance the engine never recorded: after any failed
    provision, instances tagged with the run are terminated."""
    ctx, storage, _, _ = setup
    ec2 = moto_server.client("ec2")
    launched: list[str] = []

    def launch_then_fail(stack: str, program: Any) -> None:
        launched.append(ec2.run_instances(
            ImageId="ami-12345678", MinCount=1, MaxCount=1,
            TagSpecifications=[{"ResourceType": "instance", "Tags": [
                {"Key": "dstack:bucket", "Value": storage.bucket},
                {"Key": "dstack:prefix", "Value": "/"},
                {"Key": "dstack:run", "Value": stack}]}],
        )["Instances"][0]["InstanceId"])  # fmt: skip
        raise KeyboardInterrupt

    automation.on_up = launch_then_fail
    with pytest.raises(ComputeError):
        api.submit(ctx, "train")
    (instance,) = ec2.describe_instances(InstanceIds=launched)["Reservations"][0]["Instances"]
    assert instance["State"]["Name"] in ("shutting-down", "terminated")


def test_release_waits_for_the_run_to_finish(setup: Any, automation: FakeAutomation) -> None:
    ctx, storage, compute, _ = setup
    run = api.submit(ctx, "train").run
    assert compute.release(storage, run) is False  # still submitted
    spec = state.read_job_spec(storage, run.repo_id, run.run_name, 0)
    done = JobState(status=JobStatus.DONE, exit_code=0, updated_at=1.0)
    put_job_state(storage, spec, run.owner.display, done)
    assert compute.release(storage, run) is True
    assert automation.calls(run.run_name)[-3:] == ["open", "destroy", "remove"]
    assert state.read_stack_record(storage, run.run_name) is None


def test_failed_destroy_keeps_the_record_and_sweeps_instances(
    setup: Any, automation: FakeAutomation, moto_server: MotoServer
) -> None:
    from tests.compute.aws.doubles import EngineError

    ctx, storage, compute, _ = setup
    run = api.submit(ctx, "train").run
    ec2 = moto_server.client("ec2")
    leaked = ec2.run_instances(
        ImageId="ami-12345678", MinCount=1, MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": "dstack:bucket", "Value": storage.bucket},
            {"Key": "dstack:prefix", "Value": "/"},
            {"Key": "dstack:run", "Value": run.run_name}]}],
    )["Instances"][0]["InstanceId"]  # fmt: skip
    spec = state.read_job_spec(storage, run.repo_id, run.run_name, 0)
    put_job_state(storage, spec, "ada", JobState(status=JobStatus.FAILED, updated_at=1.0))
    automation.fail("destroy", EngineError("x"), EngineError("x"))
    with pytest.raises(ComputeError, match=r"could not be destroyed.*dstack prune"):
        compute.release(storage, run)
    assert state.read_stack_record(storage, run.run_name) is not None
    states = ec2.describe_instances(InstanceIds=[leaked])["Reservations"][0]["Instances"]
    assert states[0]["State"]["Name"] in ("shutting-down", "terminated")


def test_is_alive_and_kill_ask_ec2(setup: Any, moto_server: MotoServer) -> None:
    _, _, compute, local = setup
    ec2 = moto_server.client("ec2")
    instance = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1)["Instances"][0]
    running = JobState(status=JobStatus.RUNNING, instance_id=instance["InstanceId"])
    assert compute.is_alive(running) is True
    compute.kill(running)
    fresh = AwsCompute(
        AwsComputeConfig(region="us-east-1"),
        ec2=Ec2("us-east-1", endpoint_url=moto_server.endpoint_url),
    )
    assert fresh.is_alive(running) is False  # terminated (a fresh cache)
    assert fresh.is_alive(JobState(instance_id="i-0000000000000dead")) is None  # unknown
    assert compute.is_alive(JobState(hostname="laptop")) is None
    assert ("is_alive", "laptop") in local.calls


def test_is_alive_is_unknown_when_ec2_cannot_answer() -> None:
    compute = AwsCompute(
        AwsComputeConfig(region="us-east-1"),
        ec2=Ec2("us-east-1", endpoint_url="http://127.0.0.1:9"),  # nothing listens
    )
    assert compute.is_alive(JobState(instance_id="i-0123456789abcdef0")) is None


def test_a_monthly_budget_counts_the_users_earlier_runs(setup: Any) -> None:
    """Each submit records its quote on the job specs; the next run of the same user this month
    is refused once its worst case exceeds what is left, with the arithmetic, writing nothing."""
    from dstack.store_config import BudgetConfig

    ctx, storage, compute, _ = setup
    config = compute.config.model_copy(update={"budget": BudgetConfig(per_user_month=50)})
    ctx.compute = AwsCompute(
        config, driver_factory=compute._driver_factory, ec2=compute._ec2, wheel=compute._wheel
    )
    first = api.submit(ctx, "train")  # g4dn.xlarge spot, offline: $0.526/h × 72h = $37.87
    spec = state.read_job_spec(storage, first.run.repo_id, first.run.run_name, 0)
    assert (spec.price_per_hour, spec.max_duration) == (0.526, 72 * 3600)
    before = stored_keys(storage)
    with pytest.raises(ComputeError) as caught:
        api.submit(ctx, "train")
    assert str(caught.value) == (
        "this run may cost up to $0.526/h × 1 node × 72h = $37.87, more than the $12.13 left of "
        "your monthly budget ($50.00 − $37.87 counted for your earlier runs this month; "
        "compute.budget.per_user_month): lower max_duration or max_price, or wait for next month"
    )
    assert stored_keys(storage) == before


def test_ports_without_a_findable_caller_address_are_refused_before_anything_is_written(
    setup: Any, monkeypatch: pytest.MonkeyPatch, automation: FakeAutomation
) -> None:
    """checkip.amazonaws.com unreachable (a lookup returning None stands in for it) and no
    address named: one error saying how to name it, nothing in the store, no stack."""
    from dstack.compute.aws import preflight

    ctx, storage, _, _ = setup
    monkeypatch.delenv("DSTACK_CALLER_IP")
    monkeypatch.setattr(preflight, "lookup_public_ip", lambda: None)
    with pytest.raises(ComputeError) as caught:
        api.submit(ctx, "serve")
    assert "DSTACK_CALLER_IP" in str(caught.value) and "\n" not in str(caught.value)
    assert stored_keys(storage) == []
    assert automation.calls() == []


def test_the_looked_up_caller_address_is_the_only_one_let_in(
    setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dstack.compute.aws import preflight

    ctx, storage, _, _ = setup
    lookups: list[str] = []
    monkeypatch.delenv("DSTACK_CALLER_IP")
    monkeypatch.setattr(
        preflight, "lookup_public_ip", lambda: lookups.append("x") or "198.51.100.9"
    )
    run = api.submit(ctx, "serve").run
    plan = state.read_infra_records(storage, run.repo_id, run.run_name)[0]
    group = next(r for r in plan.resources if r["type"].endswith(":SecurityGroup"))
    assert {tuple(rule["cidrBlocks"]) for rule in group["inputs"]["ingress"]} == {
        ("198.51.100.9/32",)
    }
    assert lookups == ["x"]  # once, at submit
