"""Noticing an instance whose boot failed, from its boot log, long before the start timeout.

The boot script uploads its log when it ends, whatever happened (``bootlog``). A job still
``submitted`` whose boot log is there has an instance that ended before its runner started:
the job has failed, and the log's last lines say why (an ``apt-get`` or ``pip`` error, most
often). Without this, the user would wait for ``start_timeout`` (20 minutes) to learn it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from dstack import state
from dstack.compute.base import StartFailure
from dstack.models import JobSpec, JobState
from dstack.storage.base import Storage

#: how often one job's boot log is looked for (seconds; one list request each time)
CHECK_EVERY = 5.0
#: how many of the boot log's last lines go to the job's log
TAIL_LINES = 20
STEP = "dstack-boot "


class BootWatch:
    """Looks for the boot log of each submitted job at most every ``CHECK_EVERY`` seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._checked: dict[tuple[str, str, int, int], float] = {}

    def failure(self, storage: Storage, spec: JobSpec, job_state: JobState) -> StartFailure | None:
        ident = (spec.repo.repo_id, spec.run_name, spec.job_index, job_state.attempt)
        now = self._clock()
        last = self._checked.get(ident)
        if last is not None and now - last < CHECK_EVERY:
            return None
        self._checked[ident] = now
        if job_state.attempt > 1:
            # every attempt's instance writes the same key, and an interrupted instance
            # uploads its log as it powers off, after the next attempt is submitted: a log
            # cannot be told to be this attempt's, so a later attempt waits for its timeout
            return None
        key = state.boot_log_key(spec.repo.repo_id, spec.run_name, spec.job_index)
        found = [info for info in storage.list_objects(key) if info.key == key]
        if not found:
            return None
        data = storage.get_or_none(key)
        if data is None:
            return None
        return judge(data.decode("utf-8", "replace"), spec.run_name)


def judge(text: str, run_name: str) -> StartFailure:
    """The verdict on a boot log whose instance ended before its runner started."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    step = ""
    for line in lines:
        if line.startswith(STEP):
            step = line[len(STEP) :].split(" ", 1)[-1]
    cause = next((line for line in reversed(lines) if not line.startswith(STEP)), "")
    cause = cause.strip()[:300]
    where = (
        "the runner ended as it started"
        if step == "starting the runner"
        else f"the instance's boot failed while {step}"
        if step
        else "the instance's boot failed"
    )
    reason = f"{where}: {cause or 'no error in its log'} (boot log: `dstack infra -v {run_name}`)"
    tail = lines[-TAIL_LINES:]
    log = "".join(f"[boot] {line}\n" for line in tail)
    return StartFailure(reason=reason, log=log)
