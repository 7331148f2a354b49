"""Every kind of workflow as one type: the union of the providers' models, discriminated by
``provider`` (bash when absent), and the workflow file that holds them.

The models live in ``models`` (the base and the plain providers) and ``app_models`` (the app
and multi-node providers, built on the base); this module only puts them together, so the two
never import each other in a circle.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Discriminator, Field, Tag

from dstack.spec.app_models import (
    CodeWorkflow,
    LabWorkflow,
    NotebookWorkflow,
    TensorboardWorkflow,
    TorchrunWorkflow,
)
from dstack.spec.models import (
    DEFAULT_PROVIDER,
    BashWorkflow,
    DockerWorkflow,
    PythonWorkflow,
    Strict,
    WorkflowBase,
)


def _provider_of(value: Any) -> str:
    provider = value.get("provider") if isinstance(value, dict) else getattr(value, "provider", "")
    return str(provider or DEFAULT_PROVIDER)


WORKFLOW_MODELS: dict[str, type[WorkflowBase]] = {
    "bash": BashWorkflow, "python": PythonWorkflow, "docker": DockerWorkflow,
    "lab": LabWorkflow, "notebook": NotebookWorkflow, "code": CodeWorkflow,
    "torchrun": TorchrunWorkflow, "tensorboard": TensorboardWorkflow,
}  # fmt: skip

Workflow = Annotated[
    Annotated[BashWorkflow, Tag("bash")]
    | Annotated[PythonWorkflow, Tag("python")]
    | Annotated[DockerWorkflow, Tag("docker")]
    | Annotated[LabWorkflow, Tag("lab")]
    | Annotated[NotebookWorkflow, Tag("notebook")]
    | Annotated[CodeWorkflow, Tag("code")]
    | Annotated[TorchrunWorkflow, Tag("torchrun")]
    | Annotated[TensorboardWorkflow, Tag("tensorboard")],
    Discriminator(_provider_of),
]


class WorkflowsFile(Strict):
    """`.dstack/workflows.yaml`, and each `.dstack/workflows/*.yaml`."""

    workflows: list[Workflow] = Field(description="The workflows of this repository")
