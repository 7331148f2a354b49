"""`dstack prune` against a moto store holding stale stack records and Pulumi state, and moto
EC2 holding tagged instances and security groups; ``FakeAutomation`` stands in for Pulumi."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dstack import api, state
from dstack.compute.aws import engine as engine_module
from dstack.compute.aws.compute import AwsCompute
from dstack.compute.aws.config import AwsComputeConfig
from dstack.compute.aws.ec2 import Ec2
from dstack.compute.aws.prune import prune
from dstack.compute.aws.wheel import Wheel, build_wheel
from dstack.models import JobState, JobStatus
from dstack.storage.s3.storage import S3Storage
from tests.compute.aws.doubles import FakeAutomation
from tests.moto_server import MotoServer
from tests.records import put_job_state

WORKFLOWS = "workflows:\n  - name: train\n    commands: [echo hi]\n"


@pytest.fixture(scope="module")
def wheel() -> Wheel:
    return build_wheel()


class Scene:
    """A store where: ``done`` finished (its stack is stale), ``busy`` is running (keep), a
    stack ``old-cat-9`` whose run was deleted is known only from the Pulumi state, and the
    bootstrap stack exists; EC2 holds an instance of each run and a group of the deleted run."""

    def __init__(
        self, moto: MotoServer, bucket: str, automation: FakeAutomation, wheel: Wheel, repo: Any
    ) -> None:
        self.storage = S3Storage(bucket, endpoint_url=moto.endpoint_url, retry_deadline=5)
        self.ec2 = moto.client("ec2")
        self.automation = automation
        self.compute = AwsCompute(
            AwsComputeConfig(region="us-east-1"),
            driver_factory=automation.driver,
            ec2=Ec2("us-east-1", endpoint_url=moto.endpoint_url),
            wheel=wheel,
        )
        ctx = api.Context(storage=self.storage, compute=self.compute, repo_path=repo)
        self.done = api.submit(ctx, "train").run
        self.busy = api.submit(ctx, "train").run
        self._set(self.done, JobStatus.DONE)
        self._set(self.busy, JobStatus.RUNNING)
        self.repo_id = self.done.repo_id
        prefix = state.pulumi_stacks_prefix("dstack")
        self.storage.put(prefix + "old-cat-9.json", self._checkpoint("old-cat-9"))
        self.storage.put(prefix + "old-cat-9.json.bak", b"{}")
        self.storage.put(prefix + "bootstrap.json", self._checkpoint(None))
        self.instances = {
            name: self._instance(name) for name in (self.done.run_name, self.busy.run_name)
        }
        self.group = self.ec2.create_security_group(
            GroupName=f"old-cat-9-sg-{bucket}", Description="left behind",
            TagSpecifications=[{"ResourceType": "security-group", "Tags": self._tags("old-cat-9")}],
        )["GroupId"]  # fmt: skip
        automation.log.clear()

    def _set(self, run: Any, status: JobStatus) -> None:
        spec = state.read_job_spec(self.storage, run.repo_id, run.run_name, 0)
        put_job_state(self.storage, spec, "ada", JobState(status=status, updated_at=1.0))

    def _tags(self, run_name: str) -> list[dict[str, str]]:
        return [
            {"Key": "dstack:bucket", "Value": self.storage.bucket},
            {"Key": "dstack:prefix", "Value": "/"},
            {"Key": "dstack:repo", "Value": self.repo_id},
            {"Key": "dstack:run", "Value": run_name},
        ]

    def _instance(self, run_name: str) -> str:
        return self.ec2.run_instances(
            ImageId="ami-12345678", MinCount=1, MaxCount=1,
            TagSpecifications=[{"ResourceType": "instance", "Tags": self._tags(run_name)}],
        )["Instances"][0]["InstanceId"]  # fmt: skip

    def _checkpoint(self, run_name: str | None) -> bytes:
        tags = {t["Key"]: t["Value"] for t in self._tags(run_name)} if run_name else {}
        resources = [{"urn": "urn:x", "type": "aws:ec2/securityGroup:SecurityGroup",
                      "inputs": {"tags": tags}, "outputs": {"tags": tags}}]  # fmt: skip
        return json.dumps(
            {"version": 3, "checkpoint": {"latest": {"resources": resources}}}
        ).encode()

    def instance_state(self, run_name: str) -> str:
        found = self.ec2.describe_instances(InstanceIds=[self.instances[run_name]])
        return str(found["Reservations"][0]["Instances"][0]["State"]["Name"])

    def group_exists(self) -> bool:
        return bool(self.ec2.describe_security_groups(
            Filters=[{"Name": "group-id", "Values": [self.group]}])["SecurityGroups"])  # fmt: skip


@pytest.fixture
def scene(
    moto_server: MotoServer,
    bucket: str,
    automation: FakeAutomation,
    wheel: Wheel,
    repo_factory: Any,
) -> Scene:
    return Scene(
        moto_server, bucket, automation, wheel, repo_factory({".dstack/workflows.yaml": WORKFLOWS})
    )


def summary(report: Any) -> set[tuple[str, str, str, bool]]:
    return {(a.kind, a.target, a.why, a.done) for a in report.actions}


def test_dry_run_says_what_it_would_do_and_does_nothing(scene: Scene) -> None:
    report = prune(scene.storage, scene.compute, dry_run=True)
    done, busy = scene.done.run_name, scene.busy.run_name
    assert summary(report) == {
        ("stack", done, "run is done", False),
        ("stack", "old-cat-9", "run is gone", False),
        ("instance", scene.instances[done], "run is done", False),
    }
    assert (f"stack {busy}", f"run {busy} is still going") in report.kept
    assert scene.automation.log == []
    assert scene.instance_state(done) == "running" and scene.group_exists()


def test_prune_destroys_stale_stacks_and_resources_and_keeps_live_ones(scene: Scene) -> None:
    report = prune(scene.storage, scene.compute)
    done, busy = scene.done.run_name, scene.busy.run_name

    assert summary(report) == {
        ("stack", done, "run is done", True),
        ("stack", "old-cat-9", "run is gone", True),
        ("instance", scene.instances[done], "run is done", True),
        ("security group", scene.group, "run is gone", True),
    }
    destroyed = sorted({name for op, name, _ in scene.automation.log if op == "destroy"})
    assert destroyed == sorted([done, "old-cat-9"])  # never the bootstrap, never the busy run
    assert scene.instance_state(done) in ("shutting-down", "terminated")
    assert scene.instance_state(busy) == "running"
    assert not scene.group_exists()
    assert state.read_stack_record(scene.storage, done) is None
    assert state.read_stack_record(scene.storage, busy) is not None
    # the destroy is recorded on the finished run; the deleted run gets no folder back
    kinds = [r.kind for r in state.read_infra_records(scene.storage, scene.repo_id, done)]
    assert kinds[-1] == "destroy"
    assert state.read_infra_records(scene.storage, scene.repo_id, "old-cat-9") == []
    # a second prune finds only what Pulumi's state still lists (the fake keeps its files)
    again = prune(scene.storage, scene.compute, dry_run=True)
    assert {a.target for a in again.actions} <= {"old-cat-9"}


def test_without_the_engine_instances_still_go_and_stacks_are_reported(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "engine_path", lambda: None)
    compute = AwsCompute(AwsComputeConfig(region="us-east-1"), ec2=scene.compute.ec2())
    report = prune(scene.storage, compute)
    stacks = [a for a in report.actions if a.kind == "stack"]
    assert stacks and all(
        not a.done and "Pulumi engine is not installed" in (a.error or "") for a in stacks
    )
    done = scene.done.run_name
    assert scene.instance_state(done) in ("shutting-down", "terminated")  # the cost stops
    assert state.read_stack_record(scene.storage, done) is not None  # left for a later prune
