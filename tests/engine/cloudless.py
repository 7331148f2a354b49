"""``install()``: dstack's own stack programs with their cloud resources replaced, for the real
Pulumi engine here (no AWS account, and no AWS provider plugin: it cannot be built here).

Each ``pulumi_aws`` resource class the programs use (``aws.s3.Bucket``, ``aws.iam.Role``,
``aws.ec2.Instance``...) is replaced by a stand-in of the same name: a ``pulumi.dynamic``
resource (type ``pulumi-python:dynamic/standin/<module>:<Name>``) taking the same keyword
arguments, so the engine really creates, updates, diffs, locks and deletes them, with their
inputs in the stack's state. ``aws.ssm.get_parameter_output`` (an AMI lookup) answers a fixed
id. ``import_`` is dropped (importing needs the real provider); every other option
(``retain_on_delete``, ``ignore_changes``, parents) is kept. dstack is told its stacks need
no plugin (``aws_plugins``).

What the stand-ins "create" is a JSON file per resource in ``$DSTACK_STANDIN_CLOUD`` (if set),
removed when the engine deletes it: the test's view of what exists. Two more variables steer
them, as a cloud's behaviour would: ``DSTACK_STANDIN_SLOW="Instance=20"`` (a create that takes
20 s, with a file ``<Kind>.busy`` in the cloud folder meanwhile) and ``DSTACK_STANDIN_FAIL="BucketPolicy=AccessDenied: ..."`` (its create or update
fails with that message).
"""

from __future__ import annotations

import copy
import json
import os
import time
import uuid
from types import SimpleNamespace
from typing import Any

import pulumi
from pulumi import dynamic

#: (module, class, outputs other code reads) of every pulumi_aws resource the programs use
REPLACED = [
    ("s3", "Bucket", ("arn", "bucket")),
    ("s3", "BucketOwnershipControls", ()),
    ("s3", "BucketPublicAccessBlock", ()),
    ("s3", "BucketVersioning", ()),
    ("s3", "BucketServerSideEncryptionConfiguration", ()),
    ("s3", "BucketPolicy", ()),
    ("s3", "BucketLifecycleConfiguration", ()),
    ("iam", "Role", ("arn", "name")),
    ("iam", "RolePolicy", ("name",)),
    ("iam", "InstanceProfile", ("arn", "name")),
    ("ec2", "SecurityGroup", ("arn", "name")),
    ("ec2", "Instance", ("arn", "public_ip", "private_ip")),
]
STANDIN_AMI = "ami-0standin000000000"


def _setting(variable: str, kind: str) -> str | None:
    for item in (os.environ.get(variable) or "").split(";"):
        key, _, value = item.partition("=")
        if key.strip() == kind:
            return value.strip()
    return None


class StandinProvider(dynamic.ResourceProvider):
    """Creates, updates and deletes stand-in resources (files in ``$DSTACK_STANDIN_CLOUD``)."""

    def __init__(self, kind: str, outputs: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.kind = kind
        self.outputs = outputs

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        self._maybe_slow_or_failing()
        rid = f"{self.kind.lower()}-{uuid.uuid4().hex[:10]}"
        outs = dict(props)
        for key in self.outputs:  # what the cloud computes (None inputs never reach here)
            if outs.get(key) is None:
                outs[key] = {
                    "arn": f"arn:aws:standin:::{self.kind}/{rid}",
                    "public_ip": "192.0.2.10",
                    "private_ip": "10.0.0.10",
                }.get(key, rid)
        self._write(rid, outs)
        return dynamic.CreateResult(id_=rid, outs=outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        changed = [
            key for key in set(olds) | set(news)
            if key != "__provider" and news.get(key) is not None and olds.get(key) != news.get(key)
        ]  # fmt: skip
        return dynamic.DiffResult(changes=bool(changed))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        self._maybe_slow_or_failing()
        outs = {**olds, **{k: v for k, v in news.items() if v is not None}}
        self._write(_id, outs)
        return dynamic.UpdateResult(outs=outs)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        cloud = os.environ.get("DSTACK_STANDIN_CLOUD")
        if cloud:
            try:
                os.remove(os.path.join(cloud, f"{_id}.json"))
            except FileNotFoundError:
                pass

    def _maybe_slow_or_failing(self) -> None:
        delay = _setting("DSTACK_STANDIN_SLOW", self.kind)
        if delay:
            cloud = os.environ.get("DSTACK_STANDIN_CLOUD")
            busy = os.path.join(cloud, f"{self.kind}.busy") if cloud else None
            if busy:
                open(busy, "w").close()  # tells a test the slow operation is under way
            deadline = time.monotonic() + float(delay)
            while time.monotonic() < deadline:
                time.sleep(0.1)
            if busy:
                os.remove(busy)
        failure = _setting("DSTACK_STANDIN_FAIL", self.kind)
        if failure:
            raise Exception(failure)

    def _write(self, rid: str, outs: dict[str, Any]) -> None:
        cloud = os.environ.get("DSTACK_STANDIN_CLOUD")
        if cloud:
            kept = {k: v for k, v in outs.items() if k != "__provider"}
            with open(os.path.join(cloud, f"{rid}.json"), "w") as out:
                json.dump({"kind": self.kind, "outputs": kept}, out, default=str)


def _standin_class(module: str, name: str, outputs: tuple[str, ...]) -> type:
    class Standin(dynamic.Resource, module=f"standin/{module}", name=name):  # type: ignore[call-arg]
        def __init__(
            self, resource_name: str, opts: pulumi.ResourceOptions | None = None, **kwargs: Any
        ) -> None:
            props: dict[str, Any] = {k: v for k, v in kwargs.items() if v is not None}
            for key in outputs:
                props.setdefault(key, None)
            if opts is not None and opts.import_:
                opts = copy.copy(opts)
                opts.import_ = None
            super().__init__(StandinProvider(name, outputs), resource_name, props, opts)

    Standin.__name__ = Standin.__qualname__ = name
    return Standin


def install() -> None:
    """Replace the pulumi_aws resources the programs use (see the module docstring)."""
    import pulumi_aws as aws

    from dstack.compute.aws import engine

    for module, name, outputs in REPLACED:
        setattr(getattr(aws, module), name, _standin_class(module, name, outputs))

    def fixed_ami(*_: Any, **__: Any) -> Any:
        return SimpleNamespace(value=pulumi.Output.from_input(STANDIN_AMI))

    aws.ssm.get_parameter_output = fixed_ami

    def key_arn(*_: Any, key_id: Any = None, **__: Any) -> Any:  # the bucket's KMS key
        arn = f"arn:aws:kms:us-east-1:000000000000:key/{key_id}"
        return SimpleNamespace(arn=pulumi.Output.from_input(arn))

    def subnet(*_: Any, **__: Any) -> Any:  # a configured subnet's VPC
        return SimpleNamespace(vpc_id=pulumi.Output.from_input("vpc-0standin00000000"))

    aws.kms.get_key_output = key_arn
    aws.ec2.get_subnet_output = subnet
    engine.aws_plugins = lambda: ()  # type: ignore[assignment]


def existing(cloud: str | os.PathLike[str]) -> dict[str, list[dict[str, Any]]]:
    """What the stand-ins hold in a cloud folder now, by kind."""
    found: dict[str, list[dict[str, Any]]] = {}
    for entry in sorted(os.listdir(cloud)):
        if entry.endswith(".json"):
            with open(os.path.join(cloud, entry)) as data:
                item = json.load(data)
            found.setdefault(item["kind"], []).append(item["outputs"])
    return found
