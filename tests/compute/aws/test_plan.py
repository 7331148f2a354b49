"""`dstack run --plan`: the run stack rendered offline, compared with golden files, and the
promise that it needs neither credentials nor the engine."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dstack import api
from dstack.cli.plan_render import plan_text
from dstack.compute.aws.compute import AwsCompute
from dstack.compute.aws.config import AwsComputeConfig
from dstack.compute.aws.plan import SECRET, redact, render
from dstack.services.plan import PLAN_RUN_NAME, plan_run
from dstack.storage.s3.storage import S3Storage
from tests.golden import assert_golden

WORKFLOWS = """\
workflows:
  - name: train
    provider: bash
    python: "3.11"
    commands:
      - python train.py
    artifacts:
      - path: checkpoint
    ports: 1
    resources:
      gpu: {name: A10G, count: 1}
      interruptible: true
"""
WHEEL_KEY = "dist/0123456789abcdef0123/dstack-0.1.0-py3-none-any.whl"
SUBMITTED_AT = 1767225600.0  # 2026-01-01T00:00:00Z


@pytest.fixture(autouse=True)
def _pinned_boto3(monkeypatch: pytest.MonkeyPatch) -> None:
    """The installed metadata's boto3 floor, pins and Python would make the golden files
    depend on the venv."""
    import dstack.compute.aws.runargs as module

    monkeypatch.setattr(module, "boto3_requirement", lambda: "boto3>=1.35.16")
    monkeypatch.setattr(module, "pinned_requirements", lambda: ["boto3==1.35.16", "pyyaml==6.0.2"])
    # the runner's Python is the client's X.Y, for which its pins resolve (checked for real by
    # test_userdata_checks and, on an older instance Python, by the box tier: tests/cloud)
    monkeypatch.setattr(module, "python_version", lambda: "3.11")


def planned(repo_factory: Any, **config: Any) -> Any:
    repo = repo_factory({".dstack/workflows.yaml": WORKFLOWS, "train.py": "print('hi')\n"})
    storage = S3Storage("acme-dstack-state", region="eu-west-1")  # never contacted
    compute = AwsCompute(AwsComputeConfig(region="eu-west-1", **config))
    ctx = api.Context(storage=storage, compute=compute, repo_path=repo)
    return plan_run(ctx, "train", wheel_key=WHEEL_KEY, submitted_at=SUBMITTED_AT)


def test_plan_text_golden(repo_factory: Any) -> None:
    assert_golden("plan_train.txt", plan_text(planned(repo_factory)))


def test_plan_json_golden(repo_factory: Any) -> None:
    text = json.dumps(planned(repo_factory).as_dict(), indent=2, sort_keys=True) + "\n"
    assert_golden("plan_train.json", text)


def test_plan_is_the_same_for_the_same_inputs(repo_factory: Any) -> None:
    assert planned(repo_factory).as_dict() == planned(repo_factory).as_dict()


def test_plan_names_every_resource_and_what_stands_in(repo_factory: Any) -> None:
    result = planned(repo_factory)
    kinds = sorted(r.type for r in result.cloud_resources)
    assert kinds == [
        "aws:ec2/instance:Instance",
        "aws:ec2/securityGroup:SecurityGroup",
        "aws:iam/instanceProfile:InstanceProfile",
        "aws:iam/role:Role",
        "aws:iam/rolePolicy:RolePolicy",
    ]
    assert result.jobs[0].instance_type == "g5.xlarge" and result.jobs[0].spot
    assert any(PLAN_RUN_NAME in note for note in result.notes)


def test_plan_with_a_shared_profile_has_no_role(repo_factory: Any) -> None:
    result = planned(repo_factory, instance_profile="dstack-runner-abc")
    assert not [r for r in result.cloud_resources if r.type.startswith("aws:iam/")]


def test_secrets_are_redacted_in_a_rendering() -> None:
    import pulumi
    import pulumi_aws as aws

    def program() -> None:
        aws.ssm.Parameter("token", type="SecureString", value=pulumi.Output.secret("hunter2"))

    (resource,) = render(program, project="dstack", stack="t").cloud_resources
    assert resource.inputs["value"] == SECRET
    assert "hunter2" not in json.dumps(resource.as_dict())
    assert redact({"a": [1.0, 2.5]}) == {"a": [1, 2.5]}


def test_redaction_follows_the_sdks_wire_format(monkeypatch: pytest.MonkeyPatch) -> None:
    """The secret marker is the SDK's to change: a rendering still hides the secret when the
    SDK marks secrets otherwise (dstack keeps no copy of the marker)."""
    import pulumi
    import pulumi_aws as aws
    from pulumi.runtime import rpc

    monkeypatch.setattr(rpc, "_special_secret_sig", "0" * 32)

    def program() -> None:
        aws.ssm.Parameter("token", type="SecureString", value=pulumi.Output.secret("hunter2"))

    (resource,) = render(program, project="dstack", stack="t").cloud_resources
    assert resource.inputs["value"] == SECRET


@pytest.mark.parametrize("variable", ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"])
def test_plan_needs_no_credentials(
    repo_factory: Any, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    assert planned(repo_factory).resources


def test_plan_puts_the_group_in_the_subnet_vpc_and_grants_the_bucket_key(
    repo_factory: Any,
) -> None:
    key = "arn:aws:kms:eu-west-1:111122223333:key/abcd"
    result = planned(repo_factory, subnet_id="subnet-0abc", bootstrap={"bucket_kms_key_arn": key})
    by_type = {r.type: r for r in result.cloud_resources}
    group = by_type["aws:ec2/securityGroup:SecurityGroup"]
    assert group.inputs["vpcId"] == "<resolved at deploy: the VPC of subnet-0abc>"
    policy = json.loads(by_type["aws:iam/rolePolicy:RolePolicy"].inputs["policy"])
    assert {"Sid": "BucketKeyDataKeys", "Effect": "Allow", "Resource": key,
            "Action": ["kms:GenerateDataKey", "kms:Decrypt"]} in policy["Statement"]  # fmt: skip
