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

    type: Literal["local"] = Field(default="local", description="A folder of this machine.")
    root: Path = Field(description="The store's folder ($DSTACK_HOME/store).")


class S3StoreConfig(_Strict):
    """A state store in an S3 bucket, under an optional key prefix."""

    type: Literal["s3"] = Field(default="s3", description="An S3 bucket.")
    bucket: str = Field(min_length=1, description="The bucket's name.")
    region: str | None = Field(default=None, description="The bucket's region.")
    profile: str | None = Field(default=None, description="The AWS profile to reach it with.")
    endpoint_url: str | None = Field(default=None, description="An S3-compatible server.")
    prefix: str = Field(default="", description="The folder of the bucket the store lives in.")


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

    bucket: str | None = Field(
        default=None,
        description="The state bucket (`DSTACK_AWS_S3_BUCKET`, which alone switches to S3).",
    )
    region: str | None = Field(
        default=None,
        description="The bucket's region, also cloud runs' default (`DSTACK_AWS_REGION`); "
        "`dstack config` takes the bucket's own when none is named.",
    )
    profile: str | None = Field(
        default=None, description="An AWS profile for the credential chain (`DSTACK_AWS_PROFILE`)."
    )
    subnet: str | None = Field(
        default=None,
        description="The subnet cloud runs use (`compute.subnet_id` wins); "
        "else the region's default VPC.",
    )
    endpoint_url: str | None = Field(
        default=None,
        description="An S3-compatible server, e.g. MinIO or Ceph (`DSTACK_AWS_ENDPOINT_URL`).",
    )
    prefix: str | None = Field(
        default=None, description="A folder of the bucket, if dstack must share it (`--prefix`)."
    )

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

    type: Literal["local"] = Field(default="local", description="Jobs run on this machine.")


class BudgetConfig(_Strict):
    """USD a run may cost at most in the worst case, per run and per user and calendar month."""

    per_run: float | None = Field(
        default=None, gt=0, description="The most one run's worst case may cost, in USD."
    )
    per_user_month: float | None = Field(
        default=None,
        gt=0,
        description="The most one user's runs may cost in a calendar month (UTC), in USD, "
        "counting each run at its worst case.",
    )


class AwsComputeConfig(_Strict):
    """Provisioning settings for runs on AWS (the file's ``compute`` section with ``type: aws``)."""

    type: Literal["aws"] = Field(
        default="aws",
        description="`aws`: runs go to AWS (jobs with `resources.local` stay here); "
        "`local`, or no section: this machine.",
    )
    region: str | None = Field(
        default=None, description="Where runs go: default `aws.region`, else `AWS_REGION`."
    )
    profile: str | None = Field(default=None, description="Default: `aws.profile`.")
    ami_id: str | None = Field(
        default=None, description="An AMI for every instance; default: from `ami_parameter`."
    )
    ami_parameter: str = Field(
        default=defaults.AMI_PARAMETER,
        description="The SSM public parameter naming the AMI of CPU instances.",
    )
    gpu_ami_parameter: str = Field(
        default=defaults.GPU_AMI_PARAMETER,
        description="The SSM public parameter naming the AMI of GPU instances.",
    )
    root_volume_gb: int = Field(
        default=defaults.ROOT_VOLUME_GB,
        gt=0,
        strict=True,
        description="The encrypted gp3 root volume's size.",
    )
    max_duration_hours: float = Field(
        default=72.0, gt=0, description="The instance powers itself off after this, whatever runs."
    )
    on_demand_after: int | None = Field(
        default=None,
        ge=1,
        description="A job interrupted this many times goes on-demand on its next attempt "
        "(a workflow's `on_demand_after` wins); null: never.",
    )
    store_timeout_minutes: float = Field(
        default=20.0,
        gt=0,
        description="...or when it could not reach the bucket for this long.",
    )
    caller_ip: str | None = Field(
        default=None,
        description="Where `ports` are opened to: default `$DSTACK_CALLER_IP`, "
        "else your public address, looked up at submit.",
    )
    instance_profile: str | None = Field(
        default=None,
        description="null: a role per run, scoped to the run; or the bootstrap's shared profile.",
    )
    subnet_id: str | None = Field(
        default=None, description="Default: `aws.subnet`, else the region's default VPC."
    )
    vpc_id: str | None = Field(
        default=None,
        description="The security group's VPC; default: the subnet's own (or the default VPC).",
    )
    volume_kms_key_id: str | None = Field(
        default=None,
        description="A KMS key for the root volumes; default: the account's EBS default key.",
    )
    role_path: str | None = Field(
        default=None,
        description="An IAM fence an administrator may require: the path of every role and "
        "instance profile dstack creates, e.g. `/dstack/`.",
    )
    role_name_prefix: str | None = Field(
        default=None,
        description="An IAM fence: role and profile names start with it, e.g. `dstack-`.",
    )
    permissions_boundary: str | None = Field(
        default=None,
        description="An IAM fence: the ARN of a policy every role dstack creates carries.",
    )
    partition: str = Field(
        default="aws", description="The AWS partition of the ARNs in runners' policies."
    )
    default_cpu: int = Field(
        default=2,
        gt=0,
        strict=True,
        description="The vCPUs a job that names no `cpu` gets at least.",
    )
    default_memory: str = Field(
        default="8GB", description="The memory a job that names no `memory` gets at least."
    )
    secrets_provider: str = Field(
        default="passphrase",
        description="How Pulumi encrypts secrets in stack state; dstack's stacks hold none.",
    )
    tags: dict[str, str] = Field(
        default_factory=dict,
        description="Tags added to every resource (at most 43; no `aws:` or `dstack:` keys).",
    )
    budget: BudgetConfig | None = Field(
        default=None,
        description="Refuse a run whose worst case (price × nodes × max_duration) exceeds "
        "what is left of a budget.",
    )
    bootstrap: dict[str, Any] = Field(
        default_factory=dict,
        description="The bootstrap stack's outputs, written by `dstack config` "
        "(its KMS key's ARN among them).",
    )

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
