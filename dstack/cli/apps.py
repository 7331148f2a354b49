"""Telling the person attached to a run where its apps are, once they answer.

When a job of the followed run starts running with ports, a background thread probes each of
them (on this machine) until it accepts a connection, then prints one line on stderr, e.g.
``lab is ready: http://127.0.0.1:8888/lab?token=…``. A job on another machine gets its URLs
printed at once (this machine cannot tell whether they answer). Probing stops when the job
stops running or the CLI stops following.
"""

from __future__ import annotations

import sys
import threading

from dstack.models import JobState, JobStatus
from dstack.services import apps
from dstack.services.context import Context
from dstack.services.runs import RunView

PROBE_INTERVAL = 0.25


class AppAnnouncer:
    def __init__(self, ctx: Context, view: RunView, *, enabled: bool) -> None:
        self.ctx = ctx
        self.view = view
        self.enabled = enabled
        self._waiting: dict[tuple[int, int], apps.Endpoint] = {}
        self._seen: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def on_state(self, job_index: int, job_state: JobState) -> None:
        """A job's state changed: start watching its ports when it runs, stop when it ends."""
        if not self.enabled:
            return
        with self._lock:
            if job_state.status is not JobStatus.RUNNING:
                for key in [k for k in self._waiting if k[0] == job_index]:
                    del self._waiting[key]
                return
            if job_index in self._seen or not job_state.ports:
                return
            self._seen.add(job_index)
        job = self.view.jobs[job_index]
        for endpoint in apps.endpoints(self.ctx.storage, job, job_state):
            if endpoint.local:
                with self._lock:
                    self._waiting[(job_index, endpoint.port)] = endpoint
            else:
                self._announce(endpoint, checked=False)
        if self._waiting and self._thread is None:
            self._thread = threading.Thread(target=self._probe, name="app-probe", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def _probe(self) -> None:
        while not self._stop.wait(PROBE_INTERVAL):
            with self._lock:
                waiting = list(self._waiting.items())
            for key, endpoint in waiting:
                if apps.answers(endpoint.host, endpoint.port):
                    with self._lock:
                        if self._waiting.pop(key, None) is None:
                            continue
                    self._announce(endpoint, checked=True)

    def _announce(self, endpoint: apps.Endpoint, *, checked: bool) -> None:
        job = f"job {endpoint.job_index}: " if len(self.view.jobs) > 1 else ""
        state = "is ready" if checked else "will be at"
        print(f"{job}{endpoint.name} {state}: {endpoint.url}", file=sys.stderr, flush=True)
