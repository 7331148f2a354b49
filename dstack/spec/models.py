"""The schema of `.dstack/workflows.yaml`: one pydantic model per provider, strict.

Each model accepts the 2022 (0.0.14) input forms and normalises them on the way in: `env` as a
list of `K=V` or a mapping becomes a dict, `commands` as one multi-line string becomes a list of
one script, artifacts and deps given as strings become models, sizes are checked against
``dstack.units``. Unknown keys are rejected (``extra="forbid"``) and every field carries a
description, so :func:`dstack.spec.loader.json_schema` documents the file by itself.

A workflow without `provider:` is a `bash` workflow. Deps in any of their forms (`tag: X`,
`workflow: X`, `:X`, `X`, `owner/repo/X`) become :class:`DepRef`. Reading YAML and turning
validation errors into one line is the loader's job, not this module's.
"""

from __future__ import annotations

import posixpath
import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AliasChoices,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from dstack.models import Resources
from dstack.spec.base import Strict, _AlsoScalar
from dstack.spec.fields import (
    _DEP_MAPPINGS,
    ARTIFACT_PATH_SCHEMA,
    DEP_TEXT,
    EXPRESSION,
    Args,
    ArtifactPath,
    Count,
    Env,
    FilePath,
    Image,
    Name,
    PortCount,
    PositiveCount,
    PythonVersion,
    Size,
    StringList,
    WorkingDir,
    YamlFloat,
    parse_env,
    suggest,
)
from dstack.spec.retry_spec import IdleDuration, RetrySpec, _duration, _retry
from dstack.units import parse_size_mib

DEFAULT_PROVIDER = "bash"  # a workflow without `provider:` is a bash workflow
__all__ = ["DEFAULT_PROVIDER", "EXPRESSION", "YamlFloat", "parse_env", "suggest"]


# ------------------------------------------------------------------------------- models


class DepRef(Strict):
    """A dependency, normalised: a tag or the last successful run of a workflow."""

    kind: Literal["tag", "workflow"] = Field(description="`tag` or `workflow`")
    name: Name = Field(description="Name of the tag or of the workflow")
    repo: str | None = Field(default=None, description="`owner/name` of another repo, same host")

    def __str__(self) -> str:
        prefix = f"{self.repo}/" if self.repo else ""
        return f"{prefix}:{self.name}" if self.kind == "tag" else f"{prefix}{self.name}"


def parse_dep(value: Any) -> Any:
    """`:tag`, `workflow`, `owner/repo/tag`, `{tag: X}`, `{workflow: X}` → DepRef fields."""
    if isinstance(value, DepRef) or (isinstance(value, dict) and "kind" in value):
        return value
    if isinstance(value, dict):
        # `mount: true` (0.0.14) asked to mount the dep instead of copying it: the files are
        # placed either way, so it changes nothing here
        value = {k: v for k, v in value.items() if not (k == "mount" and isinstance(v, bool))}
        if len(value) != 1:
            raise ValueError(f"{value!r} is not a dep: write `tag: NAME` or `workflow: NAME`")
        ((kind, target),) = value.items()
        if kind not in ("tag", "workflow"):
            hint = suggest(str(kind), ("tag", "workflow"))
            raise ValueError(
                f"unknown dep key {kind!r}{hint} (a dep is `tag: NAME` or `workflow: NAME`)"
            )
        if not isinstance(target, str) or not target.strip(":/ "):
            got = f", got {target!r}" if target else ""
            raise ValueError(f"`{kind}:` needs a name{got}")
        return _dep_from_text(target, str(kind))
    if isinstance(value, str) and value.strip():
        kind, colon, target = value.strip().partition(":")
        if colon and kind in ("tag", "workflow"):  # `tag:NAME`, as `--dep` may be written
            return parse_dep({kind: target})
        return _dep_from_text(value, None)
    raise ValueError(f"{value!r} is not a dep: write `tag: NAME`, `workflow: NAME` or ':TAG'")


def _dep_from_text(text: str, kind: str | None) -> dict[str, Any]:
    """``kind`` is None for the string forms: `:tag`, `workflow`, `owner/repo/tag`."""
    parts = text.strip().split("/")
    if len(parts) == 1:
        guessed = "tag" if parts[0].startswith(":") else "workflow"
        return {"kind": kind or guessed, "name": parts[0].removeprefix(":")}
    if len(parts) != 3 or not all(part.strip() for part in parts):
        raise ValueError(f"{text!r} is not a dep: another repo's tag is written owner/repo/TAG")
    repo = f"{parts[0]}/{parts[1]}"
    return {"kind": kind or "tag", "name": parts[2].removeprefix(":"), "repo": repo}


DepItem = Annotated[
    DepRef, BeforeValidator(parse_dep), WithJsonSchema({"anyOf": [DEP_TEXT, *_DEP_MAPPINGS]})
]


