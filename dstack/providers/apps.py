"""Providers that serve an app on the job's first port: ``lab``, ``notebook``, ``code``
(dev environments) and ``tensorboard``.

Each job gets ``PORT_0`` for its server plus the workflow's ``ports`` as ``PORT_1`` …; the
server binds ``$JOB_BIND_ADDRESS`` (loopback on this machine, every interface on a cloud
instance, whose security group admits only the submitter). A dev environment's server is
protected by ``$JOB_TOKEN``, a random token the runner makes for each attempt (see
``runner.extras``): it is passed through the environment or a file, never on a command line,
and the attached CLI prints the URL that carries it once the port answers.

Jupyter's packages are installed into the job's cached environment (``JobSpec.packages``)
with the workflow's ``requirements``; ``version`` pins them. A VS Code server cannot be
installed from the package registries (code-server's npm package downloads ripgrep binaries
from GitHub in its install script; openvscode-server is released only on GitHub), so ``code``
uses the ``openvscode-server`` or ``code-server`` of the machine, and the compute refuses the
job at submit where there is neither (``AppSpec.needs``).
"""

from __future__ import annotations

import shlex
import shutil
from dataclasses import replace
from typing import ClassVar

from dstack.errors import SpecError
from dstack.models import AppSpec, JobSpec
from dstack.providers.base import Provider, RunInput, expect, job_spec
from dstack.spec.app_models import (
    CodeWorkflow,
    DevEnvironmentBase,
    LabWorkflow,
    NotebookWorkflow,
    TensorboardWorkflow,
)
from dstack.spec.fields import NAME

# Jupyter keeps its runtime files and reads its config from folders of the job, not ~/.jupyter
# (on this machine, a user's own config could set another token or port).
_JUPYTER_DIRS = (
    'export JUPYTER_CONFIG_DIR="$(mktemp -d)" JUPYTER_RUNTIME_DIR="$(mktemp -d)"',
    'export JUPYTER_TOKEN="$JOB_TOKEN"',
)
_JUPYTER_FLAGS = (
    '--no-browser --allow-root --ip="$JOB_BIND_ADDRESS" --port="$PORT_0" --port-retries=0 '
    "--notebook-dir=."
)
VSCODE_SERVERS = ["openvscode-server", "code-server"]
VSCODE_MISSING = (
    "provider code needs a VS Code server on the machine that runs the job: "
    "`openvscode-server` or `code-server` on PATH, and there is none. Neither can be installed "
    "from the package registries (the npm package code-server downloads ripgrep binaries from "
    "GitHub while it installs; its newest releases also need Node.js 24). Install one by hand "
    "(https://github.com/gitpod-io/openvscode-server/releases), or use provider lab"
)


def missing_server(job: JobSpec) -> str | None:
    """What this machine lacks to run ``job``'s app (its ``needs``), in words; None if nothing.
    For the compute's check at submit: providers themselves look at no machine."""
    for app in job.apps:
        if app.needs and not any(shutil.which(name) for name in app.needs):
            if app.name == "code":
                return VSCODE_MISSING
            return f"provider {job.provider} needs {' or '.join(app.needs)} on PATH: none is"
    return None


#: the apps that are dev environments: stopped after ``DEFAULT_MAX_IDLE`` seconds nobody used
#: them, unless the workflow's ``max_idle`` says otherwise (``dstack.runner.idle``)
DEV_ENVIRONMENTS = ("lab", "notebook", "code")
DEFAULT_MAX_IDLE = 3600.0


class _AppProvider(Provider):
    """One job: the workflow's setup, then the app's server in the foreground."""

    def _job(
        self,
        workflow: DevEnvironmentBase | TensorboardWorkflow,
        *,
        run: RunInput,
        commands: list[str],
        app: AppSpec,
        packages: list[str],
        **fields: object,
    ) -> JobSpec:
        if app.name in DEV_ENVIRONMENTS:
            fields.setdefault("default_max_idle", DEFAULT_MAX_IDLE)
        job = job_spec(
            workflow, run=run,
            commands=[], python=workflow.python, packages=packages, apps=[app], **fields,
        )  # fmt: skip
        return job.model_copy(update={"commands": commands, "ports": 1 + (workflow.ports or 0)})


def _pinned(package: str, version: str | None) -> list[str]:
    return [f"{package}=={version}" if version else package]


