"""Providers turn a validated workflow into the job specs of one run; a registry by name."""

from __future__ import annotations

from dstack.errors import SpecError
from dstack.models import JobSpec, RepoSnapshot
from dstack.providers.apps import CodeProvider, LabProvider, NotebookProvider, TensorboardProvider
from dstack.providers.base import Provider
from dstack.providers.bash import BashProvider
from dstack.providers.docker import DockerProvider
from dstack.providers.python import PythonProvider
from dstack.providers.torchrun import TorchrunProvider
from dstack.spec.models import Workflow

PROVIDERS: dict[str, Provider] = {
    provider.name: provider
    for provider in (
        BashProvider(), PythonProvider(), DockerProvider(), LabProvider(), NotebookProvider(),
        CodeProvider(), TorchrunProvider(), TensorboardProvider(),
    )
}  # fmt: skip


def build_jobs(
    workflow: Workflow,
    *,
    run_name: str,
    repo: RepoSnapshot,
    args: list[str],
    submitted_at: float,
) -> list[JobSpec]:
    """The job specs of one run of ``workflow`` (see :meth:`Provider.build_jobs`)."""
    provider = PROVIDERS.get(workflow.provider)
    if provider is None:
        raise SpecError(f"workflow {workflow.name!r}: no provider {workflow.provider!r}")
    return provider.build_jobs(
        workflow, run_name=run_name, repo=repo, args=args, submitted_at=submitted_at
    )


__all__ = ["PROVIDERS", "Provider", "build_jobs"]
