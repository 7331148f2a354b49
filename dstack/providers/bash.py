"""The ``bash`` provider: the workflow's commands, run in one shell, in a virtualenv.

Run arguments reach the commands only through ``${{ run.args }}``; without it they are ignored,
as in 2022. ``requirements`` is passed on for the runner to install; it is not a command here.
"""

from __future__ import annotations

from typing import ClassVar

from dstack.models import JobSpec, RepoSnapshot
from dstack.providers.base import Provider, expect, job_spec
from dstack.spec.models import BashWorkflow, Workflow


class BashProvider(Provider):
    name: ClassVar[str] = "bash"

    def build_jobs(
        self,
        workflow: Workflow,
        *,
        run_name: str,
        repo: RepoSnapshot,
        args: list[str],
        submitted_at: float,
    ) -> list[JobSpec]:
        bash = expect(workflow, BashWorkflow, self.name)
        job = job_spec(
            bash,
            run_name=run_name,
            repo=repo,
            args=args,
            submitted_at=submitted_at,
            commands=bash.commands,
            python=bash.python,
            requirements=bash.requirements,
        )
        return [job]
