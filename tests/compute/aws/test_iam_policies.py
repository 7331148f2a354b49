"""The IAM policy a dstack user needs (``iam/dstack-user-policy.json``) and the boundary of the
runner roles (``iam/dstack-runner-boundary.json``): linted by parliament, and evaluated (with
the ``iam_eval`` stand-in for IAM) for what dstack does and what it must not be able to do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.compute.aws import iam_eval

IAM = Path(__file__).resolve().parents[3] / "iam"
ACCOUNT = "111122223333"
BUCKET = "dstack-state-bucket"
BOUNDARY = f"arn:aws:iam::{ACCOUNT}:policy/dstack-runner-boundary"
TAGGED = {"aws:RequestTag/dstack:bucket": BUCKET, "aws:ResourceTag/dstack:bucket": BUCKET}
#: parliament checks one statement at a time; IAM authorizes each resource of a RunInstances
#: (or CreateSecurityGroup) against every statement, so the launch is split on purpose: the
#: instance and its volume only with dstack's tag, the image and subnet without
SPLIT_ON_PURPOSE = {"ec2:RunInstances", "ec2:CreateSecurityGroup"}


def _policy(name: str) -> dict[str, Any]:
    return json.loads((IAM / name).read_text())


def _ec2(kind: str) -> str:
    return f"arn:aws:ec2:eu-west-1:{ACCOUNT}:{kind}/x-1"


@pytest.mark.parametrize("name", ["dstack-user-policy.json", "dstack-runner-boundary.json"])
def test_parliament_finds_nothing_but_the_split_launch(name: str) -> None:
    parliament = pytest.importorskip("parliament")
    from parliament import analyze_policy_string

    assert parliament
    findings = analyze_policy_string((IAM / name).read_text()).findings
    unexpected = [
        (f.issue, f.detail)
        for f in findings
        if not (
            f.issue == "RESOURCE_MISMATCH" and {d["action"] for d in f.detail} <= SPLIT_ON_PURPOSE
        )
    ]
    assert unexpected == []


def test_a_user_launches_only_tagged_instances() -> None:
    policy = _policy("dstack-user-policy.json")
    for kind in ("instance", "volume", "security-group", "subnet", "network-interface"):
        assert iam_eval.allowed(policy, "ec2:RunInstances", _ec2(kind), TAGGED), kind
    image = "arn:aws:ec2:eu-west-1::image/ami-1"
    assert iam_eval.allowed(policy, "ec2:RunInstances", image, {})
    assert not iam_eval.allowed(policy, "ec2:RunInstances", _ec2("instance"), {})
    assert iam_eval.allowed(policy, "ec2:CreateSecurityGroup", _ec2("security-group"), TAGGED)
    assert iam_eval.allowed(policy, "ec2:CreateSecurityGroup", _ec2("vpc"), {})


def test_a_user_terminates_only_dstack_instances() -> None:
    policy = _policy("dstack-user-policy.json")
    ours = {"aws:ResourceTag/dstack:bucket": BUCKET}
    theirs = {"aws:ResourceTag/dstack:bucket": "someone-else"}
    assert iam_eval.allowed(policy, "ec2:TerminateInstances", _ec2("instance"), ours)
    assert not iam_eval.allowed(policy, "ec2:TerminateInstances", _ec2("instance"), theirs)
    assert not iam_eval.allowed(policy, "ec2:TerminateInstances", _ec2("instance"), {})


def test_a_user_creates_roles_only_under_the_path_and_the_boundary() -> None:
    policy = _policy("dstack-user-policy.json")
    role = f"arn:aws:iam::{ACCOUNT}:role/dstack/wise-owl-1-runner-a1b2c3d"
    fenced = {"iam:PermissionsBoundary": BOUNDARY}
    for action in ("iam:CreateRole", "iam:PutRolePolicy"):
        assert iam_eval.allowed(policy, action, role, fenced), action
        assert not iam_eval.allowed(policy, action, role, {}), action
        elsewhere = f"arn:aws:iam::{ACCOUNT}:role/admin"
        assert not iam_eval.allowed(policy, action, elsewhere, fenced), action
    other_boundary = {"iam:PermissionsBoundary": f"arn:aws:iam::{ACCOUNT}:policy/admin"}
    assert not iam_eval.allowed(policy, "iam:CreateRole", role, other_boundary)
    assert not iam_eval.allowed(policy, "iam:DeleteRolePermissionsBoundary", role, fenced)
    to_ec2 = {"iam:PassedToService": "ec2.amazonaws.com"}
    assert iam_eval.allowed(policy, "iam:PassRole", role, to_ec2)
    assert not iam_eval.allowed(
        policy, "iam:PassRole", role, {"iam:PassedToService": "lambda.amazonaws.com"}
    )
    assert not iam_eval.allowed(
        policy, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/admin", to_ec2
    )


def test_the_boundary_caps_a_runner_role_at_the_bucket() -> None:
    boundary = _policy("dstack-runner-boundary.json")
    assert iam_eval.allowed(boundary, "s3:GetObject", f"arn:aws:s3:::{BUCKET}/repos/x")
    assert not iam_eval.allowed(boundary, "s3:GetObject", "arn:aws:s3:::another-bucket/x")
    assert not iam_eval.allowed(boundary, "iam:CreateRole", f"arn:aws:iam::{ACCOUNT}:role/x")
    assert not iam_eval.allowed(boundary, "ec2:RunInstances", _ec2("instance"), TAGGED)


def test_the_user_policy_covers_every_resource_the_run_stack_declares() -> None:
    """Each AWS resource type of the run stack, with the create call its provider makes."""
    from stacks.program import run_program
    from tests.stacks.harness import deploy
    from tests.stacks.test_run_stack import make_args

    creates = {
        "aws:ec2/securityGroup:SecurityGroup": ("ec2:CreateSecurityGroup", _ec2("security-group")),
        "aws:ec2/instance:Instance": ("ec2:RunInstances", _ec2("instance")),
        "aws:iam/role:Role": ("iam:CreateRole", f"arn:aws:iam::{ACCOUNT}:role/dstack/r"),
        "aws:iam/rolePolicy:RolePolicy": ("iam:PutRolePolicy", f"arn:aws:iam::{ACCOUNT}:role/dstack/r"),
        "aws:iam/instanceProfile:InstanceProfile": (
            "iam:CreateInstanceProfile", f"arn:aws:iam::{ACCOUNT}:instance-profile/dstack/p"),
    }  # fmt: skip
    policy = _policy("dstack-user-policy.json")
    args = make_args(role_path="/dstack/", permissions_boundary=BOUNDARY)
    declared = {d.type for d in deploy(lambda: run_program(args)).declared if d.custom}
    assert declared <= set(creates), declared - set(creates)
    context = {**TAGGED, "iam:PermissionsBoundary": BOUNDARY}
    for type_ in declared:
        action, resource = creates[type_]
        assert iam_eval.allowed(policy, action, resource, context), type_
