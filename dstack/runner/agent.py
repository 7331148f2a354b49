"""The lifecycle of one job, the same on this machine and on a cloud instance.

read spec → ``provisioning`` (code, Python env, ports) → ``running`` (setup + commands, output
to log chunks, artifacts synced as they change) → ``uploading`` (last artifact sync) → ``done``
or ``failed`` with the exit code; a stop request gives ``stopping → stopped`` (artifacts
saved), an abort gives ``aborted`` (nothing saved). An error before the commands start is
written to the job's log and recorded as ``failed`` with its reason, never swallowed.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import traceback
from pathlib import Path

from dstack import processes, state
from dstack.backends.base import Storage
from dstack.errors import DstackError, StorageError
from dstack.models import JobSpec, JobState, JobStatus
from dstack.runner import docker, prepare
from dstack.runner.executor import JobProcess, exit_code_of
from dstack.runner.logs import LogSink
from dstack.runner.sync import ArtifactSync

FINAL_WRITE_DEADLINE = 600.0


class Agent:
    def __init__(
        self,
        storage: Storage,
        spec: JobSpec,
        *,
        work_root: Path,
        cache_dir: Path,
        keep_workdir: bool = False,
    ) -> None:
        self.storage = storage
        self.spec = spec
        self.work_root = work_root
        self.cache_dir = cache_dir
        self.keep_workdir = keep_workdir
        self.owner = state.read_run(storage, spec.repo.repo_id, spec.run_name).owner.display
        self.state = JobState(
            hostname=socket.gethostname(),
            runner_pid=os.getpid(),
            runner_started=processes.start_ticks(os.getpid()),
        )
        self.stop_poll = max(0.2, storage.log_flush_interval * 4)
        self.artifact_interval = max(1.0, storage.log_flush_interval * 20)
        self._beating = threading.Event()

    def run(self) -> JobState:
        job_dir, repo_dir = prepare.job_paths(self.spec, self.work_root)
        sink = LogSink(self.storage, self.spec).start()
        heart = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        self._set(JobStatus.PROVISIONING, started_at=time.time())
        heart.start()
        try:
            self._run(job_dir, repo_dir, sink)
        except DstackError as exc:
            sink.line(f"[dstack] error: {exc}")
            self._finish(sink, JobStatus.FAILED, reason=str(exc))
        except Exception as exc:  # the runner's own bug: recorded, never silent
            sink.write(traceback.format_exc().encode())
            self._finish(sink, JobStatus.FAILED, reason=f"runner crashed: {exc!r}")
        finally:
            self._beating.set()
            if not self.keep_workdir:
                shutil.rmtree(job_dir, ignore_errors=True)
        return self.state

    def _run(self, job_dir: Path, repo_dir: Path, sink: LogSink) -> None:
        if state.stop_requested(self.storage, self.spec):
            self._finish(sink, JobStatus.STOPPED, reason="stopped before it started")
            return
        prepare.fetch_code(self.storage, self.spec, repo_dir, self.cache_dir)
        workdir = repo_dir / self.spec.working_dir
        workdir.mkdir(parents=True, exist_ok=True)
        is_docker = self.spec.image is not None
        python_env = (
            {}
            if is_docker
            else prepare.prepare_python(self.spec, job_dir, workdir, self.cache_dir, sink)
        )
        ports = prepare.free_ports(self.spec.ports)
        env = prepare.job_environment(self.spec, python_env, ports)
        script = prepare.write_script(self.spec, job_dir)
        if state.stop_requested(self.storage, self.spec):
            self._finish(sink, JobStatus.STOPPED, reason="stopped before it started")
            return
        if is_docker:
            variables = docker.container_variables(self.spec, env)
            argv = docker.docker_command(self.spec, repo_dir, script, variables, ports)
            process = JobProcess(
                script, workdir, env, sink, argv=argv,
                on_kill=lambda: docker.remove_container(self.spec),
            )  # fmt: skip
        else:
            process = JobProcess(script, workdir, env, sink)
        self._set(JobStatus.RUNNING, process_group=process.pgid, ports=ports)
        artifacts = ArtifactSync(self.storage, self.spec, repo_dir, self.artifact_interval).start()
        request = self._watch(process)
        if request == "abort":
            process.kill()
            artifacts.stop()
            self._finish(sink, JobStatus.ABORTED, reason="aborted by request")
            return
        if request == "stop":
            self._set(JobStatus.STOPPING)
            process.terminate()
        code = exit_code_of(process.wait())
        artifacts.stop()
        if self.spec.artifacts:
            self._set(JobStatus.UPLOADING)
            self._final_sync(artifacts, sink)
        if request == "stop":
            self._finish(sink, JobStatus.STOPPED, reason="stopped by request", exit_code=code)
        elif code == 0:
            self._finish(sink, JobStatus.DONE, exit_code=0)
        else:
            self._finish(sink, JobStatus.FAILED, reason=f"exit code {code}", exit_code=code)

    def _watch(self, process: JobProcess) -> str | None:
        """Wait for the job to exit or for a stop request; return the request, if any."""
        while process.poll() is None:
            try:
                request = state.stop_requested(self.storage, self.spec)
            except StorageError:
                request = None
            if request:
                return request
            try:
                process.wait(self.stop_poll)
            except Exception:
                continue
        return None

    def _final_sync(self, artifacts: ArtifactSync, sink: LogSink) -> None:
        deadline = time.monotonic() + FINAL_WRITE_DEADLINE
        delay = 0.5
        while not artifacts.sync_once():
            if time.monotonic() > deadline:
                sink.line("[dstack] error: some artifacts could not be saved to the store")
                return
            time.sleep(delay)
            delay = min(delay * 2, 10.0)

    def _finish(
        self,
        sink: LogSink,
        status: JobStatus,
        *,
        reason: str | None = None,
        exit_code: int | None = None,
    ) -> None:
        sink.close(deadline=FINAL_WRITE_DEADLINE)
        self._set(status, reason=reason, exit_code=exit_code, finished_at=time.time())

    def _set(self, status: JobStatus, **fields: object) -> None:
        """Record a new state; a final state is retried until the store takes it."""
        self.state = self.state.model_copy(
            update={"status": status, "updated_at": time.time(), **fields}
        )
        deadline = time.monotonic() + (FINAL_WRITE_DEADLINE if status.is_finished else 30.0)
        delay = 0.2
        while True:
            try:
                state.write_job_state(self.storage, self.spec, self.owner, self.state)
                return
            except StorageError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _heartbeat(self) -> None:
        while True:
            try:
                state.beat(self.storage, self.spec)
            except StorageError:
                pass
            if self._beating.wait(state.HEARTBEAT_INTERVAL):
                return
