"""The ``compute`` section of ``~/.dstack/config.yaml``: whether and how runs go to AWS.

The state store's own ``aws`` section (bucket, region, profile, subnet…) belongs to
``dstack.settings``; this section adds what provisioning needs. Every field has a default
except the region, which comes from ``aws.region``, ``AWS_REGION`` or ``AWS_DEFAULT_REGION``
(never a built-in guess). ``dstack config --backend aws`` writes the section with the bootstrap
stack's outputs (``bootstrap``). Example::

    compute:
      type: aws                       # local (the default) or aws
      instance_profile: null          # the bootstrap's shared profile, or null for a role per run
      ami_id: null                    # default: resolved from the SSM public parameters below
      root_volume_gb: 100
      max_duration_hours: 72          # the instance powers itself off after this, whatever runs
      store_timeout_minutes: 20       # ...or when it could not reach the store for this long
      caller_ip: null                 # for `ports`: default $DSTACK_CALLER_IP, else looked up
      subnet_id: null
      vpc_id: null
      default_cpu: 2
      default_memory: 8GB
      tags: {team: ml}
      bootstrap: {stack: bootstrap, bucket_name: ..., instance_profile_name: ..., ...}
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from dstack.errors import ConfigError
from stacks import defaults

PROJECT = "dstack"
#: the folder of the store (a key prefix) that holds the Pulumi project's state
PULUMI_STATE_FOLDER = "pulumi"
#: ports asked for by a workflow are opened at these numbers on its instance
PORT_BASE = 10000


@dataclass(frozen=True)
class AwsComputeConfig:
    """Provisioning settings; ``from_config`` reads them from the whole config file."""

    type: str = "aws"
    region: str | None = None
    profile: str | None = None
    ami_id: str | None = None
    ami_parameter: str = defaults.AMI_PARAMETER
    gpu_ami_parameter: str = defaults.GPU_AMI_PARAMETER
    root_volume_gb: int = defaults.ROOT_VOLUME_GB
    max_duration_hours: float = 72.0
    store_timeout_minutes: float = 20.0
    caller_ip: str | None = None
    instance_profile: str | None = None
    subnet_id: str | None = None
    vpc_id: str | None = None
    volume_kms_key_id: str | None = None
    partition: str = "aws"
    default_cpu: int = 2
    default_memory: str = "8GB"
    #: how Pulumi encrypts secrets in stack state; our stacks hold none (see README)
    secrets_provider: str = "passphrase"
    tags: Mapping[str, str] = field(default_factory=dict)
    bootstrap: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AwsComputeConfig:
        """Settings from the whole config file: its ``compute`` section, with the region,
        profile and subnet of the store's ``aws`` section; ConfigError naming a bad field."""
        section = config.get("compute") or {}
        if not isinstance(section, Mapping):
            raise ConfigError("config: compute: expected a mapping; run `dstack config`")
        section = dict(section)
        from dstack import settings

        aws = settings.aws_settings(dict(config))
        for ours, theirs in (("region", "region"), ("profile", "profile"), ("subnet_id", "subnet")):
            if not section.get(ours) and aws.get(theirs):
                section[ours] = aws[theirs]
        return cls.from_section(section)

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> AwsComputeConfig:
        """Settings from a ``compute`` mapping alone."""
        section = dict(section)
        if section.get("type", "aws") != "aws":
            raise ConfigError(f"config: compute.type: {section['type']!r} is not aws")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ConfigError(
                f"config: compute: unknown field {unknown[0]!r} "
                f"(expected one of {', '.join(sorted(known))})"
            )
        for name in ("root_volume_gb", "default_cpu"):
            if name in section and not _positive_int(section[name]):
                raise ConfigError(f"config: compute.{name}: expected a positive whole number")
        for name in ("max_duration_hours", "store_timeout_minutes"):
            if name in section and not _positive_number(section[name]):
                raise ConfigError(f"config: compute.{name}: expected a positive number")
        for name in ("tags", "bootstrap"):
            if name in section and not isinstance(section[name] or {}, Mapping):
                raise ConfigError(f"config: compute.{name}: expected a mapping")
            section[name] = dict(section.get(name) or {})
        return cls(**section)

    def resolved_region(self) -> str | None:
        return self.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")

    def require_region(self) -> str:
        region = self.resolved_region()
        if not region:
            raise ConfigError(
                "no AWS region: set it with `dstack config --region`, or set AWS_REGION"
            )
        return region

    @property
    def max_duration_seconds(self) -> int:
        return int(self.max_duration_hours * 3600)

    @property
    def store_timeout_seconds(self) -> int:
        return int(self.store_timeout_minutes * 60)


def state_backend_url(storage_config: Mapping[str, Any], region: str | None) -> str:
    """The Pulumi project's state backend: a folder of the state bucket itself.

    ``s3://<bucket>/<store prefix>/pulumi?region=…``, plus ``endpoint``/path-style options
    for an S3-compatible store. Pulumi keeps each stack at
    ``<that>/.pulumi/stacks/dstack/<stack>.json``, so anyone with the bucket can list and
    destroy them (``dstack prune``).
    """
    bucket = storage_config.get("bucket")
    if not bucket:
        raise ConfigError("AWS compute needs the S3 state store: run `dstack config`")
    prefix = str(storage_config.get("prefix") or "").strip("/")
    folder = f"{prefix}/{PULUMI_STATE_FOLDER}" if prefix else PULUMI_STATE_FOLDER
    query = []
    if region or storage_config.get("region"):
        query.append(f"region={storage_config.get('region') or region}")
    endpoint = storage_config.get("endpoint_url")
    if endpoint:
        host = str(endpoint).split("://", 1)[-1].rstrip("/")
        query.append(f"endpoint={host}")
        query.append("s3ForcePathStyle=true")
        if str(endpoint).startswith("http://"):
            query.append("disableSSL=true")
    if storage_config.get("profile"):
        query.append(f"profile={storage_config['profile']}")
    return f"s3://{bucket}/{folder}" + (f"?{'&'.join(query)}" if query else "")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _positive_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
