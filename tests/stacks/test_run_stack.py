"""The run stack under Pulumi's mock runtime: its security properties, each shown to hold on the
real program and to fail on a copy broken as the check's docstring says."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pulumi
import pytest

from stacks import outputs
from stacks import tags as tagging
from stacks.policies import StoreScope
from stacks.program import run_program
from stacks.run import InstanceArgs, RunStack, RunStackArgs
from tests.stacks import properties as prop
from tests.stacks.harness import Declared, broken, deploy, of_type

BUCKET = "acme-dstack-state"
CALLER = "203.0.113.7/32"
RUN_PREFIX = "repos/github.com/acme/mnist/runs/wise-owl-1/"
HEADS = "repos/github.com/acme/mnist/heads/8264000000000;wise-owl-1;"
ACTIVE = "repos/github.com/acme/mnist/active/8264000000000;wise-owl-1;"
EXPECTED_TAGS = {
    tagging.BUCKET: BUCKET,
    tagging.PREFIX: "/",
    tagging.REPO: "github.com/acme/mnist",
    tagging.RUN: "wise-owl-1",
    tagging.USER: "Ada Lovelace",
}


def make_args(**changes: Any) -> RunStackArgs:
    """A run of two jobs: job 0 on spot with a GPU, job 1 on demand; one port."""
    args = RunStackArgs(
        bucket_name=BUCKET,
        repo_id="github.com/acme/mnist",
        run_name="wise-owl-1",
        user="Ada Lovelace",
        instances=[
            InstanceArgs(0, "g5.xlarge", interruptible=True, user_data="#!/bin/bash\n", gpu=True),
            InstanceArgs(1, "m5.large", interruptible=False, user_data="#!/bin/bash\n"),
        ],
        scope=StoreScope(
            read_write=(RUN_PREFIX, HEADS, ACTIVE),
            read_only=("codes/abc.tar.gz", "dist/d1/dstack-0.1.0-py3-none-any.whl"),
            listable=(RUN_PREFIX, HEADS, ACTIVE),
        ),
        ports=[10000],
        caller_cidr=CALLER,
    )
    return dataclasses.replace(args, **changes)


@pytest.fixture(scope="module")
def declared() -> list[Declared]:
    return deploy(lambda: run_program(make_args())).declared


def _set(path: list[str], value: Any) -> Callable[[list[Declared]], None]:
    """A mutation setting ``inputs[path...]`` of the first resource of the given type."""
    type_suffix, *keys = path

    def mutate(resources: list[Declared]) -> None:
        target: Any = of_type(resources, type_suffix)[0].inputs
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return mutate


def _edit_policy(type_suffix: str, key: str, edit: Callable[[dict], None]) -> Callable:
    def mutate(resources: list[Declared]) -> None:
        resource = of_type(resources, type_suffix)[0]
        document = json.loads(resource.inputs[key])
        edit(document)
        resource.inputs[key] = json.dumps(document)

    return mutate


def _open_ingress(resources: list[Declared]) -> None:
    group = of_type(resources, ":SecurityGroup")[0]
    group.inputs["ingress"].append(
        {"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]}
    )


def _drop_run_tag(resources: list[Declared]) -> None:
    del of_type(resources, ":InstanceProfile")[0].inputs["tags"][tagging.RUN]


def _trust_account(document: dict) -> None:
    document["Statement"][0]["Principal"] = {"AWS": "arn:aws:iam::999999999999:root"}


def _star_resource(document: dict) -> None:
    document["Statement"][0]["Resource"] = "*"


def _widen_to_repo(document: dict) -> None:
    document["Statement"][0]["Resource"][0] = f"arn:aws:s3:::{BUCKET}/repos/github.com/acme/*"


def _flip_spot(resources: list[Declared]) -> None:
    for instance in of_type(resources, ":Instance"):
        if instance.inputs.get("instanceMarketOptions"):
            del instance.inputs["instanceMarketOptions"]


CHECKS: list[tuple[str, Callable[[list[Declared]], None], Callable[[list[Declared]], None]]] = [
    ("no ingress from anywhere", prop.no_open_ingress, _open_ingress),
    (
        "ports only from the caller's /32",
        lambda d: prop.ingress_exactly(d, [10000], CALLER),
        _set([":SecurityGroup", "ingress", 1, "cidrBlocks"], ["203.0.113.0/24"]),  # type: ignore[list-item]
    ),
    ("IMDSv2 required", prop.imdsv2_required, _set([":Instance", "metadataOptions", "httpTokens"], "optional")),
    ("root volume encrypted", prop.root_volume_encrypted, _set([":Instance", "rootBlockDevice", "encrypted"], False)),
    (
        "spot exactly when interruptible",
        lambda d: prop.spot_exactly_when(d, {"wise-owl-1-job-0": True, "wise-owl-1-job-1": False}),
        _flip_spot,
    ),
    ("shutdown terminates", prop.shutdown_terminates, _set([":Instance", "instanceInitiatedShutdownBehavior"], "stop")),
    ("role trusted by EC2 only", prop.trusted_by_ec2_only, _edit_policy(":Role", "assumeRolePolicy", _trust_account)),
    ("S3 access scoped to the bucket", lambda d: prop.s3_access_scoped(d, BUCKET), _edit_policy(":RolePolicy", "policy", _star_resource)),
    (
        "writes scoped to the run",
        lambda d: prop.run_writes_scoped(d, [RUN_PREFIX, HEADS, ACTIVE]),
        _edit_policy(":RolePolicy", "policy", _widen_to_repo),
    ),
    ("every resource tagged", lambda d: prop.every_resource_tagged(d, EXPECTED_TAGS), _drop_run_tag),
]  # fmt: skip


@pytest.mark.parametrize(("name", "check", "mutate"), CHECKS, ids=[c[0] for c in CHECKS])
def test_property_holds(name: str, check: Callable, mutate: Callable, declared: list) -> None:
    check(declared)


@pytest.mark.parametrize(("name", "check", "mutate"), CHECKS, ids=[c[0] for c in CHECKS])
def test_property_check_fails_when_broken(
    name: str, check: Callable, mutate: Callable, declared: list
) -> None:
    """Each check, on a copy of the program's resources broken as its docstring says."""
    with pytest.raises(AssertionError):
        check(broken(declared, mutate))


