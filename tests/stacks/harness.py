"""Running a stack program under Pulumi's mock runtime and recording what it declares.

``deploy(program)`` installs ``pulumi.runtime.set_mocks`` *before* the program creates any
resource, runs it as a (mock) deployment, and returns every resource registered — its type,
name, inputs as the provider would receive them, and the id it imports, if any. The mocks fake
what the provider computes (ids, ARNs, names) the way the AWS provider would. This harness is
the tests' own; it shares nothing with ``dstack.compute.aws.plan``, which it checks.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.runtime import settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

SECRET_SIG = ("4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270")


@dataclass
class Declared:
    type: str
    name: str
    inputs: dict[str, Any]
    custom: bool
    import_id: str | None

    @property
    def module(self) -> str:
        """``ec2/securityGroup`` of ``aws:ec2/securityGroup:SecurityGroup``."""
        return self.type.split(":")[1]


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.declared: list[Declared] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        #: each resource's options as the program gave them (the mocks never see them)
        self.options: dict[str, pulumi.ResourceOptions] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.declared.append(
            Declared(
                args.typ, args.name, dict(args.inputs), bool(args.custom), args.resource_id or None
            )
        )
        state = dict(args.inputs)
        if args.typ == "aws:s3/bucket:Bucket":
            state["arn"] = f"arn:aws:s3:::{args.inputs['bucket']}"
            state["bucket"] = args.inputs["bucket"]
        else:
            state.setdefault("name", f"{args.name}-a1b2c3")
            state["arn"] = f"arn:aws:test::123456789012:{args.name}"
        if args.typ == "aws:ec2/instance:Instance":
            state["publicIp"] = "198.51.100.10"
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        self.calls.append((args.token, dict(args.args)))
        if args.token == "aws:ssm/getParameter:getParameter":
            return {"name": args.args["name"], "value": "ami-0123456789abcdef0", "type": "String"}
        if args.token == "aws:kms/getKey:getKey":
            # KMS describes a key given by id, alias or ARN with its own ARN
            key = str(args.args["keyId"]).rsplit("/", 1)[-1]
            return {"keyId": key, "arn": f"arn:aws:kms:us-east-1:123456789012:key/{key}"}
        if args.token == "aws:ec2/getSubnet:getSubnet":
            # the subnet's VPC, as EC2 would describe it
            return {"id": args.args["id"], "vpcId": f"vpc-of-{args.args['id']}"}
        return {}


def deploy(
    program: Callable[[], Any], *, stack: str = "test", provider_rules: bool = True
) -> RecordingMocks:
    """Run ``program`` as a mock deployment (not a preview: outputs resolve), then check what
    it declared against the rules the AWS provider and AWS enforce (``provider_rules``): a
    stack AWS would refuse raises ``ProviderRefused``."""
    mocks = RecordingMocks()
    settings.reset_options()
    settings.SETTINGS.rpc_manager.clear()
    settings.SETTINGS.outputs.clear()
    pulumi.runtime.set_mocks(mocks, project="dstack", stack=stack, preview=False)
    original = pulumi.CustomResource.__init__

    def recording_init(self: Any, t: str, name: str, *args: Any, **kwargs: Any) -> None:
        opts = kwargs.get("opts") if "opts" in kwargs else (args[1] if len(args) > 1 else None)
        mocks.options[name] = opts or pulumi.ResourceOptions()
        original(self, t, name, *args, **kwargs)

    pulumi.CustomResource.__init__ = recording_init  # type: ignore[method-assign]
    try:
        _sync_await(
            run_pulumi_func(lambda: _sync_await(pulumi.Output.from_input(program()).future()))
        )
    finally:
        pulumi.CustomResource.__init__ = original  # type: ignore[method-assign]
        settings.reset_options()
    if provider_rules:
        from tests.stacks import provider_rules as rules

        rules.check(mocks.declared)
    return mocks


def broken(declared: list[Declared], mutate: Callable[[list[Declared]], None]) -> list[Declared]:
    """A deep copy of ``declared`` with ``mutate`` applied: the program as it would be if
    someone broke a property."""
    copied = copy.deepcopy(declared)
    mutate(copied)
    return copied


def of_type(declared: list[Declared], suffix: str) -> list[Declared]:
    return [d for d in declared if d.type.endswith(suffix)]


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG[0]) == SECRET_SIG[1]
