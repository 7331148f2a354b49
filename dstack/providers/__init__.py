"""Providers turn a validated workflow into the job specs of one run; a registry by name."""

from __future__ import annotations

from dstack.errors import SpecError
from dstack.models import JobSpec
from dstack.providers.apps import CodeProvider, LabProvider, NotebookProvider, TensorboardProvider
from dstack.providers.base import Provider, RunInput
from dstack.providers.bash import BashProvider
from dstack.providers.docker import DockerProvider
from dstack.providers.python import PythonProvider
from dstack.providers.torchrun import TorchrunProvider

PROVIDERS: dict[str, Provider] = {
    provider.name: provider
    for provider in (
        BashProvider(), PythonProvider(), DockerProvider(), LabProvider(), NotebookProvider(),
        CodeProvider(), TorchrunProvider(), TensorboardProvider(),
    )
}  # fmt: skip


def build_jobs(run: RunInput) -> list[JobSpec]:
    """The job specs of one run (see :meth:`Provider.build_jobs`)."""
    provider = PROVIDERS.get(run.workflow.provider)
    if provider is None:
        raise SpecError(f"workflow {run.workflow.name!r}: no provider {run.workflow.provider!r}")
    return provider.build_jobs(run)


__all__ = ["PROVIDERS", "Provider", "RunInput", "build_jobs"]
