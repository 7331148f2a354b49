"""Making a job's world before its commands run: the working directory from the code
(placed by ``dstack.runner.code``), the Python environment, and the environment variables."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from dstack import pythons
from dstack.errors import RunnerError
from dstack.models import FROM_HOST, JobSpec
from dstack.runner.code import CodeReport
from dstack.runner.logs import LogSink
from dstack.storage.base import Storage

#: Variables of this machine every job gets (when set here): what programs need to find
#: their way (PATH, HOME, USER, locale, terminal, temp folder, time zone), the proxies that
#: reach the network, the GPU driver's, and the AWS region (not a credential; a cloud
#: instance sets it for the SDKs a job uses). Nothing else of the host's environment (cloud
#: credentials, tokens, the runner's own settings) reaches a job unless the workflow names it.
HOST_VARIABLES = frozenset(
    {
        "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TERM", "TZ", "TMPDIR",
        "http_proxy", "https_proxy", "no_proxy", "all_proxy", "ftp_proxy",
        "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "FTP_PROXY",
        "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES",
        "AWS_REGION", "AWS_DEFAULT_REGION",
    }
)  # fmt: skip
HOST_PREFIXES = ("LC_",)


def fetch_code(
    storage: Storage, spec: JobSpec, repo_dir: Path, cache_dir: Path, sink: LogSink
) -> CodeReport:
    """Place the run's code in ``repo_dir`` (fresh), verified, through the machine's checkout
    of the code tree (``dstack.runner.code``); a long placement says so in the job's log."""
    from dstack.runner.code import place_code

    return place_code(
        storage, spec, repo_dir, cache_dir, notice=lambda text: sink.line(f"[dstack] {text}")
    )


def prepare_python(
    spec: JobSpec, job_dir: Path, workdir: Path, cache_dir: Path, sink: LogSink
) -> dict[str, str]:
    """Make the job's virtualenv; return the variables that put it first on PATH."""
    interpreter = pythons.find_interpreter(spec.python, cache_dir)
    if int(interpreter.short.split(".")[0]) < 3:
        raise RunnerError(f"python: {spec.python}: Python 2 is not supported")
    requirements = None
    if spec.requirements:
        req_path = workdir / spec.requirements
        try:
            requirements = req_path.read_bytes()
        except OSError:
            raise RunnerError(
                f"requirements: {spec.requirements} does not exist in the working directory"
            ) from None
    key = requirements
    if spec.packages:  # a provider's own packages (jupyterlab==4.2.5) are part of the env's key
        key = (requirements or b"") + b"\0packages:" + "\n".join(spec.packages).encode()
    base = pythons.base_env_dir(interpreter, key, cache_dir)
    with _locked(base.with_suffix(".lock")):
        if not pythons.base_env_ready(base):
            _build_base_env(interpreter, base, workdir, spec.requirements, sink, spec.packages)
    venv = job_dir / "venv"
    pythons.make_job_venv(interpreter, venv, base)
    return {
        "VIRTUAL_ENV": str(venv),
        "PATH_PREFIX": os.pathsep.join([str(venv / "bin"), str(base / "bin")]),
    }


def job_environment(
    spec: JobSpec,
    python_env: dict[str, str],
    ports: list[int],
    attempt: int = 1,
    host: dict[str, str] | None = None,
) -> dict[str, str]:
    """The job's variables: a clean base from this machine (:data:`HOST_VARIABLES`, ``LC_*``),
    the Python environment first on PATH, dstack's own, the ports, then the workflow's ``env``
    (a bare name there takes this machine's value). The runner's own Python and settings, and
    every other variable of ``host`` (default: this process's environment), stay out."""
    host = dict(os.environ) if host is None else host
    env = {k: v for k, v in host.items() if k in HOST_VARIABLES or k.startswith(HOST_PREFIXES)}
    env.setdefault("HOME", str(Path.home()))
    path = env.get("PATH", os.defpath).split(os.pathsep)
    own_bin = str(Path(sys.executable).parent)
    path = [p for p in path if p and p != own_bin]
    prefix = python_env.get("PATH_PREFIX")
    env["PATH"] = os.pathsep.join(([prefix] if prefix else []) + path)
    if "VIRTUAL_ENV" in python_env:
        env["VIRTUAL_ENV"] = python_env["VIRTUAL_ENV"]
    repo_owner, repo_name = spec.repo.owner_and_name
    env.update(
        {  # keep in step with DSTACK_VARIABLES
            "RUN_NAME": spec.run_name,
            "JOB_ID": spec.job_id,
            "JOB_INDEX": str(spec.job_index),
            "WORKFLOW_NAME": spec.workflow,
            "REPO_ID": spec.repo.repo_id,
            "REPO_USER_NAME": repo_owner,
            "REPO_NAME": repo_name,
            "REPO_BRANCH": spec.repo.branch or "",
            "REPO_HASH": spec.repo.commit or "",
            "PYTHONUNBUFFERED": "1",
            "DSTACK_ATTEMPT": str(attempt),
        }
    )
    for i, port in enumerate(ports):
        env[f"PORT_{i}"] = str(port)
        env[f"JOB_PORT_{i}"] = str(port)
    for key, value in spec.env.items():
        if value != FROM_HOST:
            env[key] = value
        elif key in host:
            env[key] = host[key]
    return env


