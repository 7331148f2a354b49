"""A run's output as server-sent events: what `dstack logs -a` prints, as the page shows it.

The bytes are the stored log chunks, the very bytes `dstack logs` writes to the terminal: the
runner masks the repo's secrets before a chunk is stored, so the stream never holds a value.
Colors become HTML (:mod:`.ansi`). Events: ``reset`` first (a reconnecting page starts over),
``log`` ({job, html}), ``status`` ({job, status, reason, exit_code}), and ``end`` once every job
has finished and its last chunk has been sent. Unlike ``services.logs.follow`` this never
records anything (no dead-runner check): it only reads.

A stream waits without a thread: only its reads of the store take one, from a pool of their
own (``readers``), so open streams never hold the threads that pages are served from. How
many streams one browser may hold is :class:`StreamCounter`'s business.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from dstack import state
from dstack.dashboard.ansi import AnsiToHtml
from dstack.models import JobState
from dstack.services.runs import RunView
from dstack.storage.base import Storage

KEEPALIVE = 15.0  # seconds between comments on a quiet stream, so proxies keep it open
#: the longest wait between two looks at the store; the store's own interval if shorter
MAX_POLL = 0.25
#: live streams one browser (one session) may hold open, and all browsers together
PER_CLIENT, IN_ALL = 12, 64

T = TypeVar("T")


class StreamCounter:
    """Open streams by client: a new one is refused past ``per_client`` for that client or
    ``in_all`` altogether (each costs a look at the store every ``MAX_POLL``)."""

    def __init__(self, per_client: int = PER_CLIENT, in_all: int = IN_ALL) -> None:
        self.per_client, self.in_all = per_client, in_all
        self._open: dict[str, int] = {}

    def acquire(self, client: str) -> bool:
        if self._open.get(client, 0) >= self.per_client or sum(self._open.values()) >= self.in_all:
            return False
        self._open[client] = self._open.get(client, 0) + 1
        return True

    def release(self, client: str) -> None:
        left = self._open.get(client, 0) - 1
        if left > 0:
            self._open[client] = left
        else:
            self._open.pop(client, None)


async def log_events(
    storage: Storage,
    view: RunView,
    readers: anyio.CapacityLimiter,
    *,
    poll: float | None = None,
) -> AsyncIterator[str]:
    """Encoded SSE events, until every job has finished (then ``end``); the store is read in
    threads limited by ``readers``."""

    async def read(fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(fn, *args, limiter=readers)

    interval = min(storage.poll_interval, MAX_POLL) if poll is None else poll
    converters = [AnsiToHtml() for _ in view.jobs]
    cursors: list[str | None] = [None] * len(view.jobs)
    states = list(view.states)
    yield event("reset", {"jobs": len(view.jobs)})
    for index, job_state in enumerate(states):
        yield event("status", _status(index, job_state))
    quiet_since = time.monotonic()
    while True:
        finished_before = all(s.status.is_finished for s in states)
        sent = False
        for index, job in enumerate(view.jobs):
            prefix = state.logs_prefix(job.repo.repo_id, job.run_name, job.job_index)
            listed = await read(_listed, storage, prefix, cursors[index])
            for info in listed:
                cursors[index] = info.key
                text = converters[index].feed(await read(storage.get, info.key))
                if text:
                    sent = True
                    yield event("log", {"job": index, "html": text})
        if finished_before:
            yield event("end", {})
            return
        for index, job in enumerate(view.jobs):
            if states[index].status.is_finished:
                continue
            fresh = await read(
                state.read_job_state, storage, job.repo.repo_id, job.run_name, job.job_index
            )
            if (fresh.status, fresh.attempt) != (states[index].status, states[index].attempt):
                sent = True
                yield event("status", _status(index, fresh))
            states[index] = fresh
        now = time.monotonic()
        if sent:
            quiet_since = now
        elif now - quiet_since > KEEPALIVE:
            quiet_since = now
            yield ": keep-alive\n\n"
        if not all(s.status.is_finished for s in states):
            await anyio.sleep(interval)


def _listed(storage: Storage, prefix: str, after: str | None) -> list[Any]:
    return list(storage.list_objects(prefix, after=after))


def event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def _status(index: int, job_state: JobState) -> dict[str, Any]:
    return {
        "job": index,
        "status": job_state.status.value,
        "finished": job_state.status.is_finished,
        "reason": job_state.reason,
        "exit_code": job_state.exit_code,
        "attempt": job_state.attempt,
    }
