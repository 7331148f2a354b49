"""The IAM and bucket policy documents of dstack's stacks, as plain functions of their inputs.

Kept apart from the components so a platform team can read every permission in one place, and
so tests can check them without any runtime: the runner role's trust (EC2 only), the bucket's
TLS-only policy, a run's own role (exactly its keys, never a ``*`` resource) and the
bootstrap's shared role. ``compact_json`` and ``policy_size`` keep within IAM's 10,240
characters. Each document and why: docs/design/stacks.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

VERSION = "2012-10-17"
EC2_SERVICE = "ec2.amazonaws.com"

OBJECT_READ = ("s3:GetObject",)
OBJECT_WRITE = ("s3:GetObject", "s3:PutObject", "s3:DeleteObject")
BUCKET_READ = ("s3:ListBucket",)
KMS_DATA_KEYS = ("kms:GenerateDataKey", "kms:Decrypt")
#: IAM's limit on a role's inline policies, together, whitespace not counted
ROLE_POLICY_MAX = 10_240
#: a role name is at most 64 characters and the provider appends 26 to a name prefix
NAME_PREFIX_MAX = 38
_IAM_NAME = re.compile(r"^[A-Za-z0-9+=,.@_-]+$")
_IAM_PATH = re.compile(r"^/([\x21-\x7e]+/)?$")
_POLICY_ARN = re.compile(r"^arn:[a-z-]+:iam::(\d{12}|aws):policy/[\x21-\x7e]+$")
#: the store's top-level folders the shared runner role reaches (see ``dstack.state``)
RUNS_FOLDER = "repos/"
READ_ONLY_FOLDERS = ("codes/", "dist/")


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


def compact_json(document: Mapping[str, Any]) -> str:
    """``document`` as JSON without whitespace (IAM's size limits count the rest)."""
    return json.dumps(document, separators=(",", ":"))


def policy_size(document: Mapping[str, Any] | str) -> int:
    """A policy's size as IAM counts it: its characters, whitespace aside."""
    text = document if isinstance(document, str) else compact_json(document)
    return len(re.sub(r"\s", "", text))


def check_role_fences(
    path: str | None, name_prefix: str | None, permissions_boundary: str | None
) -> None:
    """Raise ``ValueError`` when IAM would refuse one of an administrator's fences."""
    if path is not None and (len(path) > 512 or not _IAM_PATH.match(path)):
        raise ValueError(f"role path {path!r}: IAM wants / or /a/path/ (printable, no spaces)")
    if name_prefix is not None and (
        len(name_prefix) > NAME_PREFIX_MAX - 4 or not _IAM_NAME.match(name_prefix)
    ):
        raise ValueError(
            f"role name prefix {name_prefix!r}: at most {NAME_PREFIX_MAX - 4} characters of "
            f"letters, digits and +=,.@_-"
        )
    if permissions_boundary is not None and not _POLICY_ARN.match(permissions_boundary):
        raise ValueError(
            f"permissions boundary {permissions_boundary!r}: give the ARN of an IAM policy "
            f"(arn:aws:iam::123456789012:policy/NAME)"
        )


def kms_statement(kms_key_arn: str) -> dict[str, Any]:
    """Data keys of the bucket's customer-managed key: SSE-KMS PUTs and GETs need them."""
    return {
        "Sid": "BucketKeyDataKeys",
        "Effect": "Allow",
        "Action": list(KMS_DATA_KEYS),
        "Resource": kms_key_arn,
    }


def runner_access_policy(
    arn: str, scope: StoreScope, *, kms_key_arn: str | None = None
) -> dict[str, Any]:
    """What a run's own runner role may do in the bucket ``arn``: only the keys of ``scope``
    (and the data keys of ``kms_key_arn``, the bucket's own key, if given)."""
    statements: list[dict[str, Any]] = []
    if scope.read_write:
        statements.append(
            _objects("RunRecordsReadWrite", OBJECT_WRITE, arn, scope, scope.read_write)
        )
    if scope.read_only:
        statements.append(_objects("InputsReadOnly", OBJECT_READ, arn, scope, scope.read_only))
    statements.append(_listing(arn, scope))
    if kms_key_arn:
        statements.append(kms_statement(kms_key_arn))
    return {"Version": VERSION, "Statement": statements}


def store_wide_policy(
    arn: str, prefix: str = "", *, kms_key_arn: str | None = None
) -> dict[str, Any]:
    """The bootstrap's shared runner role, for the store kept under ``prefix`` of the bucket:
    read and write its runs (``repos/``), read its code archives and wheels, list those — and
    nothing else (not the Pulumi state, not the stack records, not another store)."""
    prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    folders = [RUNS_FOLDER, *READ_ONLY_FOLDERS]
    statements: list[dict[str, Any]] = [
        {
            "Sid": "RunsReadWrite",
            "Effect": "Allow",
            "Action": list(OBJECT_WRITE),
            "Resource": f"{arn}/{prefix}{RUNS_FOLDER}*",
        },
        {
            "Sid": "InputsReadOnly",
            "Effect": "Allow",
            "Action": list(OBJECT_READ),
            "Resource": [f"{arn}/{prefix}{folder}*" for folder in READ_ONLY_FOLDERS],
        },
        {
            "Sid": "StoreList",
            "Effect": "Allow",
            "Action": list(BUCKET_READ),
            "Resource": arn,
            "Condition": {"StringLike": {"s3:prefix": [f"{prefix}{f}*" for f in folders]}},
        },
    ]
    if kms_key_arn:
        statements.append(kms_statement(kms_key_arn))
    return {"Version": VERSION, "Statement": statements}


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