DSTACK_VARIABLES = frozenset(
    {
        "RUN_NAME", "JOB_ID", "JOB_INDEX", "WORKFLOW_NAME", "REPO_ID", "REPO_USER_NAME",
        "REPO_NAME", "REPO_BRANCH", "REPO_HASH", "PYTHONUNBUFFERED", "DSTACK_ATTEMPT",
        "DSTACK_METRICS",
    }
)  # fmt: skip
"""The variables dstack sets for every job (besides PORT_i and JOB_PORT_i; ``DSTACK_METRICS``
is set by the runner, ``runner.metrics``)."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on this machine right now — or, on a cloud instance
    whose security group opens fixed ports, the first ``count`` of ``DSTACK_RUNNER_PORTS``."""
    fixed = [int(p) for p in os.environ.get("DSTACK_RUNNER_PORTS", "").split(",") if p.strip()]
    if count and len(fixed) >= count:
        return fixed[:count]
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def write_script(spec: JobSpec, job_dir: Path) -> Path:
    """The job's shell script: the run's arguments as data, then setup, then commands,
    stopping at the first failure (a docker job's script runs in the image's ``sh``)."""
    shell = "sh" if spec.image else "bash"
    lines = ["set -e", script_header(spec.args, shell), *spec.setup, *spec.commands]
    script = job_dir / "job.sh"
    script.write_text("\n".join(lines) + "\n")
    return script


def script_header(args: list[str], shell: str = "bash") -> str:
    """The script line that hands the run's arguments to the shell as data: the array
    ``DSTACK_RUN_ARGS`` for bash, the positional parameters for ``sh``. The references
    ``${{ run.args }}`` became (``dstack.providers.shellargs``) expand them without re-parsing."""
    if shell == "sh":
        return "set -- " + shlex.join(args) if args else "set --"
    return f"DSTACK_RUN_ARGS=({shlex.join(args)})"


def _build_base_env(
    interpreter: pythons.Interpreter,
    base: Path,
    workdir: Path,
    requirements: str | None,
    sink: LogSink,
    packages: list[str] | None = None,
) -> None:
    """A venv with pip, the requirements and the provider's ``packages`` (one pip resolve),
    keyed by their text. pip runs in the job's working directory, so relative paths in the file
    mean what the user meant."""
    if base.exists():
        shutil.rmtree(base)
    print(f"preparing a Python {interpreter.version} environment in {base}", file=sys.stderr)
    sink.line(  # the first run's slow phase, shown by the attached CLI
        f"[dstack] building the Python {interpreter.version} environment (once per machine "
        "for this Python and requirements; later runs reuse it)"
    )
    _run_logged(
        [interpreter.path, "-m", "venv", str(base)], sink, "cannot create a virtualenv", workdir
    )
    if requirements or packages:
        files = ["-r", requirements] if requirements else []
        pip = [str(base / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
        what = ", ".join([*(packages or []), *(["requirements"] if requirements else [])])
        sink.line(f"[dstack] installing {what}")
        _run_logged([*pip, *files, *(packages or [])], sink, f"installing {what} failed", workdir)
    pythons.mark_base_env_ready(base)


def _run_logged(cmd: list[str], sink: LogSink, what: str, cwd: Path) -> None:
    from dstack.runner import pip_errors

    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    tail = b""
    while chunk := os.read(fd, 65536):
        sink.write(chunk)
        tail = (tail + chunk)[-16384:]
    proc.stdout.close()
    if proc.wait() != 0:
        why = pip_errors.explain(tail)
        if why:
            raise RunnerError(f"{what}: {why}")
        raise RunnerError(f"{what} (exit code {proc.returncode}); see the log above")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def job_paths(spec: JobSpec, root: Path) -> tuple[Path, Path]:
    """(job folder, repo folder) for this job under ``root``."""
    safe_repo = spec.repo.repo_id.replace("/", "_")
    job_dir = root / safe_repo / spec.job_id
    return job_dir, job_dir / "repo"
