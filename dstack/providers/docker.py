"""The ``docker`` provider: commands run inside an image.

With no commands the job runs the image's own default command (its ENTRYPOINT/CMD), and run
arguments are ignored unless a command uses ``${{ run.args }}``. Whether a Docker engine is
there is not checked here: the compute says so when it takes the job.
"""

from __future__ import annotations

from typing import ClassVar

from dstack.models import JobSpec
from dstack.providers.base import Provider, RunInput, expect, job_spec
from dstack.spec.models import DockerWorkflow


class DockerProvider(Provider):
    name: ClassVar[str] = "docker"

    def build_jobs(self, run: RunInput) -> list[JobSpec]:
        docker = expect(run.workflow, DockerWorkflow, self.name)
        job = job_spec(
            docker,
            run=run,
            commands=docker.commands,
            image=docker.image,
        )
        return [job]
