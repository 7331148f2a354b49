"""The lifecycle of one job, the same on this machine and on a cloud instance.

read spec → ``provisioning`` (code) → ``downloading`` (deps, if any: ``runner.deps``) →
(Python env, ports) → ``running`` (setup + commands, output to log chunks, the points written
to ``$DSTACK_METRICS`` to metric chunks (``runner.metrics``), artifacts synced as they
change) → ``uploading`` (last artifact sync) → ``done`` (a run submitted with ``-t TAG``
is tagged just before) or ``failed`` with the exit code; a stop request gives ``stopping →
stopped`` (artifacts saved), an abort gives ``aborted`` (nothing saved). An error before the
commands start is written to the job's log and recorded as ``failed`` with its reason, never
swallowed. What a job gets beyond its spec — secrets, an app token, the nodes of a multi-node
run, watched runs — and its stop when a sibling node fails are ``runner.extras``'.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from dstack import backoff, processes, state
from dstack.errors import DstackError, StorageError
from dstack.lifecycle import ABORT_REASON, Writer, conclude, move, tag_on_success
from dstack.models import JobSpec, JobState, JobStatus
from dstack.runner import artifact_paths, deps, docker, metrics, prepare, workdirs
from dstack.runner.code import CodeReport, give_back
from dstack.runner.executor import JobProcess, exit_code_of
from dstack.runner.extras import JobExtras
from dstack.runner.idle import IdleWatch, idle_text, tree_cpu_probe
from dstack.runner.logs import LogSink
from dstack.runner.removal import remove_tree
from dstack.runner.sync import ArtifactSync, restore_artifacts
from dstack.storage.base import Storage
from dstack.units import format_size

FINAL_WRITE_DEADLINE = 600.0
T = TypeVar("T")
logger = logging.getLogger(__name__)


class Agent:
    def __init__(
        self,
        storage: Storage,
        spec: JobSpec,
        *,
        work_root: Path,
        cache_dir: Path,
        keep_workdir: bool = False,
        own_machine: bool = False,
    ) -> None:
        self.storage = storage
        #: the machine is the job's alone (a cloud instance): absolute artifact paths of deps
        #: are placed at their own paths (``runner.artifact_paths``)
        self.own_machine = own_machine
        self.spec = spec
        self.work_root = work_root
        self.cache_dir = cache_dir
        self.keep_workdir = keep_workdir
        self.run_record = state.read_run(storage, spec.repo.repo_id, spec.run_name)
        self.owner = self.run_record.owner.display
        before = state.read_job_state(storage, spec.repo.repo_id, spec.run_name, spec.job_index)
        #: the job's record before this runner: a finished job is never run again
        self.before = before
        self.state = JobState(
            hostname=socket.gethostname(),
            runner_pid=os.getpid(),
            runner_started=processes.start_ticks(os.getpid()),
            attempt=before.attempt,
            supervisor_pid=before.supervisor_pid,
            supervisor_started=before.supervisor_started,
        )
        self.stop_poll = max(0.2, storage.log_flush_interval * 4)
        self.artifact_interval = max(1.0, storage.log_flush_interval * 20)
        self._beating = threading.Event()
        #: set from another thread to stop the job as a stop request would: ``"interrupt"``
        #: (the spot instance is being reclaimed) or ``"timeout"`` (the run's time limit)
        self.machine_request: str | None = None
        #: the job's code as placed, given back for the next job when it ends
        self._placed: CodeReport | None = None
        #: ships the points the job writes to ``$DSTACK_METRICS`` while it runs
        self._metrics: metrics.MetricsShipper | None = None
        #: how the runner waits between retries of the store (tests pass one that does not)
        self.sleep: Callable[[float], None] = time.sleep
        #: the clock ``max_idle`` is measured with (tests pass a fake one)
        self.clock: Callable[[], float] = time.monotonic

    def run(self) -> JobState:
        """Run the job's attempt to its end; its final state. A job that is already finished,
        or at a later attempt than this runner's, is left alone (an instance that outlived
        its job must not run it again)."""
        if not self._set(JobStatus.PROVISIONING, started_at=time.time()):
            return self.state
        job_dir, repo_dir = prepare.job_paths(self.spec, self.work_root)
        workdirs.sweep(self.work_root)  # the folders of runners killed with kill -9
        held = workdirs.hold(job_dir)
        if self.keep_workdir:
            (job_dir / workdirs.KEEP).touch()
        # after what is already in the job's output: an earlier attempt's, or the lines the
        # submitter wrote while provisioning (the offers it walked past)
        first_seq = state.next_log_seq(self.storage, self.spec)
        sink = LogSink(self.storage, self.spec, first_seq=first_seq).start()
        self.extras = JobExtras(
            self.storage, self.spec, self.run_record, sink, attempt=self.state.attempt,
            job_dir=job_dir, interval=self.artifact_interval,
        )  # fmt: skip
        heart = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
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
            self.extras.close()
            if not self.keep_workdir:
                # the next job's folder (``runner.recycle``); never a container's: it may hold
                # files of another user, and its processes cannot be seen from here
                if self._placed is not None and self.spec.image is None:
                    give_back(self._placed, repo_dir)
                left = remove_tree(job_dir)  # never across a mount the job left
                if left:
                    print(
                        f"runner: left in the job's folder: {', '.join(left[:5])}", file=sys.stderr
                    )
            workdirs.release(held)
        return self.state

    def _run(self, job_dir: Path, repo_dir: Path, sink: LogSink) -> None:
        if state.stop_requested(self.storage, self.spec):
            self._finish(sink, JobStatus.STOPPED, reason="stopped before it started")
            return
        placed = prepare.fetch_code(self.storage, self.spec, repo_dir, self.cache_dir, sink)
        sink.line(f"[dstack] {placed.describe()}")
        self._placed = placed
        workdir = repo_dir / self.spec.working_dir
        workdir.mkdir(parents=True, exist_ok=True)
        if self.spec.deps or self.state.attempt > 1:
            self._set(JobStatus.DOWNLOADING)
        if self.spec.deps:
            started = time.monotonic()
            self._fetch_deps(workdir, sink)
            sink.line(f"[dstack] deps ready in {time.monotonic() - started:.2f} s")
        restored: dict[str, tuple[int, int]] = {}
        if self.state.attempt > 1:
            restored = restore_artifacts(self.storage, self.spec, repo_dir)
            sink.line(
                f"[dstack] attempt {self.state.attempt}: restored {len(restored)} artifact file(s)"
            )
        absolute = artifact_paths.place_absolute(workdir, own_machine=self.own_machine)
        if absolute:
            sink.line(f"[dstack] {absolute}")
        artifact_paths.make_folders(self.spec, workdir, own_machine=self.own_machine)
        is_docker = self.spec.image is not None
        python_env: dict[str, str] = {}
        if not is_docker:
            started = time.monotonic()
            python_env = prepare.prepare_python(self.spec, job_dir, workdir, self.cache_dir, sink)
            sink.line(f"[dstack] python ready in {time.monotonic() - started:.2f} s")
        ports = prepare.free_ports(self.spec.ports)
        env = prepare.job_environment(self.spec, python_env, ports, self.state.attempt)
        with_extras = self.extras.environment(env, ports)  # secrets, token, nodes: runner.extras
        script = prepare.write_script(self.spec, job_dir)
        if with_extras is None or state.stop_requested(self.storage, self.spec):
            self._finish(sink, JobStatus.STOPPED, reason="stopped before it started")
            return
        metrics_file, seen_as = metrics.prepare_file(job_dir, in_container=is_docker)
        env = {**with_extras, metrics.VARIABLE: seen_as}
        if is_docker:
            variables = docker.container_variables(self.spec, env) + self.extras.names
            argv = docker.docker_command(
                self.spec, repo_dir, script, variables, ports,
                metrics_dir=metrics_file.parent,
            )  # fmt: skip
            process = JobProcess(
                script, workdir, env, sink, argv=argv,
                on_kill=lambda: docker.remove_container(self.spec),
            )  # fmt: skip
        else:
            process = JobProcess(script, workdir, env, sink)
        self._metrics = metrics.MetricsShipper(
            self.storage, self.spec, self.state.attempt, metrics_file, mask=sink.mask_text,
            interval=max(0.5, self.storage.log_flush_interval * 4),
        )  # fmt: skip
        self._metrics.sleep = self.sleep
        self._metrics.start()
        self._set(JobStatus.RUNNING, process_group=process.pgid, ports=ports)
        artifacts = ArtifactSync(
            self.storage, self.spec, repo_dir, self.artifact_interval, synced=restored,
            notice=sink.line,
        ).start()  # fmt: skip
        idle_watch = self._idle_watch(process, sink)
        request = self._watch(process, idle_watch)
        if request == "abort":
            process.kill()
            artifacts.stop()
            self._finish(sink, JobStatus.ABORTED, reason=ABORT_REASON)
            return
        if request == "idle":
            sink.line(f"[dstack] stopped: {_idle_reason(self.spec)}")
        if request in ("stop", "interrupt", "timeout", "sibling", "idle"):
            self._set(JobStatus.STOPPING)
            process.terminate()
        code = exit_code_of(process.wait())
        artifacts.stop()
        for path in artifact_paths.missing(self.spec, workdir):
            sink.line(f"[dstack] warning: artifact {path}: the job wrote nothing there")
        if self.spec.artifacts:
            self._set(JobStatus.UPLOADING)
            self._final_sync(artifacts, sink)
        if request == "interrupt":
            reason = "the spot instance was reclaimed by AWS"
            self._finish(sink, JobStatus.INTERRUPTED, reason=reason, exit_code=code)
        elif request == "timeout":
            reason = "stopped at the run's maximum duration"
            self._finish(sink, JobStatus.STOPPED, reason=reason, exit_code=code)
        elif request == "idle":
            self._finish(sink, JobStatus.STOPPED, reason=_idle_reason(self.spec), exit_code=code)
        elif request == "stop":
            self._finish(sink, JobStatus.STOPPED, reason="stopped by request", exit_code=code)
        elif request == "sibling":  # another node of a multi-node run failed
            self._finish(sink, JobStatus.STOPPED, reason=self.extras.reason, exit_code=code)
        elif code == 0:
            self._tag_if_asked(sink)
            self._finish(sink, JobStatus.DONE, exit_code=0)
        else:
            self._finish(sink, JobStatus.FAILED, reason=f"exit code {code}", exit_code=code)

    def _fetch_deps(self, workdir: Path, sink: LogSink) -> None:
        what = ", ".join(dep.describe() for dep in self.spec.deps)
        sink.line(f"[dstack] deps: fetching {what}")
        report = deps.fetch_deps(self.storage, self.spec, workdir, self.cache_dir)
        sink.line(
            f"[dstack] deps: {what}: {report.files} file(s), {format_size(report.size)}; "
            f"downloaded {format_size(report.downloaded_bytes)}"
        )
        if report.pruned_entries:
            sink.line(
                f"[dstack] deps cache: removed {report.pruned_entries} least recently used "
                f"dependencies ({format_size(report.pruned_bytes)}) to stay under its limit"
            )
        if report.warning:
            sink.line(f"[dstack] warning: {report.warning}")

    def _tag_if_asked(self, sink: LogSink) -> None:
        """``dstack run -t TAG``: tag the run before it shows done (see ``tag_on_success``)."""
        if self.run_record.tag is None:
            return
        try:
            problem = tag_on_success(self.storage, self.run_record, self.spec.job_index)
        except DstackError as exc:
            problem = f"could not tag the run {self.run_record.tag}: {exc}"
        if problem:
            sink.line(f"[dstack] warning: {problem}")

    def _idle_watch(self, process: JobProcess, sink: LogSink) -> IdleWatch | None:
        """What tells when nobody has used the job for its ``max_idle`` (``runner.idle``)."""
        if not self.spec.max_idle:
            return None
        probe = None if self.spec.image is not None else tree_cpu_probe(process.pid)
        if probe is None:
            where = "in a container" if self.spec.image is not None else "on this system"
            sink.line(f"[dstack] max_idle: the job's CPU use cannot be read {where}: not watched")
            return None
        return IdleWatch(self.spec.max_idle, probe, self.clock)

    def _watch(self, process: JobProcess, idle: IdleWatch | None = None) -> str | None:
        """Wait for the job to exit, for a stop request, or for it to be idle for its
        ``max_idle``; return the request (``idle`` for the last), if any."""
        while process.poll() is None:
            if self.machine_request:
                return self.machine_request
            if idle is not None and idle.expired():
                return "idle"
            try:
                request = state.stop_requested(self.storage, self.spec)
            except StorageError:
                request = None
            if request:
                return request
            if self.extras.sibling_ended():
                return "sibling"
            try:
                process.wait(self.stop_poll)
            except subprocess.TimeoutExpired:
                continue
        return None

    def _final_sync(self, artifacts: ArtifactSync, sink: LogSink) -> None:
        def sync() -> None:
            if not artifacts.sync_once():
                raise StorageError("some artifacts are not in the store yet")
            artifacts.write_manifest()  # checksums, for whoever downloads them

        try:
            self._retry(sync, deadline=FINAL_WRITE_DEADLINE, first_wait=0.5, what="final sync")
        except StorageError:
            sink.line("[dstack] error: some artifacts could not be saved to the store")

    def _finish(
        self,
        sink: LogSink,
        status: JobStatus,
        *,
        reason: str | None = None,
        exit_code: int | None = None,
    ) -> None:
        why = f": {reason}" if reason else ""
        logger.info(
            "job %s: ends %s, exit code %s%s", self.spec.job_id, status.value, exit_code, why
        )
        if self._metrics is not None:  # the job has exited: its last points, then the log's
            warning = self._metrics.close(deadline=FINAL_WRITE_DEADLINE)
            self._metrics = None
            if warning:
                sink.line(f"[dstack] warning: {warning}")
        if not sink.close(deadline=FINAL_WRITE_DEADLINE):
            logger.warning("job %s: the last of its output could not be saved", self.spec.job_id)
        ended = self.state.model_copy(
            update={
                "status": status,
                "reason": reason,
                "exit_code": exit_code,
                "updated_at": time.time(),
                "finished_at": time.time(),
                "log_chunks": sink.seq,
            }
        )
        self.state = self._write_until_taken(
            lambda: conclude(self.storage, self.spec, self.owner, ended, Writer.RUNNER),
            final=True,
        )

    def _set(self, status: JobStatus, **fields: object) -> bool:
        """Record a new state of this attempt (retried while the store fails); False when the
        rules refuse it (the job was finished, or moved to a later attempt, by another)."""
        wanted = self.state.model_copy(
            update={"status": status, "updated_at": time.time(), **fields}
        )
        moved = self._write_until_taken(
            lambda: move(self.storage, self.spec, self.owner, Writer.RUNNER, lambda _: wanted),
            final=status.is_finished,
        )
        self.state = moved.state
        refused = "" if moved.applied else f" refused (the job is {moved.state.status.value})"
        logger.info("job %s: %s%s", self.spec.job_id, status.value, refused)
        return moved.applied

    def _write_until_taken(self, write: Callable[[], T], *, final: bool) -> T:
        """Retry a state write while the store fails: a final one for up to 10 minutes."""
        deadline = FINAL_WRITE_DEADLINE if final else 30.0
        return self._retry(write, deadline=deadline, first_wait=0.2, what="state write")

    def _retry(self, fn: Callable[[], T], *, deadline: float, first_wait: float, what: str) -> T:
        return backoff.retry_until(
            fn, retry_on=backoff.errors_of(StorageError), deadline=deadline,
            first_wait=first_wait, max_wait=10.0, what=what, sleep=self.sleep,
        )  # fmt: skip

    def _heartbeat(self) -> None:
        while True:
            try:
                state.beat(self.storage, self.spec)
            except StorageError:
                pass
            if self._beating.wait(state.HEARTBEAT_INTERVAL):
                return


def _idle_reason(spec: JobSpec) -> str:
    return f"idle for {idle_text(spec.max_idle or 0)} (max_idle)"