def test_no_ports_means_no_ingress_at_all() -> None:
    declared = deploy(lambda: run_program(make_args(ports=(), caller_cidr=None))).declared
    prop.ingress_exactly(declared, [], None)
    prop.no_open_ingress(declared)
    (members,) = of_type(declared, ":SecurityGroup")[0].inputs["ingress"]  # two nodes
    assert members["self"] is True
    egress = of_type(declared, ":SecurityGroup")[0].inputs["egress"]
    assert egress[0]["protocol"] == "-1" and egress[0]["cidrBlocks"] == ["0.0.0.0/0"]


def test_one_node_has_no_node_to_node_rule() -> None:
    one = make_args().instances[:1]
    declared = deploy(lambda: run_program(make_args(instances=one))).declared
    (rule,) = of_type(declared, ":SecurityGroup")[0].inputs["ingress"]
    assert rule["cidrBlocks"] == [CALLER] and not rule.get("self")
    prop.ingress_exactly(declared, [10000], CALLER)


def test_ipv6_caller_gets_a_128() -> None:
    caller = "2001:db8::7/128"
    declared = deploy(lambda: run_program(make_args(caller_cidr=caller))).declared
    rule = of_type(declared, ":SecurityGroup")[0].inputs["ingress"][-1]
    assert rule["ipv6CidrBlocks"] == [caller] and not rule.get("cidrBlocks")


@pytest.mark.parametrize(
    ("caller", "why"),
    [
        ("0.0.0.0/0", "one address"),
        ("203.0.113.0/24", "one address"),
        (None, "caller_cidr"),
        ("::/0", "one address"),
    ],
)
def test_ports_refuse_any_caller_but_one_address(caller: str | None, why: str) -> None:
    """The arguments themselves refuse to open a port to more than one address."""
    with pytest.raises(ValueError, match=why):
        make_args(caller_cidr=caller)


def test_ami_comes_from_the_ssm_parameter_or_the_config() -> None:
    mocks = deploy(lambda: run_program(make_args()))
    parameters = sorted(call[1]["name"] for call in mocks.calls)
    assert parameters == [
        "/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id",
        "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id",
    ]
    assert {i.inputs["ami"] for i in of_type(mocks.declared, ":Instance")} == {
        "ami-0123456789abcdef0"
    }
    pinned = deploy(lambda: run_program(make_args(ami_id="ami-0fedcba9876543210")))
    assert pinned.calls == []
    assert {i.inputs["ami"] for i in of_type(pinned.declared, ":Instance")} == {
        "ami-0fedcba9876543210"
    }


def test_shared_instance_profile_declares_no_role() -> None:
    """With the bootstrap's profile, the run declares no IAM resource of its own."""
    declared = deploy(
        lambda: run_program(make_args(instance_profile_name="dstack-runner-x"))
    ).declared
    assert not [d for d in declared if d.type.startswith("aws:iam/")]
    assert {i.inputs["iamInstanceProfile"] for i in of_type(declared, ":Instance")} == {
        "dstack-runner-x"
    }


def test_outputs_resolve_through_the_component() -> None:
    """The Pulumi way: assert on outputs with Output.all(...).apply(...)."""
    seen: dict[str, Any] = {}

    def program() -> Any:
        stack = RunStack("wise-owl-1", make_args())

        def check(values: list[Any]) -> None:
            group, ids = values
            assert group == "wise-owl-1-sg-id"
            assert ids == {"0": "wise-owl-1-job-0-id", "1": "wise-owl-1-job-1-id"}
            seen["checked"] = True

        return pulumi.Output.all(
            stack.security_group_id, pulumi.Output.from_input(stack.instance_ids)
        ).apply(check)

    deploy(program)
    assert seen == {"checked": True}


def test_output_names_are_the_shared_constants() -> None:
    assert {outputs.SECURITY_GROUP_ID, outputs.INSTANCE_IDS, outputs.PUBLIC_IPS} == {
        "security_group_id",
        "instance_ids",
        "public_ips",
    }
