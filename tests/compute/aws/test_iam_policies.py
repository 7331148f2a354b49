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


# What terraform-provider-aws calls for each resource type the run stack declares, on create,
# read (after create, and at every refresh), update and delete, with the request's resource
# and condition keys. Read from the provider's source: internal/service/ec2/ec2_instance.go
# (resourceInstanceCreate/Read/Update/Delete, buildInstanceOpts, readBlockDevices,
# flattenInstanceLaunchTemplate; the spot request read of resourceInstanceRead is in its
# newer releases), internal/service/ec2/vpc_security_group.go, internal/service/iam/role.go,
# role_policy.go and instance_profile.go, and the data sources ssm/parameter_data_source.go and
# ec2/vpc_subnet_data_source.go. Describe* calls take no resource-level permission ("*").
_ROLE = f"arn:aws:iam::{ACCOUNT}:role/dstack/wise-owl-1-runner-a1b2c3d"
_PROFILE = f"arn:aws:iam::{ACCOUNT}:instance-profile/dstack/wise-owl-1-runner-a1b2c3d"
_OURS = {"aws:ResourceTag/dstack:bucket": BUCKET}
_FENCED = {"iam:PermissionsBoundary": BOUNDARY}
_ANY = "*"
PROVIDER_CALLS: dict[str, dict[str, list[tuple[str, str, dict[str, str]]]]] = {
    "aws:ec2/instance:Instance": {
        "create": [
            ("ec2:DescribeImages", _ANY, {}),  # buildInstanceOpts: the AMI's root device
            ("ec2:RunInstances", _ec2("instance"), TAGGED),
            ("ec2:RunInstances", _ec2("volume"), TAGGED),
            ("ec2:RunInstances", "arn:aws:ec2:eu-west-1::image/ami-1", {}),
            ("ec2:RunInstances", _ec2("subnet"), {}),
            ("ec2:RunInstances", _ec2("network-interface"), {}),
            ("ec2:RunInstances", _ec2("security-group"), _OURS),
            ("ec2:CreateTags", _ec2("instance"), {"ec2:CreateAction": "RunInstances"}),
            ("ec2:CreateTags", _ec2("volume"), {"ec2:CreateAction": "RunInstances"}),
            ("iam:PassRole", _ROLE, {"iam:PassedToService": "ec2.amazonaws.com"}),
            ("ec2:DescribeInstances", _ANY, {}),  # WaitInstanceCreated
        ],
        "read": [
            ("ec2:DescribeInstances", _ANY, {}),
            ("ec2:DescribeInstanceTypes", _ANY, {}),
            ("ec2:DescribeSpotInstanceRequests", _ANY, {}),  # every spot instance
            ("ec2:DescribeTags", _ANY, {}),  # its launch template tag
            ("ec2:DescribeVolumes", _ANY, {}),  # readBlockDevices
            ("ec2:DescribeInstanceCreditSpecifications", _ANY, {}),  # burstable types
            ("ec2:DescribeInstanceAttribute", _ec2("instance"), {}),  # API stop/termination,
            # user data, shutdown behaviour
        ],
        "update": [("ec2:ModifyInstanceAttribute", _ec2("instance"), _OURS)],
        "delete": [
            ("ec2:ModifyInstanceAttribute", _ec2("instance"), _OURS),
            ("ec2:TerminateInstances", _ec2("instance"), _OURS),
            ("ec2:DescribeInstances", _ANY, {}),  # WaitInstanceDeleted
        ],
    },
    "aws:ec2/securityGroup:SecurityGroup": {
        "create": [
            ("ec2:CreateSecurityGroup", _ec2("security-group"), TAGGED),
            ("ec2:CreateSecurityGroup", _ec2("vpc"), {}),
            ("ec2:CreateTags", _ec2("security-group"), {"ec2:CreateAction": "CreateSecurityGroup"}),
            ("ec2:DescribeSecurityGroups", _ANY, {}),
            ("ec2:RevokeSecurityGroupEgress", _ec2("security-group"), _OURS),  # AWS's default
            ("ec2:AuthorizeSecurityGroupIngress", _ec2("security-group"), _OURS),
            ("ec2:AuthorizeSecurityGroupEgress", _ec2("security-group"), _OURS),
        ],
        "read": [("ec2:DescribeSecurityGroups", _ANY, {})],
        "update": [
            ("ec2:AuthorizeSecurityGroupIngress", _ec2("security-group"), _OURS),
            ("ec2:RevokeSecurityGroupIngress", _ec2("security-group"), _OURS),
            ("ec2:CreateTags", _ec2("security-group"), _OURS),
        ],
        "delete": [
            ("ec2:DescribeNetworkInterfaces", _ANY, {}),  # lingering ENIs
            ("ec2:DeleteSecurityGroup", _ec2("security-group"), _OURS),
            ("ec2:DescribeSecurityGroups", _ANY, {}),  # waits until gone
        ],
    },
    "aws:iam/role:Role": {
        "create": [("iam:CreateRole", _ROLE, _FENCED), ("iam:TagRole", _ROLE, {}),
                   ("iam:GetRole", _ROLE, {})],
        "read": [("iam:GetRole", _ROLE, {}), ("iam:ListRolePolicies", _ROLE, {}),
                 ("iam:GetRolePolicy", _ROLE, {}), ("iam:ListAttachedRolePolicies", _ROLE, {})],
        "update": [("iam:TagRole", _ROLE, {}), ("iam:UntagRole", _ROLE, {})],
        "delete": [
            ("iam:ListInstanceProfilesForRole", _ROLE, {}),
            ("iam:RemoveRoleFromInstanceProfile", _PROFILE, {}),
            ("iam:ListAttachedRolePolicies", _ROLE, {}),
            ("iam:ListRolePolicies", _ROLE, {}),
            ("iam:DeleteRolePolicy", _ROLE, _FENCED),
            ("iam:DeleteRole", _ROLE, {}),
        ],
    },
    "aws:iam/rolePolicy:RolePolicy": {
        "create": [("iam:PutRolePolicy", _ROLE, _FENCED)],
        "read": [("iam:GetRolePolicy", _ROLE, {})],
        "update": [("iam:PutRolePolicy", _ROLE, _FENCED)],
        "delete": [("iam:DeleteRolePolicy", _ROLE, _FENCED)],
    },
    "aws:iam/instanceProfile:InstanceProfile": {
        "create": [("iam:CreateInstanceProfile", _PROFILE, {}),
                   ("iam:TagInstanceProfile", _PROFILE, {}),
                   ("iam:AddRoleToInstanceProfile", _PROFILE, {}),
                   ("iam:GetInstanceProfile", _PROFILE, {})],
        "read": [("iam:GetInstanceProfile", _PROFILE, {}),
                 ("iam:ListInstanceProfileTags", _PROFILE, {})],
        "update": [("iam:TagInstanceProfile", _PROFILE, {}),
                   ("iam:UntagInstanceProfile", _PROFILE, {})],
        "delete": [("iam:RemoveRoleFromInstanceProfile", _PROFILE, {}),
                   ("iam:DeleteInstanceProfile", _PROFILE, {})],
    },
    # the data sources the run program reads, and the provider's own start
    "data": {
        "read": [
            ("ssm:GetParameter", "arn:aws:ssm:eu-west-1::parameter/aws/service/ami", {}),
            ("ec2:DescribeSubnets", _ANY, {}),
            ("sts:GetCallerIdentity", _ANY, {}),
        ],
    },
}  # fmt: skip


