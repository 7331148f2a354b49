"""The IAM and bucket policy documents of dstack's stacks, as plain functions of their inputs.

Kept apart from the components so a platform team can read every permission in one place, and
so tests can check them without any runtime. Three documents:

- ``ec2_trust_policy``: who may assume the runner role — EC2, and nobody else;
- ``tls_only_bucket_policy``: the state bucket refuses every request not made over TLS;
- ``runner_access_policy``: what a runner instance may do in the state bucket. Never a ``*``
  resource: either the whole store (the bootstrap's shared role), or, for a run's own role,
  exactly the keys that run writes (its records, logs, artifacts, its index entries) and the
  keys it reads (its code archive, the dstack wheel, the artifacts of its deps).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

VERSION = "2012-10-17"
EC2_SERVICE = "ec2.amazonaws.com"

OBJECT_READ = ("s3:GetObject",)
OBJECT_WRITE = ("s3:GetObject", "s3:PutObject", "s3:DeleteObject")
BUCKET_READ = ("s3:ListBucket",)


@dataclass(frozen=True)
class StoreScope:
    """Which keys of the store a runner may touch; every entry is a key prefix relative to the
    store (so ``repos/x/runs/y/`` covers everything under it) or an exact key.

    ``prefix`` is the store's own key prefix in the bucket (``""`` for the whole bucket).
    """

    prefix: str = ""
    read_write: Sequence[str] = field(default_factory=tuple)
    read_only: Sequence[str] = field(default_factory=tuple)
    #: prefixes the runner lists (``ListBucket`` is granted for these prefixes only)
    listable: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for entry in (self.prefix, *self.read_write, *self.read_only, *self.listable):
            if "*" in entry or "?" in entry:
                raise ValueError(f"store scope entries cannot hold IAM wildcards: {entry!r}")

    def full(self, key: str) -> str:
        """``key`` as an object key of the bucket (with the store prefix)."""
        return f"{self.prefix.strip('/')}/{key}" if self.prefix.strip("/") else key


def bucket_arn(bucket: str, partition: str = "aws") -> str:
    return f"arn:{partition}:s3:::{bucket}"


def ec2_trust_policy() -> dict[str, Any]:
    """Only the EC2 service may assume the role (instances, through their profile)."""
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "Ec2AssumesRunnerRole",
                "Effect": "Allow",
                "Principal": {"Service": EC2_SERVICE},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def tls_only_bucket_policy(
    arn: str, kept_statements: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """Deny every S3 action on the bucket and its objects unless the request came over TLS.

    ``kept_statements`` are the statements of an adopted bucket's existing policy (ours, by
    ``Sid``, are replaced, so adopting twice does not duplicate them).
    """
    ours = {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [arn, f"{arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    kept = [dict(s) for s in kept_statements if s.get("Sid") != ours["Sid"]]
    return {"Version": VERSION, "Statement": [*kept, ours]}


def runner_access_policy(arn: str, scope: StoreScope) -> dict[str, Any]:
    """What a run's own runner role may do in the bucket ``arn``: only the keys of ``scope``."""
    statements: list[dict[str, Any]] = []
    if scope.read_write:
        statements.append(
            _objects("RunRecordsReadWrite", OBJECT_WRITE, arn, scope, scope.read_write)
        )
    if scope.read_only:
        statements.append(_objects("InputsReadOnly", OBJECT_READ, arn, scope, scope.read_only))
    statements.append(_listing(arn, scope))
    return {"Version": VERSION, "Statement": statements}


def store_wide_policy(arn: str, prefix: str = "") -> dict[str, Any]:
    """The bootstrap's shared runner role: read, write and list the store kept under ``prefix``
    of the bucket (all of it when ``prefix`` is empty), and nothing outside it."""
    prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    listing: dict[str, Any] = {
        "Sid": "StoreList",
        "Effect": "Allow",
        "Action": list(BUCKET_READ),
        "Resource": arn,
    }
    if prefix:
        listing["Condition"] = {"StringLike": {"s3:prefix": [f"{prefix}*"]}}
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "StoreReadWrite",
                "Effect": "Allow",
                "Action": list(OBJECT_WRITE),
                "Resource": f"{arn}/{prefix}*",
            },
            listing,
        ],
    }


def _objects(
    sid: str, actions: Sequence[str], arn: str, scope: StoreScope, entries: Sequence[str]
) -> dict[str, Any]:
    resources = []
    for entry in entries:
        key = scope.full(entry)
        resources.append(f"{arn}/{key}*" if entry.endswith(("/", ";")) else f"{arn}/{key}")
    return {"Sid": sid, "Effect": "Allow", "Action": list(actions), "Resource": resources}


def _listing(arn: str, scope: StoreScope) -> dict[str, Any]:
    prefixes = [f"{scope.full(entry)}*" for entry in scope.listable]
    statement: dict[str, Any] = {
        "Sid": "ScopedList",
        "Effect": "Allow",
        "Action": list(BUCKET_READ),
        "Resource": arn,
    }
    # An empty list would grant listing the whole bucket: never.
    statement["Condition"] = {"StringLike": {"s3:prefix": prefixes or ["-nothing-"]}}
    return statement
