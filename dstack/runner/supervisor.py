"""The local supervisor of one job: it starts the runner, outlives it, and starts the next
attempt when the workflow's ``retry`` says so.

A runner killed outright (``kill -9``, the OOM killer) cannot record its own end, so the
supervisor does, within moments: the attempt is ``interrupted``, its leftover processes are
killed, and :func:`dstack.lifecycle.conclude` decides between the final state and the
next attempt. A runner that ends normally concludes its attempt itself; the supervisor then
starts the next attempt if the job went back to ``submitted``.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any

from dstack import diagnostics, processes, settings, state
from dstack.errors import TamperedError
from dstack.lifecycle import Writer, conclude, move
from dstack.models import JobStatus
from dstack.state.pins import read_pinned_spec
from dstack.storage import open_storage
from dstack.store_config import S3StoreConfig, StoreConfig

logger = logging.getLogger(__name__)


def supervise(
    store: StoreConfig, repo_id: str, run_name: str, job_index: int, spec_sha256: str
) -> int:
    """Run attempts of one job until one is final; 0 when the job ended ``done``. Every
    attempt's runner is given ``spec_sha256`` (the pin of the spec the submitter wrote), and
    the supervisor itself reads the spec only through it."""
    diagnostics.setup_runner(settings.runner_log_path(repo_id, f"{run_name}-{job_index}"))
    storage = open_storage(store)
    try:
        spec = read_pinned_spec(storage, repo_id, run_name, job_index, spec_sha256)
    except TamperedError as exc:
        from dstack.runner.__main__ import refuse

        refuse(storage, repo_id, run_name, job_index, str(exc))
        return 1
    _keep_only_what_runners_need(spec, store)
    owner = state.read_run(storage, repo_id, run_name).owner.display
    me = {"supervisor_pid": os.getpid(), "supervisor_started": processes.start_ticks(os.getpid())}
    current = move(
        storage, spec, owner, Writer.CONCLUDER,
        lambda now: now.model_copy(update={**me, "updated_at": time.time()}),
    ).state  # fmt: skip
    while True:
        attempt = current.attempt
        logger.info("supervisor %d: attempt %d of job %d starts", os.getpid(), attempt, job_index)
        wait_status = _run_attempt(store, repo_id, run_name, job_index, spec_sha256)
        logger.info("supervisor %d: attempt %d's runner ended (wait status %d)",
                    os.getpid(), attempt, wait_status)  # fmt: skip
        current = state.read_latest_job_state(storage, spec)
        if current.status.is_active and current.attempt == attempt:
            lost = _runner_lost(current, wait_status)
            current = conclude(storage, spec, owner, lost, Writer.CONCLUDER, since=current.version)
        if current.status.is_finished:
            return 0 if current.status is JobStatus.DONE else 1


def _run_attempt(
    store: StoreConfig, repo_id: str, run_name: str, index: int, spec_sha256: str
) -> int:
    """Fork the runner of the job's current attempt, wait for it; its wait status."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            from dstack.runner.__main__ import run_job

            code = run_job(store, repo_id, run_name, index, spec_sha256=spec_sha256)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return status


def _keep_only_what_runners_need(spec: Any, store: StoreConfig) -> None:
    """Drop from this process's environment (a fork of the submitting CLI: the shell's whole
    environment) every variable its runners and their tools do not need: what a job may take
    from this machine, dstack's settings, the package tools' and the machine's, and the
    store's credentials when it is in S3. A token of the shell (GITHUB_TOKEN) goes."""
    from dstack.models import FROM_HOST
    from dstack.runner.prepare import HOST_PREFIXES, HOST_VARIABLES

    wanted = {key for key, value in spec.env.items() if value == FROM_HOST}
    cloud = ("AWS_",) if isinstance(store, S3StoreConfig) else ()
    prefixes = (*HOST_PREFIXES, *RUNNER_PREFIXES, *cloud)
    for name in list(os.environ):
        if name not in HOST_VARIABLES and name not in wanted and not name.startswith(prefixes):
            del os.environ[name]


#: variables the runner or the tools it starts (pip, uv, docker, git) read
RUNNER_PREFIXES = (
    "DSTACK_", "PIP_", "UV_", "DOCKER_", "XDG_", "SSL_CERT_", "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE", "NVIDIA_", "CUDA_", "VIRTUAL_ENV", "PYTHONPATH",
)  # fmt: skip


def _runner_lost(current: Any, wait_status: int) -> Any:
    """The attempt's state once its runner died without recording an end."""
    if current.process_group:
        try:
            os.killpg(current.process_group, signal.SIGKILL)  # what the runner left behind
        except (ProcessLookupError, PermissionError):
            pass
    if os.WIFSIGNALED(wait_status):
        reason = f"the runner was killed by signal {os.WTERMSIG(wait_status)}"
    else:
        reason = f"the runner exited with code {os.waitstatus_to_exitcode(wait_status)}"
    now = time.time()
    return current.model_copy(
        update={
            "status": JobStatus.INTERRUPTED,
            "reason": reason,
            "updated_at": now,
            "finished_at": now,
        }
    )
