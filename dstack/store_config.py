"""The typed configuration: which state store, and which compute, as pydantic models.

Everything that reads ``~/.dstack/config.yaml`` or hands a store to another process goes through
these models, so a field that drifts is a mypy error and a bad value is one ``ConfigError`` line:

- ``StoreConfig``: where state lives, a union discriminated by ``type`` — ``LocalStoreConfig``
  (a folder) or ``S3StoreConfig`` (a bucket, an optional key prefix, region/profile/endpoint);
- ``ComputeConfig``: where jobs run — ``LocalComputeConfig`` or ``AwsComputeConfig`` (the
  ``compute`` section of the file, with the store's region, profile and subnet filled in);
- ``AwsSection``: the file's ``aws`` section as the user wrote it (the store's bucket etc.).

``dump_store`` and ``parse_store`` are the one serialization of a store for the runner's
arguments, the instances' user data and the dependency cache's keys. Nothing here imports an
AWS SDK, and nothing here reads the file: ``dstack.settings`` does that.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from dstack.errors import ConfigError
from stacks import defaults


class _Strict(BaseModel):
    # built when first used (see ``dstack.models.Model``)
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class LocalStoreConfig(_Strict):
    """A state store in a folder of this machine."""

    type: Literal["local"] = "local"
    root: Path


class S3StoreConfig(_Strict):
    """A state store in an S3 bucket, under an optional key prefix."""

    type: Literal["s3"] = "s3"
    bucket: str = Field(min_length=1)
    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    prefix: str = ""


StoreConfig = Annotated[LocalStoreConfig | S3StoreConfig, Field(discriminator="type")]
_STORE = TypeAdapter(StoreConfig)


def dump_store(config: StoreConfig) -> str:
    """The store as one line of JSON (for another process: the runner, an instance)."""
    return config.model_dump_json()


def parse_store(data: str | bytes | dict[str, Any]) -> StoreConfig:
    """The inverse of ``dump_store`` (also takes the mapping); ConfigError when it is not one."""
    try:
        if isinstance(data, dict):
            return _STORE.validate_python(data)
        return _STORE.validate_json(data)
    except ValidationError as exc:
        raise ConfigError(f"state store description: {_first_error(exc)}") from None


class AwsSection(_Strict):
    """The file's ``aws`` section: the S3 store (and the subnet cloud runs use)."""

    bucket: str | None = None
    region: str | None = None
    profile: str | None = None
    subnet: str | None = None
    endpoint_url: str | None = None
    prefix: str | None = None

    def merged(self, **changes: str | None) -> AwsSection:
        """This section with the given fields replaced (``None`` keeps a field, ``""`` clears
        it)."""
        updates = {k: (v or None) for k, v in changes.items() if v is not None}
        return self.model_copy(update=updates)

    def as_dict(self) -> dict[str, str]:
        """The fields that are set, as the file holds them."""
        return {k: v for k, v in self.model_dump().items() if v}

    def store(self) -> S3StoreConfig:
        """The S3 store this section describes (it must name a bucket)."""
        return S3StoreConfig(
            bucket=self.bucket or "",
            region=self.region,
            profile=self.profile,
            endpoint_url=self.endpoint_url,
            prefix=self.prefix or "",
        )


class LocalComputeConfig(_Strict):
    """Jobs run on this machine."""

    type: Literal["local"] = "local"


