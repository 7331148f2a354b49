"""The ``python`` provider: ``python FILE ARGS… RUN_ARGS…`` in a virtualenv.

``args`` given as a list are shell-quoted one by one, and a list item that is exactly
``${{ run.args }}`` expands to the run arguments as separate words; ``args`` given as a string
are shell text, used as written (with expressions substituted as in commands). The run arguments are appended at the end unless ``args``
already places them with ``${{ run.args }}``.
"""

from __future__ import annotations

import shlex
from typing import ClassVar

from dstack.models import JobSpec
from dstack.providers.base import (
    RUN_ARGS,
    Provider,
    RunInput,
    expect,
    job_spec,
    substitute,
)
from dstack.spec.app_models import TorchrunWorkflow
from dstack.spec.models import PythonWorkflow

RUN_ARGS_REFERENCE = "${{ run.args }}"  # substituted, as data, with the rest of the script


class PythonProvider(Provider):
    name: ClassVar[str] = "python"

    def build_jobs(self, run: RunInput) -> list[JobSpec]:
        python = expect(run.workflow, PythonWorkflow, self.name)
        job = job_spec(
            python,
            run=run,
            commands=[command_line(python, run_name=run.run_name, args=run.args)],
            python=python.python,
            requirements=python.requirements,
        )
        return [job]


def command_line(
    workflow: PythonWorkflow | TorchrunWorkflow,
    *,
    run_name: str,
    args: list[str],
    launcher: str = "python",
) -> str:
    """The shell command that runs the workflow's file with its and the run's arguments,
    started by ``launcher`` (shell text: ``python``, or a ``torchrun …`` command)."""
    words = [launcher, shlex.quote(workflow.file)]
    if isinstance(workflow.args, str):
        placed = bool(RUN_ARGS.search(workflow.args))
        words.append(workflow.args.strip())  # shell text: substituted with the whole script
    else:
        placed = any(RUN_ARGS.search(item) for item in workflow.args)
        parts: list[str] = []
        for item in workflow.args:
            if RUN_ARGS.fullmatch(item.strip()):
                parts.append(RUN_ARGS_REFERENCE)
            else:
                parts.append(shlex.quote(substitute(item, run_name=run_name, args=args)))
        words.append(" ".join(parts))
    if not placed and args:
        words.append(RUN_ARGS_REFERENCE)
    return " ".join(word for word in words if word)