class _JupyterProvider(_AppProvider):
    """Jupyter's ``lab`` or ``notebook`` server, ``jupyter <name>``, pinned to the workflow's
    ``version`` when it gives one."""

    workflow_type: ClassVar[type[LabWorkflow] | type[NotebookWorkflow]]
    url_path: ClassVar[str]
    package: ClassVar[str]

    def build_jobs(self, run: RunInput) -> list[JobSpec]:
        jupyter = expect(run.workflow, self.workflow_type, self.name)
        app = AppSpec(name=self.name, url_path=self.url_path, token_param="token")
        commands = [*_JUPYTER_DIRS, f"exec jupyter {self.name} {_JUPYTER_FLAGS}"]
        return [
            self._job(
                jupyter, run=run,
                commands=commands, app=app, packages=_pinned(self.package, jupyter.version),
                requirements=jupyter.requirements,
            )
        ]  # fmt: skip


class LabProvider(_JupyterProvider):
    name: ClassVar[str] = "lab"
    workflow_type = LabWorkflow
    url_path = "/lab"
    package = "jupyterlab"


class NotebookProvider(_JupyterProvider):
    name: ClassVar[str] = "notebook"
    workflow_type = NotebookWorkflow
    url_path = "/tree"
    package = "notebook"


class CodeProvider(_AppProvider):
    name: ClassVar[str] = "code"

    def build_jobs(self, run: RunInput) -> list[JobSpec]:
        code = expect(run.workflow, CodeWorkflow, self.name)
        app = AppSpec(name="code", url_path="/", token_param="tkn", needs=VSCODE_SERVERS)
        return [
            self._job(
                code, run=run,
                commands=vscode_commands(code.version), app=app, packages=[],
                requirements=code.requirements,
            )
        ]  # fmt: skip


def vscode_commands(version: str | None) -> list[str]:
    """Start whichever VS Code server the machine has, checking its version if one is asked."""
    check = ""
    if version:
        wanted = shlex.quote(version)
        check = (
            f'found="$("$server" --version | head -n 1 | cut -d " " -f 1)"; '
            f'if [ "$found" != {wanted} ]; then echo "[dstack] $server is $found; the workflow '
            f'asks for version "{wanted} >&2; exit 1; fi; '
        )
    return [
        'server="$(command -v openvscode-server || command -v code-server || true)"',
        'if [ -z "$server" ]; then echo "[dstack] no VS Code server on this machine: put '
        'openvscode-server or code-server on PATH" >&2; exit 127; fi',
        check + 'if [ "$(basename "$server")" = openvscode-server ]; then '
        'tokens="$(mktemp)"; printf %s "$JOB_TOKEN" > "$tokens"; '
        'exec "$server" --host "$JOB_BIND_ADDRESS" --port "$PORT_0" '
        '--connection-token-file "$tokens" --default-folder "$PWD"; fi',
        'PASSWORD="$JOB_TOKEN" exec "$server" --bind-addr "$JOB_BIND_ADDRESS:$PORT_0" '
        '--auth password --disable-telemetry "$PWD"',
    ]


class TensorboardProvider(_AppProvider):
    name: ClassVar[str] = "tensorboard"

    def build_jobs(self, run: RunInput) -> list[JobSpec]:
        board = expect(run.workflow, TensorboardWorkflow, self.name)
        runs = list(dict.fromkeys([*board.runs, *run.args]))
        if not runs:
            raise SpecError(
                f"workflow {board.name!r}: no runs to show: `dstack run tensorboard RUN…`, "
                "or `runs:` in the workflow"
            )
        for name in runs:
            if not NAME.match(name):
                raise SpecError(f"tensorboard: {name!r} is not a run name")
        if board.logdir:
            spec = ",".join(f"{run}:$RUNS_DIR/{run}/{board.logdir}" for run in runs)
            logdir = f'--logdir_spec "{spec}"'
        else:
            logdir = '--logdir "$RUNS_DIR"'
        command = f'exec tensorboard {logdir} --port "$PORT_0" --host "$JOB_BIND_ADDRESS"'
        return [
            self._job(
                board, run=replace(run, args=[]),
                commands=[command], app=AppSpec(name="tensorboard"),
                packages=_pinned("tensorboard", board.version), watch_runs=runs,
            )
        ]  # fmt: skip
