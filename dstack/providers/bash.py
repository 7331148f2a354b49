"""The ``bash`` provider: the workflow's commands, run in one shell, in a virtualenv.

Run arguments reach the commands only through ``${{ run.args }}``; without it they are ignored,
as in 2022. ``requirements`` is passed on for the runner to install; it is not a command here.
"""

from __future__ import annotations

from typing import ClassVar

from dstack.models import JobSpec
from dstack.providers.base import Provider, RunInput, expect, job_spec
from dstack.spec.models import BashWorkflow


class BashProvider(Provider):
    name: ClassVar[str] = "bash"

    def build_jobs(self, run: RunInput) -> list[JobSpec]:
        bash = expect(run.workflow, BashWorkflow, self.name)
        job = job_spec(
            bash,
            run=run,
            commands=bash.commands,
            python=bash.python,
            requirements=bash.requirements,
        )
        return [job]
