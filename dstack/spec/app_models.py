"""The schema of the providers that serve an app on a port or span several nodes: `lab`,
`notebook` and `code` (dev environments), `tensorboard`, and `torchrun`.

They build on :class:`dstack.spec.models.WorkflowBase` (so `setup`, `env`, `artifacts`,
`working_dir`, `deps`, `resources` and `retry` mean what they mean for `bash`) and are part of
the ``Workflow`` union there. An app's server listens on ``PORT_0``; `ports: N` asks for N more
(``PORT_1`` …). `version` is the version of the app to install (as in 2022), checked here for
its form; whether it exists is for the package index to say when the job's environment is made.

`tensorboard` is also a built-in workflow: ``dstack run tensorboard RUN…`` works without a
workflow of that name in the file (:func:`builtin_workflow`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema, model_validator

from dstack.spec.fields import (
    FilePath,
    Name,
    PortCount,
    PositiveCount,
    PythonVersion,
    RelativePath,
    scalar_text,
)
from dstack.spec.models import REQUIREMENTS_HELP, ScriptWorkflowBase, WorkflowBase

_PACKAGE_VERSION = re.compile(r"^\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?$")
_MORE_PORTS = "More ports: PORT_1, … (PORT_0 is the server's)"


def _package_version(value: Any) -> str:
    text = repr(value) if isinstance(value, bool) else scalar_text(value).strip()
    if not _PACKAGE_VERSION.match(text):
        raise ValueError(f"{text!r} is not a release version like 4.2.5 (digits and dots)")
    return text


PackageVersion = Annotated[
    str,
    BeforeValidator(_package_version),
    WithJsonSchema({"type": ["string", "number"], "pattern": _PACKAGE_VERSION.pattern}),
]


class DevEnvironmentBase(WorkflowBase):
    """A server to work in from the browser, in a virtualenv with the requested Python."""

    python: PythonVersion | None = Field(default=None, description="Python version, e.g. 3.10")
    requirements: FilePath | None = Field(default=None, description=REQUIREMENTS_HELP)
    ports: PortCount | None = Field(default=None, description=_MORE_PORTS)

    @model_validator(mode="after")
    def _inside_repo(self) -> DevEnvironmentBase:
        self._check_inside_repo("requirements", self.requirements)
        return self


class LabWorkflow(DevEnvironmentBase):
    """JupyterLab in the job's virtualenv, on PORT_0, protected by a token."""

    provider: Literal["lab"] = Field(description="`lab`")
    version: PackageVersion | None = Field(
        default=None, description="JupyterLab version, e.g. 4.2.5 (default: the newest)"
    )


class NotebookWorkflow(DevEnvironmentBase):
    """The classic Jupyter Notebook in the job's virtualenv, on PORT_0, protected by a token."""

    provider: Literal["notebook"] = Field(description="`notebook`")
    version: PackageVersion | None = Field(
        default=None, description="Notebook version, e.g. 7.2.2 (default: the newest)"
    )


class CodeWorkflow(DevEnvironmentBase):
    """VS Code in the browser (openvscode-server or code-server of this machine), on PORT_0."""

    provider: Literal["code"] = Field(description="`code`")
    version: PackageVersion | None = Field(
        default=None, description="The VS Code server version the machine must have"
    )


class TensorboardWorkflow(WorkflowBase):
    """TensorBoard over the artifacts of other runs of this repo, on PORT_0."""

    provider: Literal["tensorboard"] = Field(description="`tensorboard`")
    runs: list[Name] = Field(
        default_factory=list, description="Runs to show (also: `dstack run tensorboard RUN…`)"
    )
    logdir: RelativePath | None = Field(
        default=None, description="Where the event files are in each run's artifacts"
    )
    version: PackageVersion | None = Field(
        default=None, description="TensorBoard version, e.g. 2.17.0 (default: the newest)"
    )
    python: PythonVersion | None = Field(default=None, description="Python version, e.g. 3.10")
    ports: PortCount | None = Field(default=None, description=_MORE_PORTS)


class TorchrunWorkflow(ScriptWorkflowBase):
    """A PyTorch script on `nodes` nodes: one job per node, started together, rank 0 the master."""

    provider: Literal["torchrun"] = Field(description="`torchrun`")
    nodes: PositiveCount = Field(default=1, description="Number of nodes (jobs), 1 or more")
    launcher: Literal["torchrun", "python"] = Field(
        default="torchrun",
        description="`torchrun` (default), or `python`: one process per node, with the "
        "rendezvous variables set (for code that initialises torch.distributed itself)",
    )


BUILTIN_SOURCE = "(built in)"


def builtin_workflow(name: str) -> WorkflowBase | None:
    """The built-in workflow called ``name`` (``tensorboard``), or None."""
    if name != "tensorboard":
        return None
    return TensorboardWorkflow(name=name, provider="tensorboard").located(BUILTIN_SOURCE)