class AwsComputeConfig(_Strict):
    """Provisioning settings for runs on AWS (the file's ``compute`` section with ``type: aws``)."""

    type: Literal["aws"] = "aws"
    region: str | None = None
    profile: str | None = None
    ami_id: str | None = None
    ami_parameter: str = defaults.AMI_PARAMETER
    gpu_ami_parameter: str = defaults.GPU_AMI_PARAMETER
    root_volume_gb: int = Field(default=defaults.ROOT_VOLUME_GB, gt=0, strict=True)
    #: the instance powers itself off after this, whatever runs
    max_duration_hours: float = Field(default=72.0, gt=0)
    #: ...or when it could not reach the store for this long
    store_timeout_minutes: float = Field(default=20.0, gt=0)
    caller_ip: str | None = None
    instance_profile: str | None = None
    subnet_id: str | None = None
    vpc_id: str | None = None
    volume_kms_key_id: str | None = None
    #: IAM fences an administrator can require of the roles dstack creates (README: "Running
    #: on AWS"): a path, a name prefix, a permissions boundary (a policy ARN)
    role_path: str | None = None
    role_name_prefix: str | None = None
    permissions_boundary: str | None = None
    partition: str = "aws"
    default_cpu: int = Field(default=2, gt=0, strict=True)
    default_memory: str = "8GB"
    #: how Pulumi encrypts secrets in stack state; our stacks hold none (see README)
    secrets_provider: str = "passphrase"
    tags: dict[str, str] = Field(default_factory=dict)
    bootstrap: dict[str, Any] = Field(default_factory=dict)

    @field_validator("tags")
    @classmethod
    def _tags_aws_takes(cls, tags: dict[str, str]) -> dict[str, str]:
        """Tags AWS would refuse fail here, at the config, not at create."""
        from stacks import tags as tagging

        tagging.check_extra(tags)
        return tags

    @field_validator("role_path", "role_name_prefix", "permissions_boundary")
    @classmethod
    def _fence_iam_takes(cls, value: str | None, info: ValidationInfo) -> str | None:
        from stacks import policies

        fences: dict[str, str | None] = {
            "path": None, "name_prefix": None, "permissions_boundary": None
        }  # fmt: skip
        fences[str(info.field_name).removeprefix("role_")] = value
        policies.check_role_fences(**fences)
        return value

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


ComputeConfig = Annotated[LocalComputeConfig | AwsComputeConfig, Field(discriminator="type")]
_COMPUTE = TypeAdapter(ComputeConfig)


def parse_compute(section: Any, aws: AwsSection | None = None) -> ComputeConfig:
    """The ``compute`` section (None: local), with the region, profile and subnet of the
    store's ``aws`` section where the section names none; one ConfigError line otherwise."""
    if section is None:
        return LocalComputeConfig()
    if not isinstance(section, dict):
        raise ConfigError("config: compute: expected a mapping; run `dstack config`")
    data = dict(section)
    data.setdefault("type", "local")
    if data["type"] == "local":  # AWS settings kept for when `--backend aws` turns them back on
        return LocalComputeConfig()
    for name in ("tags", "bootstrap"):
        if name in data and data[name] is None:
            data[name] = {}
    if data["type"] == "aws" and aws is not None:
        for ours, theirs in (("region", aws.region), ("profile", aws.profile)):
            if not data.get(ours) and theirs:
                data[ours] = theirs
        if not data.get("subnet_id") and aws.subnet:
            data["subnet_id"] = aws.subnet
    try:
        return _COMPUTE.validate_python(data)
    except ValidationError as exc:
        raise ConfigError(f"config: compute{_first_error(exc, dotted=True)}") from None


def parse_aws_section(section: Any) -> AwsSection:
    if section is None:
        return AwsSection()
    if not isinstance(section, dict):
        raise ConfigError("`aws` must be a mapping; run `dstack config`")
    cleaned = {k: (None if v is None or v == "" else str(v)) for k, v in section.items()}
    try:
        return AwsSection(**cleaned)
    except ValidationError as exc:
        error = exc.errors()[0]
        if error["type"] == "extra_forbidden":
            fields = ", ".join(AwsSection.model_fields)
            raise ConfigError(
                f"unknown key aws.{error['loc'][0]} (expected one of {fields}); "
                "fix it or run `dstack config`"
            ) from None
        raise ConfigError(f"aws{_first_error(exc, dotted=True)}") from None


def _first_error(exc: ValidationError, *, dotted: bool = False) -> str:
    """The first pydantic error as ``.field: what was expected``."""
    error = exc.errors()[0]
    loc = ".".join(str(part) for part in error["loc"] if not str(part).startswith("function-"))
    # a discriminated union puts the tag in the location: drop it
    loc = loc.split(".", 1)[1] if loc.split(".", 1)[0] in ("local", "s3", "aws") else loc
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    elif error["type"] in ("greater_than", "int_type") and "int" in str(error.get("type")):
        message = "expected a positive whole number"
    if dotted:
        return f".{loc}: {message}" if loc else f": {message}"
    return f"{loc}: {message}" if loc else message
