"""Where a running job's ports and apps are reached, and whether they answer yet. No printing.

A job's ports are recorded in its state when it starts running (``JobState.ports``); a port
that serves an app (``JobSpec.apps``: lab, notebook, code, tensorboard) gets that app's URL,
with the job's token when the app is protected by one (read from the job's private record,
``state.read_app_token``: the token is in no listing and no ``--json`` output). On this machine
the URL is ``http://127.0.0.1:PORT``; for a job elsewhere it names the job's host, which this
machine cannot probe.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import urlencode

from dstack import state
from dstack.errors import SpecError, StorageError
from dstack.models import JobSpec, JobState
from dstack.storage.base import Storage


@dataclass(frozen=True)
class Endpoint:
    """One port of a running job: ``name`` is the app's, or ``PORT_<i>``."""

    job_index: int
    name: str
    host: str
    port: int
    url: str
    local: bool


def endpoints(storage: Storage, job: JobSpec, job_state: JobState) -> list[Endpoint]:
    """The job's ports with their URLs (empty until the job runs and has ports)."""
    if not job_state.ports:
        return []
    local = job_state.hostname in (None, socket.gethostname())
    host = "127.0.0.1" if local else str(job_state.hostname)
    apps = {app.port_index: app for app in job.apps}
    token = None
    if any(app.token_param for app in job.apps):
        try:
            token = state.read_app_token(storage, job)
        except StorageError:
            token = None
    found = []
    for index, port in enumerate(job_state.ports):
        app = apps.get(index)
        url = f"http://{host}:{port}"
        if app is not None:
            url += app.url_path
            if app.token_param and token:
                url += "?" + urlencode({app.token_param: token})
        name = app.name if app is not None else f"PORT_{index}"
        found.append(Endpoint(job.job_index, name, host, port, url, local))
    return found


def answers(host: str, port: int, timeout: float = 0.3) -> bool:
    """Whether something accepts TCP connections at ``host:port`` now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def check_watched_runs(storage: Storage, repo_id: str, jobs: list[JobSpec]) -> None:
    """SpecError naming the first run a job wants to show (``tensorboard RUN…``) that is not in
    the repo: at submit, before anything is written."""
    for job in jobs:
        for run_name in job.watch_runs:
            if not storage.exists(state.run_key(repo_id, run_name)):
                raise SpecError(
                    f"{job.workflow}: no run {run_name!r} in {repo_id} (see `dstack ps -a`)"
                )