class GpuSpec(_AlsoScalar):
    """GPUs: ``gpu: 2`` or ``gpu: {count: 1, name: A100, memory: 40GB}``."""

    scalar_schema: ClassVar[dict[str, Any]] = {"type": "integer", "minimum": 0}

    count: Count = Field(default=1, description="Number of GPUs")
    name: str | None = Field(default=None, description="GPU model, e.g. A100, V100, T4")
    memory: Size | None = Field(default=None, description="Memory per GPU, e.g. 16GB")

    @model_validator(mode="before")
    @classmethod
    def _from_count(cls, value: Any) -> Any:
        if isinstance(value, dict | GpuSpec):
            return value
        if isinstance(value, str) and not value.strip().isdigit():
            raise ValueError(f"{value!r} is not a GPU count; write `gpu: {{count: 1, name: ...}}`")
        return {"count": value}


class ArtifactSpec(_AlsoScalar):
    """A folder or file, relative to the working directory, saved to the state store."""

    scalar_schema: ClassVar[dict[str, Any]] = ARTIFACT_PATH_SCHEMA

    path: ArtifactPath = Field(
        description="Path relative to the working directory, or absolute (saved as "
        "_absolute/PATH; placed back at PATH only on a fresh cloud instance)"
    )
    mount: bool = Field(default=False, description="Sync it continuously while the job runs")

    @model_validator(mode="before")
    @classmethod
    def _from_path(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str) else value


GPU_BY_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)/gpu$")


class ResourcesSpec(Strict):
    """What the job needs. Sizes like `512MB`, `16GB`, `1TB` are binary (GB = GiB, as instance
    types are sized); a bare number is MiB. `NAME/gpu: N` (0.0.14) is `gpu: {name: NAME,
    count: N}`."""

    model_config = ConfigDict(
        json_schema_extra={
            "patternProperties": {
                GPU_BY_NAME.pattern: {
                    "type": "integer",
                    "minimum": 1,
                    "description": "N GPUs of that model",
                }
            }
        }
    )

    @model_validator(mode="before")
    @classmethod
    def _gpu_by_name(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        named = [key for key in value if isinstance(key, str) and GPU_BY_NAME.match(key)]
        if not named:
            return value
        if len(named) > 1 or "gpu" in value:
            keys = ", ".join(named + (["gpu"] if "gpu" in value else []))
            raise ValueError(f"{keys}: give the GPUs once (`gpu: {{name: V100, count: 1}}`)")
        result = dict(value)
        count = result.pop(named[0])
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"{named[0]}: {count!r} is not a positive whole number of GPUs")
        match = GPU_BY_NAME.match(named[0])
        assert match is not None
        result["gpu"] = {"name": match.group(1), "count": count}
        return result

    cpu: PositiveCount | None = Field(default=None, description="Number of CPUs")
    memory: Size | None = Field(default=None, description="Memory, e.g. 16GB")
    gpu: GpuSpec | None = Field(default=None, description="GPU count, or {count, name, memory}")
    shm_size: Size | None = Field(default=None, description="Shared memory (/dev/shm), e.g. 8GB")
    interruptible: bool = Field(default=False, description="Use a spot instance (may stop)")
    local: bool = Field(default=False, description="Run on this machine, whatever the default")

    def to_resources(self) -> Resources:
        """The resources as plain numbers, for a JobSpec."""
        gpu = self.gpu
        return Resources(
            cpu=self.cpu,
            memory_mib=_mib(self.memory),
            gpu_count=gpu.count if gpu else 0,
            gpu_name=gpu.name if gpu else None,
            gpu_memory_mib=_mib(gpu.memory) if gpu else None,
            shm_size_mib=_mib(self.shm_size),
            interruptible=self.interruptible,
            local=self.local,
        )


def _mib(size: str | None) -> int | None:
    return None if size is None else parse_size_mib(size)


# ----------------------------------------------------------------------------- workflows


_SETUP = AliasChoices("setup", "before_run")
FILE_ALIASES = AliasChoices("file", "script")
VERSION_ALIASES = AliasChoices("python", "version")
REQUIREMENTS_HELP = "requirements.txt to install first, relative to working_dir"


