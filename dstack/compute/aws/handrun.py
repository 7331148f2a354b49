"""A stack's arguments read from ``pulumi.Config("dstack")``, for the programs of ``stacks/``
previewed by hand (``Pulumi.yaml``'s entry point, ``stacks/__main__.py``, calls these): the
same user data and store scope dstack renders for a real run, so the preview shows them.

Keys (see ``stacks/Pulumi.example.yaml`` for a run and ``Pulumi.bootstrap-example.yaml``)::

    dstack:stack            run | bootstrap
    dstack:bucket           the state bucket
    dstack:storePrefix      the store's key prefix in the bucket ("" for all of it)
    dstack:rolePath, dstack:permissionsBoundary   IAM fences of the roles (both stacks)
    # bootstrap only
    dstack:adoptBucket      import an existing bucket (default false)
    dstack:kmsKeyId         SSE-KMS key (default SSE-S3)
    # run only
    dstack:repo, dstack:run, dstack:user, dstack:submittedAt
    dstack:instanceType, dstack:interruptible, dstack:gpu, dstack:rootVolumeGb
    dstack:ports, dstack:callerCidr, dstack:amiId, dstack:instanceProfileName
    dstack:subnetId, dstack:vpcId, dstack:python, dstack:codeKey, dstack:wheelKey
    dstack:maxDurationHours, dstack:storeTimeoutMinutes, dstack:roleNamePrefix
    dstack:bucketKmsKeyArn  the bucket's customer-managed key (runners get its data keys)
    dstack:tags             extra tags (a mapping)

The region is Pulumi's own ``aws:region``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dstack import __version__, state
from dstack.compute.aws.scope import scope_for
from dstack.compute.aws.userdata import Boot, render_user_data
from dstack.store_config import S3StoreConfig
from stacks import defaults

if TYPE_CHECKING:
    import pulumi

    from stacks.bootstrap import BootstrapArgs
    from stacks.run import RunStackArgs


def stack_kind(config: pulumi.Config) -> str:
    kind = config.get("stack") or "run"
    if kind not in ("run", "bootstrap"):
        raise ValueError(f"dstack:stack must be run or bootstrap, not {kind!r}")
    return kind


def bootstrap_args(config: pulumi.Config) -> BootstrapArgs:
    from stacks.bootstrap import BootstrapArgs

    return BootstrapArgs(
        bucket_name=config.require("bucket"),
        adopt_bucket=config.get_bool("adoptBucket") or False,
        kms_key_id=config.get("kmsKeyId"),
        store_prefix=config.get("storePrefix") or "",
        role_path=config.get("rolePath"),
        permissions_boundary=config.get("permissionsBoundary"),
        extra_tags=config.get_object("tags") or {},
    )


def run_args(config: pulumi.Config) -> RunStackArgs:
    """The run stack of one job, with the user data dstack would render for it."""
    import pulumi

    from stacks.run import InstanceArgs, RunStackArgs

    bucket = config.require("bucket")
    prefix = config.get("storePrefix") or ""
    repo, run = config.require("repo"), config.require("run")
    region = pulumi.Config("aws").require("region")
    code_key = config.get("codeKey") or "code/trees/<sha256>.json.gz"
    wheel_key = config.get("wheelKey") or f"dist/<digest>/dstack-{__version__}-py3-none-any.whl"
    ports = [int(p) for p in (config.get_object("ports") or [])]
    full = _full_key(prefix)
    boot = Boot(
        storage=S3StoreConfig(bucket=bucket, region=region, prefix=prefix),
        repo_id=repo,
        run_name=run,
        job_index=0,
        region=region,
        wheel_key=full(wheel_key),
        boot_log_key=full(state.boot_log_key(repo, run, 0)),
        version=__version__,
        max_duration_seconds=int((config.get_float("maxDurationHours") or 72) * 3600),
        store_timeout_seconds=int((config.get_float("storeTimeoutMinutes") or 20) * 60),
        python=config.get("python"),
        ports=ports,
    )  # fmt: skip
    instance = InstanceArgs(
        job_index=0,
        instance_type=config.require("instanceType"),
        interruptible=config.get_bool("interruptible") or False,
        user_data=render_user_data(boot),
        gpu=config.get_bool("gpu") or False,
        root_volume_gb=config.get_int("rootVolumeGb") or defaults.ROOT_VOLUME_GB,
    )
    return RunStackArgs(
        bucket_name=bucket,
        repo_id=repo,
        run_name=run,
        user=config.get("user") or "unknown",
        instances=[instance],
        store_prefix=prefix,
        scope=scope_for(
            repo_id=repo,
            run_name=run,
            submitted_at=config.get_float("submittedAt") or 0.0,
            code_key=code_key,
            wheel_key=wheel_key,
            store_prefix=prefix,
        ),
        ports=ports,
        caller_cidr=config.get("callerCidr"),
        ami_id=config.get("amiId"),
        instance_profile_name=config.get("instanceProfileName"),
        subnet_id=config.get("subnetId"),
        vpc_id=config.get("vpcId"),
        bucket_kms_key_arn=config.get("bucketKmsKeyArn"),
        role_path=config.get("rolePath"),
        role_name_prefix=config.get("roleNamePrefix"),
        permissions_boundary=config.get("permissionsBoundary"),
        extra_tags=config.get_object("tags") or {},
    )


def _full_key(prefix: str) -> Any:
    prefix = prefix.strip("/")
    return lambda key: f"{prefix}/{key}" if prefix else key