def test_the_user_policy_allows_every_call_the_provider_makes_for_the_run_stack() -> None:
    """Create, read (every refresh), update and delete of each resource type the run stack
    declares: a call the user policy denies fails the run (or leaves it for prune)."""
    from stacks.program import run_program
    from tests.stacks.harness import deploy
    from tests.stacks.test_run_stack import make_args

    args = make_args(role_path="/dstack/", permissions_boundary=BOUNDARY)
    declared = {d.type for d in deploy(lambda: run_program(args)).declared if d.custom}
    assert declared <= set(PROVIDER_CALLS), declared - set(PROVIDER_CALLS)
    policy = _policy("dstack-user-policy.json")
    denied = [
        (type_, step, action, resource)
        for type_, steps in PROVIDER_CALLS.items()
        for step, calls in steps.items()
        for action, resource, context in calls
        if not iam_eval.allowed(policy, action, resource, context)
    ]
    assert denied == []


def test_every_permission_the_user_policy_grants_is_documented() -> None:
    guide = (IAM.parent / "docs" / "guides" / "aws-permissions.md").read_text()
    policy = _policy("dstack-user-policy.json")
    actions = {
        action
        for statement in policy["Statement"]
        if statement["Effect"] == "Allow"
        for action in iam_eval._list(statement["Action"])
    }
    missing = sorted(a for a in actions if f"`{a}`" not in guide)
    assert missing == []


def test_the_user_policy_allows_the_reads_live_prices_and_spend_make() -> None:
    """`prices.py` and `spend.py` read these; a denied read silently falls back to the catalog's
    prices (and a spot node's spend to its quote), so the policy must grant them."""
    policy = _policy("dstack-user-policy.json")
    source = "".join(
        (IAM.parent / "dstack" / "compute" / "aws" / name).read_text()
        for name in ("prices.py", "spend.py")
    )
    reads = {
        "get_products": "pricing:GetProducts",
        "describe_spot_price_history": "ec2:DescribeSpotPriceHistory",
        "describe_instance_type_offerings": "ec2:DescribeInstanceTypeOfferings",
    }
    assert all(call in source for call in reads)  # the calls this test is about are made
    denied = [a for a in reads.values() if not iam_eval.allowed(policy, a, _ANY, {})]
    assert denied == []


def test_a_user_may_read_the_spot_service_linked_role_and_no_other_role_outside_dstack() -> None:
    """preflight's spot check reads AWSServiceRoleForEC2Spot (with or without its path, as
    IAM names a role that may not exist yet); other roles outside /dstack/ stay unreadable."""
    policy = _policy("dstack-user-policy.json")
    for arn in (
        f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot",
        f"arn:aws:iam::{ACCOUNT}:role/AWSServiceRoleForEC2Spot",
    ):
        assert iam_eval.allowed(policy, "iam:GetRole", arn, {})
    assert not iam_eval.allowed(policy, "iam:GetRole", f"arn:aws:iam::{ACCOUNT}:role/admin", {})