class WorkflowBase(Strict):
    """What every provider accepts."""

    name: Name = Field(description="Name used by `dstack run NAME`")
    provider: str = Field(description="How the workflow runs")
    help: str | None = Field(default=None, description="One line shown by `dstack run --help`")
    deps: list[DepItem] = Field(
        default_factory=list, description="Tags/workflows to get outputs of"
    )
    env: Env = Field(default_factory=dict, description="Environment: K=V list or a mapping")
    setup: StringList = Field(
        default_factory=list, validation_alias=_SETUP, description="Commands run before the rest"
    )
    artifacts: list[ArtifactSpec] = Field(default_factory=list, description="Paths to save")
    working_dir: WorkingDir = Field(default=".", description="Folder to run in, in the repo")
    ports: PortCount | None = Field(default=None, description="Ports to open: PORT_0, …")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="What it needs")
    retry: Annotated[RetrySpec | None, BeforeValidator(_retry)] = Field(
        default=None, description="Restart the job after interruptions or errors (default: never)"
    )
    max_idle: IdleDuration | None = Field(
        default=None,
        description="Stop the job once nobody has used it this long, e.g. 1h, or off "
        "(default: 1h for lab, notebook and code, else off); used means its processes used "
        "CPU",
    )
    spot_policy: Literal["spot", "on-demand", "auto"] | None = Field(
        default=None,
        description="Cloud market: spot, on-demand, or auto (spot first, then on-demand); "
        "default: spot with `interruptible`, else on-demand",
    )
    max_price: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description="USD per hour per node: dearer offers are not used"
    )
    max_duration: Annotated[float, BeforeValidator(_duration)] | None = Field(
        default=None,
        description="Longest a cloud job may run, e.g. 2h (default: the config's bound); "
        "the instance powers itself off then",
    )
    on_demand_after: Annotated[int, Field(ge=1, strict=True)] | None = Field(
        default=None,
        description="After this many interruptions, the next attempt goes on-demand "
        "(default: the config's compute.on_demand_after, else never)",
    )

    _source: str = PrivateAttr(default="")
    _notes: list[str] = PrivateAttr(default_factory=list)

    @property
    def notes(self) -> list[str]:
        """Warnings about this workflow's file: 2022 keys it ignores, other workflows that
        do not validate."""
        return self._notes

    @property
    def source(self) -> str:
        """The file this workflow came from, relative to the repo root."""
        return self._source

    def located(self, source: str) -> WorkflowBase:
        """Record the file this workflow came from; returns self."""
        self._source = source
        return self

    @model_validator(mode="after")
    def _one_market(self) -> WorkflowBase:
        if self.resources.interruptible and self.spot_policy in ("on-demand", "auto"):
            raise ValueError(
                f"resources.interruptible asks for spot but spot_policy is {self.spot_policy}: "
                "give one of them"
            )
        return self

    @property
    def market_policy(self) -> str:
        """The spot policy in force: the key, else spot for `interruptible`, else on-demand."""
        return self.spot_policy or ("spot" if self.resources.interruptible else "on-demand")

    def _check_inside_repo(self, field: str, path: str | None) -> None:
        joined = posixpath.normpath(posixpath.join(self.working_dir, path or "."))
        if joined == ".." or joined.startswith("../"):
            where = f"(from working_dir {self.working_dir!r})"
            raise ValueError(f"{field}: {path!r} {where} escapes the repository")


class BashWorkflow(WorkflowBase):
    """Runs shell commands in a virtualenv with the requested Python."""

    provider: Literal["bash"] = Field(default="bash", description="`bash` (the default)")
    commands: StringList = Field(description="Commands, in order, in one shell (set -e)")
    python: PythonVersion | None = Field(default=None, description="Python version, e.g. 3.10")
    requirements: FilePath | None = Field(default=None, description=REQUIREMENTS_HELP)

    @field_validator("commands")
    @classmethod
    def _not_empty(cls, commands: list[str]) -> list[str]:
        if not any(command.strip() for command in commands):
            raise ValueError("empty; the bash provider needs at least one command")
        return commands

    @model_validator(mode="after")
    def _inside_repo(self) -> BashWorkflow:
        self._check_inside_repo("requirements", self.requirements)
        return self


class ScriptWorkflowBase(WorkflowBase):
    """What the providers that run a Python file accept (``python``, ``torchrun``)."""

    file: FilePath = Field(
        validation_alias=FILE_ALIASES, description="The .py file, in working_dir"
    )
    args: Args = Field(default_factory=list, description="Arguments: a string or a list")
    python: PythonVersion | None = Field(
        default=None, validation_alias=VERSION_ALIASES, description="Python version, e.g. 3.10"
    )
    requirements: FilePath | None = Field(default=None, description=REQUIREMENTS_HELP)

    @model_validator(mode="after")
    def _inside_repo(self) -> ScriptWorkflowBase:
        self._check_inside_repo("file", self.file)
        self._check_inside_repo("requirements", self.requirements)
        return self


class PythonWorkflow(ScriptWorkflowBase):
    """Runs `python FILE ARGS…` in a virtualenv with the requested Python."""

    provider: Literal["python"] = Field(description="`python`")


class DockerWorkflow(WorkflowBase):
    """Runs commands in a Docker image; without commands, the image's own command runs."""

    provider: Literal["docker"] = Field(description="`docker`")
    image: Image = Field(description="Docker image, e.g. ubuntu:22.04 or ghcr.io/org/img:tag")
    commands: StringList = Field(default_factory=list, description="Empty: the image's command")
