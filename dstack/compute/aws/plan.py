"""A stack program rendered offline through Pulumi's own mock runtime: no engine, no cloud.

``render(program)`` runs the program with ``pulumi.runtime.set_mocks`` and records every
resource it declares — type, name, inputs (as the provider receives them), secrets redacted —
and every provider function it calls (the AMI lookup). Values only the cloud knows (ids,
ARNs of roles, public IPs, the AMI an SSM parameter resolves to) come back as readable
placeholders such as ``<wise-owl-1-sg id>``. This is what `dstack run --plan` prints and what
every cloud run records as its plan before anything is created.

The mock runtime is process-wide state; ``render`` resets it before and after, so renders can
follow each other and a real Automation API run can follow a render.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SECRET = "[secret]"
_ACCOUNT = "<account>"


@dataclass(frozen=True)
class PlannedResource:
    """One resource a program declares."""

    type: str
    name: str
    inputs: dict[str, Any]
    #: a component (``dstack:aws:RunStack``) rather than a cloud resource
    component: bool = False
    #: the id of an existing resource this one adopts (``import_``), if any
    import_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type, "name": self.name}
        if self.component:
            data["component"] = True
        if self.import_id:
            data["import"] = self.import_id
        data["inputs"] = self.inputs
        return data


@dataclass
class Rendering:
    resources: list[PlannedResource] = field(default_factory=list)
    #: provider functions the program called: (token, arguments)
    lookups: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def cloud_resources(self) -> list[PlannedResource]:
        return [r for r in self.resources if not r.component]


def render(program: Callable[[], Any], *, project: str, stack: str) -> Rendering:
    """Run ``program`` under the mock runtime and return what it declared, sorted by name."""
    import pulumi
    from pulumi.runtime import settings
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    mocks = _recording_mocks()
    _reset(settings)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=True)
    try:
        _sync_await(run_pulumi_func(lambda: _await_output(pulumi, program())))
    finally:
        _reset(settings)
    mocks.rendering.resources.sort(key=lambda r: (r.component is False, r.name, r.type))
    return mocks.rendering


def redact(value: Any) -> Any:
    """``value`` with every Pulumi secret replaced by ``[secret]`` (and whole numbers, which
    the engine's wire format carries as doubles, as integers again)."""
    from pulumi.runtime.rpc import is_rpc_secret  # the SDK's own test of its wire format

    if isinstance(value, dict):
        if is_rpc_secret(value):
            return SECRET
        return {key: redact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _await_output(pulumi: Any, result: Any) -> Any:
    from pulumi.runtime.sync_await import _sync_await

    return _sync_await(pulumi.Output.from_input(result).future())


def _reset(settings: Any) -> None:
    settings.reset_options()
    settings.SETTINGS.rpc_manager.clear()
    settings.SETTINGS.outputs.clear()


def _recording_mocks() -> Any:
    """A ``pulumi.runtime.Mocks`` that records resources and answers with placeholders for
    what only the cloud knows (made on demand: pulumi is imported only when rendering)."""
    import pulumi

    class RecordingMocks(pulumi.runtime.Mocks):
        def __init__(self) -> None:
            self.rendering = Rendering()

        def new_resource(self, args: Any) -> tuple[str, dict[str, Any]]:
            inputs = redact(dict(args.inputs))
            self.rendering.resources.append(
                PlannedResource(
                    type=args.typ,
                    name=args.name,
                    inputs=inputs,
                    component=not args.custom,
                    import_id=args.resource_id or None,
                )
            )
            return f"<{args.name} id>", {**inputs, **_computed(args.typ, args.name, inputs)}

        def call(self, args: Any) -> dict[str, Any]:  # type: ignore[override]
            arguments = redact(dict(args.args))
            self.rendering.lookups.append((args.token, arguments))
            if args.token == "aws:ssm/getParameter:getParameter":
                return _ssm_parameter(arguments.get("name", ""))
            if args.token == "aws:ec2/getSubnet:getSubnet":
                subnet = arguments.get("id", "")
                return {"id": subnet, "vpcId": f"<resolved at deploy: the VPC of {subnet}>"}
            if args.token == "aws:kms/getKey:getKey":
                key = arguments.get("keyId", "")
                return {"keyId": key, "arn": f"<resolved at deploy: the ARN of key {key}>"}
            return {}

    return RecordingMocks()


def _ssm_parameter(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "value": f"<resolved at deploy from SSM {name}>",
        "type": "String",
        "arn": f"<{name} arn>",
        "id": name,
        "version": 0,
        "insecureValue": "",
        "withDecryption": False,
    }


def _computed(type_: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """Plausible placeholders for the outputs the program reads from other resources."""
    if type_ == "aws:s3/bucket:Bucket":
        bucket = inputs.get("bucket") or f"<{name}>"
        return {"bucket": bucket, "arn": f"arn:aws:s3:::{bucket}"}
    auto_name = inputs.get("name") or f"<{name} name>"
    computed: dict[str, Any] = {"name": auto_name, "arn": f"<{name} arn>"}
    if type_ == "aws:iam/role:Role":
        computed["arn"] = f"arn:aws:iam::{_ACCOUNT}:role/{auto_name}"
    if type_ == "aws:ec2/instance:Instance":
        computed["publicIp"] = f"<{name} public ip>"
    return computed
