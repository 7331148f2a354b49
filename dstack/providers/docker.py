"""The ``docker`` provider: commands run inside an image.

With no commands the job runs the image's own default command (its ENTRYPOINT/CMD), and run
arguments are ignored unless a command uses ``${{ run.args }}``. Whether a Docker engine is
there is not checked here: the compute says so when it takes the job.
"""

from __future__ import annotations

from typing import ClassVar

from dstack.models import JobSpec, RepoSnapshot
from dstack.providers.base import Provider, expect, job_spec
from dstack.spec.models import DockerWorkflow, Workflow


class DockerProvider(Provider):
    name: ClassVar[str] = "docker"

    def build_jobs(
        self,
        workflow: Workflow,
        *,
        run_name: str,
        repo: RepoSnapshot,
        args: list[str],
        submitted_at: float,
    ) -> list[JobSpec]:
        docker = expect(workflow, DockerWorkflow, self.name)
        job = job_spec(
            docker,
            run_name=run_name,
            repo=repo,
            args=args,
            submitted_at=submitted_at,
            commands=docker.commands,
            image=docker.image,
        )
        return [job]
