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
        return {}


def deploy(program: Callable[[], Any], *, stack: str = "test") -> RecordingMocks:
    """Run ``program`` as a mock deployment (not a preview: outputs resolve)."""
    mocks = RecordingMocks()
    settings.reset_options()
    settings.SETTINGS.rpc_manager.clear()
    settings.SETTINGS.outputs.clear()
    pulumi.runtime.set_mocks(mocks, project="dstack", stack=stack, preview=False)
    try:
        _sync_await(
            run_pulumi_func(lambda: _sync_await(pulumi.Output.from_input(program()).future()))
        )
    finally:
        settings.reset_options()
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
