"""The `docker run` command a docker-provider job becomes (no engine needed to check it)."""

from __future__ import annotations

from pathlib import Path

from dstack.models import JobSpec, RepoSnapshot, Resources
from dstack.runner.docker import container_variables, docker_command
from dstack.runner.prepare import job_environment

REPO = RepoSnapshot(repo_id="github.com/acme/mnist", code_key="codes/x.tar.gz")


def spec(**fields: object) -> JobSpec:
    base: dict[str, object] = {
        "run_name": "bold-owl-1",
        "workflow": "train",
        "provider": "docker",
        "repo": REPO,
        "image": "ubuntu:22.04",
        "commands": ["echo hi"],
        "env": {"TOKEN": "s3cret"},
        "working_dir": "src",
    }
    base.update(fields)
    return JobSpec.model_validate(base)


def test_command_mounts_code_and_script_and_forwards_variables_by_name() -> None:
    job = spec(resources=Resources(cpu=2, memory_mib=4096, gpu_count=1, shm_size_mib=1024))
    env = job_environment(job, {}, [8080])
    names = container_variables(job, env)
    cmd = docker_command(job, Path("/jobs/x/repo"), Path("/jobs/x/job.sh"), names, [8080])
    assert cmd[:4] == ["docker", "run", "--rm", "--init"]
    assert "/jobs/x/repo:/workflow" in cmd and "/jobs/x/job.sh:/dstack/job.sh:ro" in cmd
    assert cmd[cmd.index("-w") + 1] == "/workflow/src"
    forwarded = {cmd[i + 1] for i, a in enumerate(cmd) if a == "-e"}
    assert {"TOKEN", "RUN_NAME", "PORT_0", "PYTHONUNBUFFERED"} <= forwarded
    assert "PATH" not in forwarded and "HOME" not in forwarded  # the host's env stays out
    assert "s3cret" not in " ".join(cmd)  # values never on the command line
    assert cmd[cmd.index("-p") + 1] == "8080:8080"
    assert cmd[cmd.index("--gpus") + 1] == "1"
    assert cmd[cmd.index("--shm-size") + 1] == "1024m"
    assert cmd[-3:] == ["ubuntu:22.04", "sh", "/dstack/job.sh"]


def test_no_commands_runs_the_images_own_command() -> None:
    job = spec(commands=[], env={})
    cmd = docker_command(job, Path("/r"), Path("/s"), [], [])
    assert cmd[-1] == "ubuntu:22.04"


def test_the_metrics_folder_is_mounted_and_its_variable_forwarded_by_name() -> None:
    """The runner follows ``$DSTACK_METRICS`` in the job's folder; the container writes it at
    the path the job is given (``runner.metrics.prepare_file``). No engine here: the real
    `docker run` of this command line is left to a machine with Docker."""
    job = spec()
    env = {**job_environment(job, {}, []), "DSTACK_METRICS": "/dstack/metrics/metrics.jsonl"}
    cmd = docker_command(
        job, Path("/jobs/x/repo"), Path("/jobs/x/job.sh"), container_variables(job, env), [],
        metrics_dir=Path("/jobs/x/metrics"),
    )  # fmt: skip
    assert "/jobs/x/metrics:/dstack/metrics" in cmd
    assert "DSTACK_METRICS" in {cmd[i + 1] for i, a in enumerate(cmd) if a == "-e"}
    assert cmd.index("/jobs/x/metrics:/dstack/metrics") < cmd.index(job.image or "")
