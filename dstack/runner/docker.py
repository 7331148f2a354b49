"""Running a `docker` provider job: the `docker run` command line, and cleaning up after it.

The job's code is mounted at ``/workflow``; the job script at ``/dstack/job.sh``; the folder of
its ``$DSTACK_METRICS`` file at ``/dstack/metrics``. Variables are
passed by name (``-e NAME``) so their values never appear in the process list. Only the
workflow's and dstack's variables cross into the container, not this machine's environment.
"""

from __future__ import annotations

import posixpath
import subprocess
from pathlib import Path

from dstack.models import JobSpec

WORKFLOW_MOUNT = "/workflow"
SCRIPT_MOUNT = "/dstack/job.sh"
METRICS_MOUNT = "/dstack/metrics"


def container_name(spec: JobSpec) -> str:
    return f"dstack-{spec.job_id}"


def docker_command(
    spec: JobSpec,
    repo_dir: Path,
    script: Path,
    variables: list[str],
    ports: list[int],
    *,
    metrics_dir: Path | None = None,
) -> list[str]:
    """The `docker run` argv for ``spec``; ``variables`` are names forwarded from the env;
    ``metrics_dir``, the folder of the job's ``$DSTACK_METRICS``, is mounted at
    :data:`METRICS_MOUNT` for the runner to follow."""
    assert spec.image is not None
    resources = spec.resources
    cmd = [
        "docker", "run", "--rm", "--init",
        "--name", container_name(spec),
        "-v", f"{repo_dir}:{WORKFLOW_MOUNT}",
        "-v", f"{script}:{SCRIPT_MOUNT}:ro",
        "-w", posixpath.join(WORKFLOW_MOUNT, spec.working_dir),
    ]  # fmt: skip
    if metrics_dir is not None:
        cmd += ["-v", f"{metrics_dir}:{METRICS_MOUNT}"]
    for name in sorted(variables):
        cmd += ["-e", name]
    for port in ports:
        cmd += ["-p", f"{port}:{port}"]
    if resources.shm_size_mib:
        cmd += ["--shm-size", f"{resources.shm_size_mib}m"]
    if resources.cpu:
        cmd += ["--cpus", str(resources.cpu)]
    if resources.memory_mib:
        cmd += ["--memory", f"{resources.memory_mib}m"]
    if resources.gpu_count:
        cmd += ["--gpus", str(resources.gpu_count)]
    cmd.append(spec.image)
    if spec.commands or spec.setup:
        cmd += ["sh", SCRIPT_MOUNT]
    return cmd


def container_variables(spec: JobSpec, env: dict[str, str]) -> list[str]:
    """The names of the variables a container gets: dstack's and the workflow's, not the host's."""
    from dstack.runner.prepare import DSTACK_VARIABLES

    return [
        name
        for name in env
        if name in spec.env or name in DSTACK_VARIABLES or name.startswith(("PORT_", "JOB_PORT_"))
    ]


def remove_container(spec: JobSpec) -> None:
    """Kill and remove the job's container; idempotent."""
    try:
        subprocess.run(
            ["docker", "rm", "-f", container_name(spec)],
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        pass
