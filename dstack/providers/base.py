"""The provider seam (a workflow in, job specs out) and what every provider shares.

Providers are pure: they read nothing, start nothing and check nothing about the machine (a
Docker engine, a Python version); the compute and the runner do that. Given the same inputs they
return equal job specs, so the CLI may build a run twice (once with a placeholder name to
validate, then with the real one).

Substitutions: ``${{ run.name }}`` becomes the run name, and ``${{ run.args }}`` the run's
arguments, in commands, setup, env values and python args (not in working_dir). In shell text
the arguments are never pasted in: the job script hands them to its shell as data and the
expression becomes a reference the shell expands (see :mod:`dstack.providers.shellargs`);
unquoted, each argument is one shell word, inside quotes they are joined by spaces. In env
values (not shell text) they are joined with shell quoting.
"""

from __future__ import annotations

import re
import shlex
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from dstack.errors import SpecError
from dstack.models import Artifact, JobSpec, RepoSnapshot
from dstack.providers.shellargs import check_evaluable, substitute_script
from dstack.spec.models import EXPRESSION, WorkflowBase
from dstack.spec.workflows import Workflow

W = TypeVar("W", bound=WorkflowBase)
RUN_ARGS = re.compile(r"\$\{\{\s*run\.args\s*\}\}")


@dataclass(frozen=True)
class RunInput:
    """One run of a workflow as a provider sees it, prepared once by the services."""

    workflow: Workflow
    run_name: str
    repo: RepoSnapshot
    args: list[str]
    submitted_at: float


class Provider(ABC):
    """Turns one kind of workflow (``name`` is its `provider:` value) into job specs."""

    name: ClassVar[str]

    @abstractmethod
    def build_jobs(self, run: RunInput) -> list[JobSpec]:
        """The jobs of one run of ``run.workflow``, indexed from 0.

        Pure and deterministic (no I/O; equal inputs give equal specs). ``deps`` are left
        empty: they are resolved to runs at submit time, elsewhere. Raises SpecError if the
        workflow belongs to another provider.
        """


def substitute(text: str, *, run_name: str, args: list[str]) -> str:
    """Replace ``${{ run.args }}`` (shell-quoted, space-joined) and ``${{ run.name }}``.
    Arguments bash could evaluate are refused (``shellargs.check_evaluable``): a variable set
    from them may meet bash arithmetic as well as a script."""
    if RUN_ARGS.search(text):
        check_evaluable(args)
    values = {"run.args": shlex.join(args), "run.name": run_name}
    return EXPRESSION.sub(lambda match: values.get(match.group(1), match.group(0)), text)


def substitute_shell(text: str, *, run_name: str, args: list[str], shell: str = "bash") -> str:
    """:func:`substitute` for one piece of shell text: ``${{ run.args }}`` becomes a reference
    to the arguments the job script hands its shell as data (see :mod:`.shellargs`)."""
    return substitute_script([text], run_name=run_name, args=args, shell=shell)[0]


def expect(workflow: Workflow, model: type[W], provider: str) -> W:
    """``workflow`` as ``model``, or SpecError if it is for another provider."""
    if not isinstance(workflow, model):
        raise SpecError(
            f"workflow {workflow.name!r} uses provider {workflow.provider!r}, not {provider!r}"
        )
    return workflow


def max_idle_seconds(key: float | None, default: float | None) -> float | None:
    """The workflow's ``max_idle`` (0: ``off``), else the provider's default; None: off."""
    seconds = default if key is None else key
    return seconds or None


def job_spec(
    workflow: WorkflowBase,
    *,
    run: RunInput,
    commands: list[str],
    **fields: Any,
) -> JobSpec:
    """Job 0 of a run: the fields every provider fills the same way, plus ``fields``."""

    run_name, args = run.run_name, run.args
    shell = "sh" if workflow.provider == "docker" else "bash"
    script = substitute_script(
        [*workflow.setup, *commands],
        run_name=run_name,
        args=args,
        shell=shell,
        where=f"workflow {workflow.name!r}: ",
    )
    return JobSpec(
        run_name=run_name,
        job_index=0,
        workflow=workflow.name,
        provider=workflow.provider,
        repo=run.repo,
        commands=script[len(workflow.setup) :],
        setup=script[: len(workflow.setup)],
        args=list(args),
        env={
            key: substitute(value, run_name=run_name, args=args)
            for key, value in workflow.env.items()
        },
        working_dir=workflow.working_dir,
        artifacts=[Artifact(path=a.path, mount=a.mount) for a in workflow.artifacts],
        ports=workflow.ports or 0,
        resources=workflow.resources.to_resources(),
        retry=workflow.retry.to_policy() if workflow.retry else None,
        max_idle=max_idle_seconds(workflow.max_idle, fields.pop("default_max_idle", None)),
        spot_policy=workflow.market_policy,
        max_price=workflow.max_price,
        max_duration=workflow.max_duration,
        on_demand_after=workflow.on_demand_after,
        deps=[],
        submitted_at=run.submitted_at,
        **fields,
    )
