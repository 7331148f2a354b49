"""`dstack config` without the terminal: reading, checking and saving where the state lives.

The state store is ``local`` (a folder under ``DSTACK_HOME``) or ``aws`` (an S3 bucket, on AWS
or on any S3-compatible server given by an endpoint URL). Before an ``aws`` store is saved, its
bucket is checked as the 2022 tool did: it must exist (creating it belongs to the bootstrap
stack; until then the error says how), be in the region asked for (or the region is taken from
it), and these credentials must be allowed to read and write it. The S3 calls themselves, and
the mapping of their errors, live in ``S3Storage.probe_bucket``.

Defaults offered to the user — the profile's region, a bucket named ``dstack-<account>-<region>``
— are best effort: when AWS cannot be asked, there is simply no default.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dstack import settings
from dstack.errors import ConfigError
from dstack.store_config import AwsSection, parse_compute

_BUCKET_NAME = re.compile(r"^(?!xn--)(?!.*-s3alias$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_NAMING_RULES = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html"
#: how long `dstack config` waits for an unreachable S3 before saying so (unless overridden)
CHECK_DEADLINE = 10.0


class BucketError(ConfigError):
    """The bucket cannot serve as the state store: missing, elsewhere, or refused."""


#: the ``aws`` section of the config file (``dstack.store_config.AwsSection``)
AwsConfig = AwsSection


def saved_backend() -> str:
    """The backend the config file names (``local`` when there is no file)."""
    name = settings.load_config().get("backend") or "local"
    return str(name) if name in settings.BACKENDS else "local"


def saved_aws() -> AwsConfig:
    """The ``aws`` section of the config file as saved, without environment overrides."""
    section = settings.load_config().get("aws") or {}
    if not isinstance(section, dict):
        return AwsConfig()
    fields = AwsConfig.model_fields
    return AwsConfig(**{k: str(v) for k, v in section.items() if k in fields and v})


def compute_configured() -> bool:
    """Whether the config file sends runs to a cloud (a ``compute`` section)."""
    return bool(settings.load_config().get("compute"))


def env_overrides() -> list[str]:
    """The ``DSTACK_AWS_*`` variables set here, which override whatever is saved."""
    return [env for env in settings.AWS_ENV_OVERRIDES.values() if os.environ.get(env)]


def validate_bucket_name(name: str) -> None:
    if not _BUCKET_NAME.match(name) or ".." in name:
        raise BucketError(
            f"bucket name {name!r} is not valid: 3-63 lowercase letters, digits, dots and "
            f"hyphens, starting and ending with a letter or digit (see {_NAMING_RULES})"
        )


def check_bucket(aws: AwsConfig) -> AwsConfig:
    """Check that ``aws.bucket`` can hold the state; return ``aws`` with the bucket's region
    filled in when none was asked for. Raises ``BucketError`` with what to do."""
    from dstack.storage import probe_bucket

    if not aws.bucket:
        raise ConfigError("the aws backend needs a bucket: pass --bucket NAME")
    validate_bucket_name(aws.bucket)
    deadline = None if os.environ.get(settings.RETRY_DEADLINE_ENV) else CHECK_DEADLINE
    status = probe_bucket(aws.store(), retry_deadline=deadline)
    where = f" at {aws.endpoint_url}" if aws.endpoint_url else ""
    if not status.exists:
        region = aws.region or "us-east-1"
        endpoint = f" --endpoint-url {aws.endpoint_url}" if aws.endpoint_url else ""
        raise BucketError(
            f"the bucket {aws.bucket} does not exist{where}: create it with "
            f"`aws s3 mb s3://{aws.bucket} --region {region}{endpoint}`, or let dstack create "
            f"it with the bootstrap stack: `dstack config --backend aws --bucket {aws.bucket} "
            "--create` (needs the Pulumi CLI)"
        )
    if aws.region and status.region and status.region != aws.region:
        raise BucketError(
            f"the bucket {aws.bucket} belongs to another AWS region ({status.region}, not "
            f"{aws.region}): pass --region {status.region}, or choose another bucket"
        )
    if not status.readable:
        raise BucketError(
            f"you don't have access to the bucket {aws.bucket}{where}; it may belong to "
            "another AWS account: check your credentials and --profile, or choose another bucket"
        )
    if not status.writable:
        raise BucketError(
            f"you can read the bucket {aws.bucket} but not write to it: dstack needs "
            "s3:PutObject and s3:DeleteObject on it"
        )
    return aws if aws.region or not status.region else aws.merged(region=status.region)


def save_local() -> Path:
    """Make this machine's folder the state store (an ``aws`` section is kept for later)."""
    config = settings.load_config()
    config["backend"] = "local"
    return settings.save_config(_ordered(config))


