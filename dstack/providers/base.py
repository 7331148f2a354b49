"""The provider seam (a workflow in, job specs out) and what every provider shares.

Providers are pure: they read nothing, start nothing and check nothing about the machine (a
Docker engine, a Python version); the compute and the runner do that. Given the same inputs they
return equal job specs, so the CLI may build a run twice (once with a placeholder name to
validate, then with the real one).

Substitutions: ``${{ run.args }}`` becomes the run's arguments joined with shell quoting, and
``${{ run.name }}`` the run name, in commands, setup, env values and python args (not in
working_dir). In shell text the quoting fits the spot: unquoted, each argument is one shell
word; inside "…" or '…' the arguments are escaped for that quote (see ``substitute_shell``).
"""

from __future__ import annotations

import re
import shlex
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from dstack.errors import SpecError
from dstack.models import Artifact, JobSpec, RepoSnapshot
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
    """Replace ``${{ run.args }}`` (shell-quoted, space-joined) and ``${{ run.name }}``."""
    values = {"run.args": shlex.join(args), "run.name": run_name}
    return EXPRESSION.sub(lambda match: values.get(match.group(1), match.group(0)), text)


def substitute_shell(text: str, *, run_name: str, args: list[str]) -> str:
    """:func:`substitute` for shell text: each word is quoted for where the expression sits.

    Unquoted, ``${{ run.args }}`` becomes ``a 'b c'`` (one shell word per argument); inside
    double quotes it becomes ``a b c`` with ``"$`\\`` escaped; inside single quotes, ``'``
    is escaped. So ``echo "${{ run.args }}"`` prints the arguments as given, never runs them.
    """
    words = {"run.args": args, "run.name": [run_name]}
    pieces: list[str] = []
    end = 0
    for match in EXPRESSION.finditer(text):
        pieces.append(text[end : match.start()])
        value = words.get(match.group(1))
        quote = _quote_at(text, match.start())
        pieces.append(match.group(0) if value is None else _quoted(value, quote))
        end = match.end()
    return "".join(pieces) + text[end:]


def _quote_at(text: str, position: int) -> str:
    """The shell quote open at ``position`` in ``text``: ``'``, ``"`` or ``""`` for none."""
    quote, escaped = "", False
    for char in text[:position]:
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif char in "'\"" and quote in ("", char):
            quote = "" if quote else char
    return quote


def _quoted(words: list[str], quote: str) -> str:
    if quote == '"':
        return " ".join(re.sub(r'(["$`\\])', r"\\\1", word) for word in words)
    if quote == "'":
        return " ".join(word.replace("'", "'\\''") for word in words)
    return shlex.join(words)


def expect(workflow: Workflow, model: type[W], provider: str) -> W:
    """``workflow`` as ``model``, or SpecError if it is for another provider."""
    if not isinstance(workflow, model):
        raise SpecError(
            f"workflow {workflow.name!r} uses provider {workflow.provider!r}, not {provider!r}"
        )
    return workflow


def job_spec(
    workflow: WorkflowBase,
    *,
    run: RunInput,
    commands: list[str],
    **fields: Any,
) -> JobSpec:
    """Job 0 of a run: the fields every provider fills the same way, plus ``fields``."""

    run_name, args = run.run_name, run.args

    def shell(text: str) -> str:
        return substitute_shell(text, run_name=run_name, args=args)

    return JobSpec(
        run_name=run_name,
        job_index=0,
        workflow=workflow.name,
        provider=workflow.provider,
        repo=run.repo,
        commands=[shell(command) for command in commands],
        setup=[shell(command) for command in workflow.setup],
        env={
            key: substitute(value, run_name=run_name, args=args)
            for key, value in workflow.env.items()
        },
        working_dir=workflow.working_dir,
        artifacts=[Artifact(path=a.path, mount=a.mount) for a in workflow.artifacts],
        ports=workflow.ports or 0,
        resources=workflow.resources.to_resources(),
        retry=workflow.retry.to_policy() if workflow.retry else None,
        deps=[],
        submitted_at=run.submitted_at,
        **fields,
    )
