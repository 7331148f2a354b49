"""`dstack run` flags that override a workflow from the file, and applying them.

The flags change the workflow's raw fields and the result is validated again with the same
model, so a flag is held to the same rules as the file; an error names the flag
(``--memory: '16XB' is not a size like 512MB, 16GB or 1TB``).
"""

from __future__ import annotations

import posixpath
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dstack.errors import SpecError
from dstack.spec.loader import describe_error, dotted, first_error
from dstack.spec.models import parse_env
from dstack.spec.workflows import Workflow

# Where each flag lands in a workflow, as the start of a validation error's location.
FLAGS: dict[tuple[str, ...], str] = {
    ("env",): "-e/--env",
    ("artifacts",): "-a/--artifact",
    ("deps",): "--dep",
    ("working_dir",): "-w/--working-dir",
    ("ports",): "-p/--ports",
    ("resources", "interruptible"): "-i/--interruptible",
    ("resources", "local"): "-l/--local",
    ("resources", "cpu"): "--cpu",
    ("resources", "memory"): "--memory",
    ("resources", "gpu", "count"): "--gpu",
    ("resources", "gpu", "name"): "--gpu-name",
    ("resources", "gpu", "memory"): "--gpu-memory",
    ("resources", "shm_size"): "--shm-size",
    ("retry",): "--retry",
    ("spot_policy",): "--spot-policy",
    ("max_price",): "--max-price",
    ("max_duration",): "--max-duration",
    ("on_demand_after",): "--on-demand-after",
}
_RESOURCES = ("cpu", "memory", "shm_size", "interruptible", "local")


class RunOverrides(BaseModel):
    """What `dstack run` flags ask to change; ``None`` or empty means "as in the file"."""

    # built when first used (see ``dstack.models.Model``)
    model_config = ConfigDict(extra="forbid", defer_build=True)

    env: list[str] = Field(default_factory=list, description="-e/--env K=V: added or overriding")
    artifacts: list[str] = Field(default_factory=list, description="-a/--artifact PATH: added")
    deps: list[str] | None = Field(default=None, description="--dep: replaces the file's deps")
    working_dir: str | None = Field(default=None, description="-w/--working-dir")
    interruptible: bool | None = Field(default=None, description="-i/--interruptible")
    local: bool | None = Field(default=None, description="-l/--local")
    cpu: int | None = Field(default=None, description="--cpu")
    memory: str | None = Field(default=None, description="--memory")
    gpu: int | None = Field(default=None, description="--gpu")
    gpu_name: str | None = Field(default=None, description="--gpu-name")
    gpu_memory: str | None = Field(default=None, description="--gpu-memory")
    shm_size: str | None = Field(default=None, description="--shm-size")
    ports: int | None = Field(default=None, description="-p/--ports")
    retry: str | None = Field(
        default=None, description="--retry EVENTS[:LIMIT], e.g. interruption,error:2"
    )
    spot_policy: str | None = Field(default=None, description="--spot-policy")
    max_price: float | None = Field(default=None, description="--max-price")
    max_duration: str | None = Field(default=None, description="--max-duration")
    on_demand_after: int | None = Field(default=None, description="--on-demand-after N")

    @field_validator("env", "artifacts", mode="before")
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        return [] if value is None else value


def apply_overrides(workflow: Workflow, overrides: RunOverrides) -> Workflow:
    """A new workflow: ``workflow`` with ``overrides`` applied, validated again."""
    data = workflow.model_dump()
    try:
        data["env"].update(parse_env(overrides.env))
    except ValueError as exc:
        raise SpecError(f"-e/--env: {exc}") from exc
    known = {artifact["path"] for artifact in data["artifacts"]}
    for path in overrides.artifacts:
        if posixpath.normpath(path) not in known:
            data["artifacts"].append(path)
    if overrides.deps is not None:
        data["deps"] = list(overrides.deps)
    if overrides.working_dir is not None:
        data["working_dir"] = overrides.working_dir
    if overrides.ports is not None:
        data["ports"] = overrides.ports
    _apply_resources(data["resources"], overrides)
    if overrides.retry is not None:
        data["retry"] = parse_retry_flag(overrides.retry)
    _apply_market(data, overrides)
    model = type(workflow)
    try:
        updated = model.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_flag_error(exc, model, data, overrides)) from exc
    return cast(Workflow, updated.located(workflow.source))


def parse_retry_flag(value: str) -> dict[str, Any] | bool:
    """``--retry`` as ``EVENTS[:LIMIT]`` (``interruption,error:2``), ``all[:LIMIT]``, ``no``."""
    text = value.strip()
    if text in ("no", "none", "false", "0"):
        return False
    events, _, limit = text.partition(":")
    retry: dict[str, Any] = {}
    if events and events != "all":
        retry["on"] = [event.strip() for event in events.split(",")]
    if limit:
        retry["limit"] = limit.strip()
    return retry


def _apply_market(data: dict[str, Any], overrides: RunOverrides) -> None:
    """``-i`` means spot; ``--spot-policy`` replaces the file's market (and its
    ``interruptible``, which means spot too)."""
    if overrides.interruptible:
        data["spot_policy"] = "spot"
    if overrides.spot_policy is not None:
        data["spot_policy"] = overrides.spot_policy
        data["resources"]["interruptible"] = overrides.spot_policy == "spot"
    if overrides.max_price is not None:
        data["max_price"] = overrides.max_price
    if overrides.max_duration is not None:
        data["max_duration"] = overrides.max_duration
    if overrides.on_demand_after is not None:
        data["on_demand_after"] = overrides.on_demand_after


def _apply_resources(resources: dict[str, Any], overrides: RunOverrides) -> None:
    for key in _RESOURCES:
        value = getattr(overrides, key)
        if value is not None:
            resources[key] = value
    gpu = dict(resources.get("gpu") or {})
    for key, value in (
        ("count", overrides.gpu),
        ("name", overrides.gpu_name),
        ("memory", overrides.gpu_memory),
    ):
        if value is not None:
            gpu[key] = value
    if gpu:
        resources["gpu"] = gpu


def _flag_error(
    error: ValidationError, model: type[BaseModel], data: Any, overrides: RunOverrides
) -> str:
    first = first_error(error)
    loc = tuple(str(part) for part in first["loc"] if not isinstance(part, int))
    detail = describe_error(error, model, data)
    for prefix, flag in FLAGS.items():
        if loc[: len(prefix)] == prefix:
            field = dotted(first["loc"])
            return f"{flag}: {detail.removeprefix(f'{field}: ')}"
    flag = "-w/--working-dir" if overrides.working_dir is not None else "dstack run flags"
    return f"{flag}: {detail}"