def save_aws(aws: AwsConfig) -> Path:
    """Make ``aws`` the state store. Check it first with ``check_bucket``."""
    if not aws.bucket:
        raise ConfigError("the aws backend needs a bucket: pass --bucket NAME")
    config = settings.load_config()
    config["backend"] = "aws"
    config["aws"] = aws.as_dict()
    return settings.save_config(_ordered(config))


def create_bootstrap(aws: AwsConfig, reporter: Callable[[str], None]) -> Path:
    """`dstack config --create`: create (or adopt) the bucket and the bootstrap stack (IAM role
    and instance profile for runner instances), then save the store and the ``compute``
    section that sends runs to AWS. Needs the Pulumi engine (a clear error says so)."""
    from dstack.compute import open_compute
    from dstack.storage import open_storage

    if not aws.bucket:
        raise ConfigError("--create needs a bucket: pass --bucket NAME")
    validate_bucket_name(aws.bucket)
    region = aws.region or default_region(aws.profile)
    # what the admin set in the compute section (role_path, permissions_boundary, tags,
    # subnet_id…) stays: it fences the bootstrap's role too, and is merged into what is saved
    kept = _kept_compute_section(settings.load_config())
    compute_config = parse_compute({**kept, "type": "aws", "region": region,
                                    **({"profile": aws.profile} if aws.profile else {})})  # fmt: skip
    compute = open_compute(compute_config)
    compute.reporter = reporter
    result = compute.configure(open_storage(aws.merged(region=region).store()))
    save_aws(aws.merged(region=region))
    config = settings.load_config()
    config["compute"] = {**kept, **result.config_section(region)}
    return settings.save_config(_ordered(config))


def _kept_compute_section(config: dict[str, Any]) -> dict[str, Any]:
    """The saved ``compute`` section's settings that `--create` keeps: all of an ``aws``
    section's but its outputs and region (written anew); nothing of a local one."""
    section = config.get("compute")
    if not isinstance(section, dict) or section.get("type") != "aws":
        return {}
    return {k: v for k, v in section.items() if k not in ("type", "region", "bootstrap")}


def default_profile() -> str | None:
    return os.environ.get("AWS_PROFILE") or None


def default_region(profile: str | None) -> str:
    """The profile's (or the environment's) region, else ``us-east-1``."""
    from dstack.storage import aws_default_region

    return aws_default_region(profile)


def default_bucket(aws: AwsConfig) -> str | None:
    """``dstack-<account id>-<region>``, as the 2022 tool proposed; None if STS can't say."""
    from dstack.storage import aws_default_bucket

    if aws.endpoint_url:
        return None
    return aws_default_bucket(aws.profile, aws.region or "us-east-1")


def describe(backend: str, aws: AwsConfig) -> str:
    """One line saying where the state now lives."""
    if backend == "local":
        return f"the state store is the folder {settings.local_store_root()} on this machine"
    region = f" in {aws.region}" if aws.region else ""
    at = f" at {aws.endpoint_url}" if aws.endpoint_url else ""
    prefix = f"/{aws.prefix}" if aws.prefix else ""
    return f"the state store is s3://{aws.bucket}{prefix}{region}{at}"


def _ordered(config: dict[str, Any]) -> dict[str, Any]:
    """``backend`` first, then ``aws``, then anything else other tools put there."""
    head: dict[str, Any] = {k: config[k] for k in ("backend", "aws") if k in config}
    return {**head, **{k: v for k, v in config.items() if k not in head}}
