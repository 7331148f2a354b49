"""The box tier's call recorder (``tests.cloud.calls``) on a real moto server: a call moto lets
through under the loosened policy, but the real policy denies for its resource or condition, is
reported; the same call made as the policy asks is not."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.cloud.calls import Call, Recorder, violations
from tests.cloud.standins import as_moto_enforces
from tests.moto_server import MotoServer

ROOT = Path(__file__).resolve().parents[3]
ACCOUNT = "123456789012"
BUCKET = "dstack-state-bucket"
BOUNDARY = f"arn:aws:iam::{ACCOUNT}:policy/dstack-runner-boundary"
TAGS = [{"Key": "dstack:bucket", "Value": BUCKET}]


def _real() -> dict[str, Any]:
    text = (ROOT / "iam/dstack-user-policy.json").read_text().replace("111122223333", ACCOUNT)
    return json.loads(text)  # type: ignore[no-any-return]


def _loosened() -> dict[str, Any]:
    policy = as_moto_enforces(_real())
    for statement in policy["Statement"]:
        resources = statement["Resource"]
        listed = resources if isinstance(resources, list) else [resources]
        if not all(r.startswith("arn:aws:s3:::") for r in listed):
            statement["Resource"] = "*"
    return policy


@pytest.fixture
def enforced(moto_server: MotoServer) -> Iterator[tuple[Recorder, dict[str, Any]]]:
    """The recorder installed, and a user holding the loosened policy, under enforcement."""
    import moto.settings

    iam = moto_server.client("iam")
    name = f"box-calls-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(_loosened()))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    recorder = Recorder(ACCOUNT, "us-east-1", _policy_of)
    recorder.install()
    saved = moto.settings.INITIAL_NO_AUTH_ACTION_COUNT
    moto.settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    try:
        yield (
            recorder,
            {
                "aws_access_key_id": key["AccessKeyId"],
                "aws_secret_access_key": key["SecretAccessKey"],
                "aws_session_token": None,
            },
        )
    finally:
        moto.settings.INITIAL_NO_AUTH_ACTION_COUNT = saved
        recorder.uninstall()


def _policy_of(call: Call) -> list[dict[str, Any]] | None:
    return [_real()] if ":user/box-calls-" in call.caller else None


def test_a_call_the_real_policy_denies_is_reported(
    moto_server: MotoServer, enforced: tuple[Recorder, dict[str, Any]]
) -> None:
    recorder, keys = enforced
    iam = moto_server.client("iam", **keys)
    ec2 = moto_server.client("ec2", **keys)
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {
        "Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]})  # fmt: skip
    # moto alone allows each (it checks actions only); the real policy denies each, and so
    # the box refuses them as AWS would
    with pytest.raises(ClientError, match="AccessDenied"):
        iam.create_role(RoleName="no-boundary", Path="/dstack/", AssumeRolePolicyDocument=trust)
    with pytest.raises(ClientError, match=r"UnauthorizedOperation|AccessDenied"):
        ec2.create_security_group(GroupName="untagged", Description="d")
    found = violations(recorder.calls, _policy_of)
    assert any("iam:CreateRole" in line and "PermissionsBoundary" not in line for line in found)
    assert any("ec2:CreateSecurityGroup on arn:aws:ec2" in line for line in found), found
    assert all(not c.permitted for c in recorder.calls), recorder.calls


def test_the_same_calls_made_as_the_policy_asks_pass(
    moto_server: MotoServer, enforced: tuple[Recorder, dict[str, Any]]
) -> None:
    recorder, keys = enforced
    iam = moto_server.client("iam", **keys)
    ec2 = moto_server.client("ec2", **keys)
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {
        "Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]})  # fmt: skip
    iam.create_role(RoleName="fenced", Path="/dstack/", AssumeRolePolicyDocument=trust,
                    PermissionsBoundary=BOUNDARY)  # fmt: skip
    iam.delete_role(RoleName="fenced")
    group = ec2.create_security_group(
        GroupName="tagged", Description="d",
        TagSpecifications=[{"ResourceType": "security-group", "Tags": TAGS}],
    )["GroupId"]  # fmt: skip
    ec2.describe_security_groups(GroupIds=[group])
    ec2.delete_security_group(GroupId=group)
    assert len(recorder.calls) >= 5
    assert violations(recorder.calls, _policy_of) == []
