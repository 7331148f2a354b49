"""`dstack prune` touches only its own store's leftovers, and stops what outlived its lifetime:
two stores (two key prefixes) share one moto bucket, EC2 and IAM; ``FakeAutomation`` stands in
for Pulumi (no stack is destroyed here: only EC2 and IAM are swept)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from dstack import api, state
from dstack.compute.aws.compute import AwsCompute
from dstack.compute.aws.config import AwsComputeConfig
from dstack.compute.aws.ec2 import Ec2, TaggedInstance
from dstack.compute.aws.prune import prune
from dstack.compute.aws.wheel import Wheel, build_wheel
from dstack.models import JobState, JobStatus
from dstack.storage.s3.storage import S3Storage
from stacks import tags as tagging
from tests.compute.aws.doubles import FakeAutomation
from tests.moto_server import MotoServer
from tests.records import put_job_state

WORKFLOWS = "workflows:\n  - name: train\n    commands: [echo hi]\n"


@pytest.fixture(scope="module")
def wheel() -> Wheel:
    return build_wheel()


class Store:
    """One store of the shared bucket, with its own runs."""

    def __init__(self, moto: MotoServer, bucket: str, prefix: str, automation: Any, wheel: Wheel):
        self.prefix = prefix
        self.storage = S3Storage(
            bucket, endpoint_url=moto.endpoint_url, prefix=prefix, retry_deadline=5
        )
        self.compute = AwsCompute(
            AwsComputeConfig(region="us-east-1"),
            driver_factory=automation.driver,
            ec2=Ec2("us-east-1", endpoint_url=moto.endpoint_url),
            wheel=wheel,
        )
        self.ec2 = moto.client("ec2")
        self.iam = moto.client("iam")

    def submit(self, repo: Any, status: JobStatus) -> Any:
        ctx = api.Context(storage=self.storage, compute=self.compute, repo_path=repo)
        run = api.submit(ctx, "train").run
        spec = state.read_job_spec(self.storage, run.repo_id, run.run_name, 0)
        put_job_state(self.storage, spec, "ada", JobState(status=status, updated_at=1.0))
        state.delete_stack_record(self.storage, run.run_name)  # its stack is gone already
        return run

    def tags(self, run: Any, **extra: str) -> list[dict[str, str]]:
        values = {
            tagging.BUCKET: self.storage.bucket,
            tagging.PREFIX: tagging.store_label(self.prefix),
            tagging.REPO: run.repo_id,
            tagging.RUN: run.run_name,
            **extra,
        }
        return [{"Key": k, "Value": v} for k, v in values.items()]

    def instance(self, run: Any, **extra: str) -> str:
        return str(
            self.ec2.run_instances(
                ImageId="ami-12345678", MinCount=1, MaxCount=1,
                TagSpecifications=[{"ResourceType": "instance", "Tags": self.tags(run, **extra)}],
            )["Instances"][0]["InstanceId"]
        )  # fmt: skip

    def role(self, run: Any) -> str:
        name = f"{run.run_name}-runner-a1b2c3d"
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                 "Principal": {"Service": "ec2.amazonaws.com"}}]}  # fmt: skip
        self.iam.create_role(
            RoleName=name, AssumeRolePolicyDocument=json.dumps(trust), Tags=self.tags(run)
        )
        self.iam.put_role_policy(RoleName=name, PolicyName="store", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
             "Resource": "arn:aws:s3:::b/k"}]}))  # fmt: skip
        profile = f"{run.run_name}-profile-a1b2c3d"
        self.iam.create_instance_profile(InstanceProfileName=profile, Tags=self.tags(run))
        self.iam.add_role_to_instance_profile(InstanceProfileName=profile, RoleName=name)
        return name

    def state_of(self, instance_id: str) -> str:
        found = self.ec2.describe_instances(InstanceIds=[instance_id])
        return str(found["Reservations"][0]["Instances"][0]["State"]["Name"])

    def roles(self) -> set[str]:
        return {r["RoleName"] for r in self.iam.list_roles()["Roles"]}


@pytest.fixture
def stores(
    moto_server: MotoServer, bucket: str, automation: FakeAutomation, wheel: Wheel
) -> tuple[Store, Store]:
    return (
        Store(moto_server, bucket, "team-a", automation, wheel),
        Store(moto_server, bucket, "team-b", automation, wheel),
    )


def test_one_prefix_never_terminates_another_prefix_instances(
    stores: tuple[Store, Store], repo_factory: Any
) -> None:
    a, b = stores
    repo = repo_factory({".dstack/workflows.yaml": WORKFLOWS})
    finished = a.submit(repo, JobStatus.DONE)
    running_in_b = b.submit(repo, JobStatus.RUNNING)  # unknown to store a: "gone" there
    ours, theirs = a.instance(finished), b.instance(running_in_b)
    report = prune(a.storage, a.compute)
    assert {(x.kind, x.target) for x in report.actions if x.kind == "instance"} == {
        ("instance", ours)
    }
    assert a.state_of(ours) in ("shutting-down", "terminated")
    assert b.state_of(theirs) == "running"


def test_an_instance_past_its_lifetime_goes_whatever_its_run_says(
    stores: tuple[Store, Store], repo_factory: Any
) -> None:
    """A rebooted instance (its runner gone, no power-off scheduled) whose run still reads
    running is terminated once it outlived its ``dstack:lifetime``."""
    a, _ = stores
    repo = repo_factory({".dstack/workflows.yaml": WORKFLOWS})
    run = a.submit(repo, JobStatus.RUNNING)
    young = a.instance(run, **{tagging.LIFETIME: str(3600)})
    old = a.instance(run, **{tagging.LIFETIME: "60"})
    assert not [x for x in prune(a.storage, a.compute).actions if x.kind == "instance"]
    report = prune(a.storage, a.compute, now=time.time() + 120)  # two minutes on
    (action,) = [x for x in report.actions if x.kind == "instance"]
    assert action.target == old and "outlived its lifetime" in action.why and action.done
    assert a.state_of(young) == "running"


def test_overdue_is_launch_time_plus_lifetime() -> None:
    instance = TaggedInstance("i-1", "running", "r", "n", launched_at=1000.0, lifetime_seconds=60)
    assert not instance.overdue(1060.0) and instance.overdue(1061.0)
    assert not TaggedInstance("i-2", "running", "r", "n").overdue(1e12)


def test_prune_deletes_the_roles_of_finished_runs_of_its_store_only(
    stores: tuple[Store, Store], repo_factory: Any
) -> None:
    a, b = stores
    repo = repo_factory({".dstack/workflows.yaml": WORKFLOWS})
    finished, busy = a.submit(repo, JobStatus.DONE), a.submit(repo, JobStatus.RUNNING)
    other = b.submit(repo, JobStatus.DONE)
    gone, kept, theirs = a.role(finished), a.role(busy), b.role(other)
    dry = prune(a.storage, a.compute, dry_run=True)
    assert [(x.kind, x.target, x.done) for x in dry.actions if x.kind == "role"] == [
        ("role", gone, False)
    ]
    assert gone in a.roles()
    report = prune(a.storage, a.compute)
    (action,) = [x for x in report.actions if x.kind == "role"]
    assert action.target == gone and action.done, action
    remaining = a.roles()
    assert gone not in remaining and {kept, theirs} <= remaining
    profiles = {
        p["InstanceProfileName"] for p in a.iam.list_instance_profiles()["InstanceProfiles"]
    }
    assert f"{finished.run_name}-profile-a1b2c3d" not in profiles
    assert f"{busy.run_name}-profile-a1b2c3d" in profiles


def test_prune_looks_in_every_region_a_stack_record_names(
    stores: tuple[Store, Store], repo_factory: Any, moto_server: MotoServer
) -> None:
    import boto3

    from dstack.models import StackRecord

    a, _ = stores
    repo = repo_factory({".dstack/workflows.yaml": WORKFLOWS})
    run = a.submit(repo, JobStatus.DONE)
    record = StackRecord(stack=run.run_name, repo_id=run.repo_id, run_name=run.run_name,
                         created_at=1.0, backend_url="s3://x", region="eu-west-1")  # fmt: skip
    state.write_stack_record(a.storage, record)
    far = boto3.client("ec2", endpoint_url=moto_server.endpoint_url, region_name="eu-west-1")
    instance = far.run_instances(
        ImageId="ami-12345678", MinCount=1, MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": a.tags(run)}],
    )["Instances"][0]["InstanceId"]  # fmt: skip
    report = prune(a.storage, a.compute)
    assert instance in {x.target for x in report.actions if x.kind == "instance"}
    found = far.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]
    assert found["State"]["Name"] in ("shutting-down", "terminated")
