"""``LocalCompute``: jobs run on this machine, each under a detached runner process.

The runner is started in its own session, so it survives the CLI that started it (closing the
terminal or Ctrl+C on an attached `dstack run` does not stop the job). It talks to the CLI
only through the state store.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

from dstack import processes, pythons, settings
from dstack.compute.base import Compute
from dstack.errors import ComputeError
from dstack.models import JobSpec, JobState, RunRecord
from dstack.storage.base import Storage
from dstack.store_config import dump_store


class LocalCompute(Compute):
    name = "local"

    def check(self, jobs: list[JobSpec]) -> None:
        for job in jobs:
            resources = job.resources
            if resources.gpu_count and not has_gpu():
                raise ComputeError(
                    f"workflow '{job.workflow}': resources.gpu asks for {resources.gpu_count} "
                    "GPU(s) but this machine has none (nvidia-smi sees no GPU); "
                    "drop `gpu` or run it on a cloud backend"
                )
            cpus = os.cpu_count() or 1
            if resources.cpu and resources.cpu > cpus:
                raise ComputeError(
                    f"workflow '{job.workflow}': resources.cpu asks for {resources.cpu} CPUs "
                    f"but this machine has {cpus}"
                )
            memory = _total_memory_mib()
            if resources.memory_mib and memory and resources.memory_mib > memory:
                raise ComputeError(
                    f"workflow '{job.workflow}': resources.memory asks for "
                    f"{resources.memory_mib}MiB but this machine has {memory}MiB"
                )
            if job.image is not None and not docker_reachable():
                raise ComputeError(
                    f"workflow '{job.workflow}': provider docker needs a Docker engine, and none "
                    "is reachable here (DOCKER_HOST or /var/run/docker.sock); start Docker, "
                    "or use provider bash"
                )
            if job.apps:
                from dstack.providers.apps import missing_server

                if problem := missing_server(job):
                    raise ComputeError(f"workflow '{job.workflow}': {problem}")
            pythons.find_interpreter(job.python, settings.cache_dir())

    def start(self, storage: Storage, run: RunRecord, jobs: list[JobSpec]) -> None:
        """Start each job detached, one supervised runner per job (see ``_start_one``)."""
        for job in jobs:
            try:
                self._start_one(storage, job)
            except ComputeError as exc:
                exc.job_indices = [job.job_index]
                raise

    def _start_one(self, storage: Storage, job: JobSpec) -> None:
        """Start the job detached. On POSIX the CLI forks a supervisor from itself (it has
        already imported everything the runner needs, which saves a Python start-up per run);
        the supervisor forks the runner, which runs exactly what ``python -m dstack.runner``
        runs, and outlives it to record a killed runner and start retry attempts."""
        log_dir = settings.runner_log_dir()
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{job.repo.repo_id.replace('/', '_')}.{job.job_id}.log"
        if hasattr(os, "fork"):
            self._fork_runner(storage, job, log_path)
            return
        cmd = [
            sys.executable, "-m", "dstack.runner",
            "--storage", dump_store(storage.config()),
            "--repo", job.repo.repo_id,
            "--run", job.run_name,
            "--job", str(job.job_index),
        ]  # fmt: skip
        try:
            with open(log_path, "ab") as log:
                subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                    cwd=str(settings.dstack_home()),
                )
        except OSError as exc:
            raise ComputeError(f"cannot start the runner: {exc}") from exc

    def _fork_runner(self, storage: Storage, job: JobSpec, log_path: Path) -> None:
        config = storage.config()
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as exc:
            raise ComputeError(f"cannot start the runner: {exc}") from exc
        if pid:
            os.waitpid(pid, 0)  # the intermediate child exits at once; the runner is orphaned
            return
        code = 1
        try:
            os.setsid()
            if os.fork():
                os._exit(0)
            _redirect_stdio(log_path)
            os.chdir(settings.dstack_home())
            from dstack.runner.supervisor import supervise

            code = supervise(config, job.repo.repo_id, job.run_name, job.job_index)
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)

    def is_alive(self, state: JobState) -> bool | None:
        """Alive while the job's supervisor or its runner is (the supervisor records what
        happens to a runner that dies)."""
        if state.hostname != socket.gethostname():
            return None
        if state.supervisor_pid and processes.is_alive(
            state.supervisor_pid, state.supervisor_started
        ):
            return True
        if not state.runner_pid:
            return None if not state.supervisor_pid else False
        return processes.is_alive(state.runner_pid, state.runner_started)

    def kill(self, state: JobState) -> None:
        if state.hostname != socket.gethostname():
            return
        if state.process_group:
            try:
                os.killpg(state.process_group, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if state.runner_pid and processes.is_alive(state.runner_pid, state.runner_started):
            try:
                os.kill(state.runner_pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _redirect_stdio(log_path: Path) -> None:
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(devnull)


def has_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def docker_reachable() -> bool:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return shutil.which("docker") is not None and _docker_info_ok()
    path = host[len("unix://") :]
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(1.0)
            s.connect(path)
        return True
    except OSError:
        return False


def _docker_info_ok() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _total_memory_mib() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError):
        return None
    return None
