"""Creating or adopting the bootstrap stack, for `dstack config --backend aws`.

The Pulumi state of every dstack stack lives in the state bucket, so the bucket has to exist
before Pulumi can run: it is the one thing created outside Pulumi (a plain ``CreateBucket``).
From then on creating and adopting are one path — the bootstrap stack *imports* the bucket
(``import_``), whether dstack created it a moment ago or a team has had it for years, and
declares its security settings (versioning, default encryption, public access block, TLS-only
policy, lifecycle rules) and the shared runner role. For an adopted bucket, an existing KMS
default key, the statements of an existing bucket policy and existing lifecycle rules are kept
(then dstack declares none of its own, and says so); its tags are left alone. The bucket and its
settings are ``retain_on_delete``: destroying the bootstrap stack never deletes or strips it.

``create_or_adopt_bootstrap`` returns what `dstack config` records: the stack's outputs and
``config_section()``, the ``compute`` section of the config file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dstack.compute.aws.config import PROJECT, state_backend_url
from dstack.compute.aws.driver import StackDriver, Workspace
from dstack.compute.aws.engine import aws_plugins
from dstack.errors import ComputeError
from dstack.storage.s3 import aws_errors
from dstack.store_config import S3StoreConfig

BOOTSTRAP_STACK = "bootstrap"


@dataclass
class BootstrapResult:
    stack: str
    backend_url: str
    bucket: str
    created_bucket: bool
    outputs: dict[str, Any] = field(default_factory=dict)
    kept_policy_statements: int = 0

    def config_section(self, region: str) -> dict[str, Any]:
        """The ``compute`` section `dstack config` writes (runs get a role each by default;
        set ``instance_profile`` to the bootstrap's to share one)."""
        return {
            "type": "aws",
            "region": region,
            "bootstrap": {
                "stack": self.stack,
                "backend_url": self.backend_url,
                **{key: value for key, value in sorted(self.outputs.items())},
            },
        }


def create_or_adopt_bootstrap(
    storage_config: S3StoreConfig,
    *,
    region: str,
    kms_key_id: str | None = None,
    driver: StackDriver | None = None,
    s3_client: Any = None,
    reporter: Callable[[str], None] | None = None,
    fences: dict[str, str | None] | None = None,
) -> BootstrapResult:
    """Make sure the state bucket exists (creating it if needed), then create or update the
    bootstrap stack around it; return its outputs. Nothing is created unless the Pulumi
    engine is installed (ComputeError saying what to install)."""
    from dstack.storage import open_storage
    from stacks.bootstrap import BootstrapArgs
    from stacks.program import bootstrap_program

    say = reporter or (lambda line: None)
    fences = fences or {}
    bucket = storage_config.bucket
    if not bucket:
        raise ComputeError("the bootstrap stack needs a bucket: `dstack config --bucket NAME`")
    backend_url = state_backend_url(storage_config, region)
    driver = driver or StackDriver(
        Workspace(project=PROJECT, backend_url=backend_url, region=region,
                  profile=storage_config.profile, plugins=aws_plugins()),
        on_output=reporter,
    )  # fmt: skip
    driver.check()
    client = s3_client or _s3_client(storage_config, region)
    created = _ensure_bucket(client, bucket, region)
    say(f"{'Created' if created else 'Adopting'} bucket {bucket}")
    kept = [] if created else _policy_statements(client, bucket)
    kms = kms_key_id or (None if created else _kms_key(client, bucket))
    own_lifecycle = not created and _has_lifecycle(client, bucket)
    if own_lifecycle:
        say(
            f"Bucket {bucket} has lifecycle rules of its own: they stay, and dstack adds none "
            "(make sure they expire noncurrent versions and abort incomplete multipart uploads)"
        )
    args = BootstrapArgs(
        bucket_name=bucket,
        adopt_bucket=True,
        kms_key_id=kms,
        kept_policy_statements=kept,
        store_prefix=storage_config.prefix,
        created_bucket=created,
        lifecycle=not own_lifecycle,
        role_path=fences.get("role_path"),
        permissions_boundary=fences.get("permissions_boundary"),
    )
    storage = open_storage(storage_config)
    # the bootstrap is shared and lasting: a failed update leaves what exists in place
    outputs = driver.provision(
        BOOTSTRAP_STACK,
        lambda: bootstrap_program(args),
        _recorder(storage, backend_url),
        ephemeral=False,
    )
    return BootstrapResult(
        stack=BOOTSTRAP_STACK,
        backend_url=backend_url,
        bucket=bucket,
        created_bucket=created,
        outputs=outputs,
        kept_policy_statements=len(kept),
    )


def _ensure_bucket(client: Any, bucket: str, region: str) -> bool:
    """True if the bucket was created now, False if it existed (and is ours to use)."""
    try:
        client.head_bucket(Bucket=bucket)
        return False
    except Exception as exc:
        code = aws_errors.error_code(exc) or ""
        if code in ("403", "AccessDenied", "Forbidden"):
            raise ComputeError(
                f"bucket {bucket} exists but these credentials cannot use it (someone else's "
                "name, or no access): choose another name or check your AWS profile"
            ) from exc
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise ComputeError(f"cannot check bucket {bucket}: {aws_errors.brief(exc)}") from exc
    create: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":
        create["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        client.create_bucket(**create)
    except Exception as exc:
        raise ComputeError(f"cannot create bucket {bucket}: {aws_errors.brief(exc)}") from exc
    return True


def _policy_statements(client: Any, bucket: str) -> list[dict[str, Any]]:
    try:
        policy = client.get_bucket_policy(Bucket=bucket)["Policy"]
    except Exception as exc:
        if aws_errors.error_code(exc) == "NoSuchBucketPolicy":
            return []
        raise ComputeError(
            f"cannot read the policy of bucket {bucket} ({aws_errors.brief(exc)}): adopting "
            "it would replace the policy"
        ) from exc
    statements = json.loads(policy).get("Statement") or []
    return [statements] if isinstance(statements, dict) else list(statements)


def _has_lifecycle(client: Any, bucket: str) -> bool:
    """Whether the bucket has lifecycle rules that are not dstack's own."""
    try:
        rules = client.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules") or []
    except Exception as exc:
        if aws_errors.error_code(exc) == "NoSuchLifecycleConfiguration":
            return False
        raise ComputeError(
            f"cannot read the lifecycle rules of bucket {bucket} ({aws_errors.brief(exc)}): "
            "adopting it would replace them"
        ) from exc
    return any(not str(rule.get("ID", "")).startswith("dstack-") for rule in rules)


def _kms_key(client: Any, bucket: str) -> str | None:
    try:
        rules = client.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"][
            "Rules"
        ]
    except Exception:
        return None
    for rule in rules:
        default = rule.get("ApplyServerSideEncryptionByDefault") or {}
        if default.get("SSEAlgorithm") == "aws:kms" and default.get("KMSMasterKeyID"):
            return str(default["KMSMasterKeyID"])
    return None


def _s3_client(storage_config: S3StoreConfig, region: str) -> Any:
    import boto3

    session = boto3.session.Session(profile_name=storage_config.profile or None, region_name=region)
    return session.client("s3", endpoint_url=storage_config.endpoint_url or None)


def _recorder(storage: Any, backend_url: str) -> Callable[[str, dict[str, Any]], None]:
    from dstack import state
    from dstack.models import InfraRecord, dump

    def record(kind: str, fields: dict[str, Any]) -> None:
        entry = InfraRecord(
            kind=kind, stack=BOOTSTRAP_STACK, backend_url=backend_url, at=time.time(), **fields
        )
        storage.put(state.bootstrap_infra_key(kind), dump(entry))

    return record
