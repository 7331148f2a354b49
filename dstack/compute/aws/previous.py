"""A later attempt's instance: the one before it is gone before the run's stack is updated.

A retried job (a spot interruption with ``retry: interruption``) is started by updating the
run's stack, refreshed first: the provider's read drops an instance EC2 reports ``terminated``
from the stack's state, and the update then creates a new one. But the reader that starts the
attempt sees it as soon as the runner recorded it, while that runner's instance is still
uploading its boot log and powering off: refreshed then, the instance is still ``running`` (or
``shutting-down``), the update changes nothing, and no instance runs the attempt.

So before the update, each previous instance of the jobs being started is given a short grace
to power itself off, then terminated, and awaited until EC2 reports it ``terminated``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from dstack import state
from dstack.compute.aws.ec2 import Ec2
from dstack.errors import ComputeError
from dstack.models import JobSpec
from dstack.storage.base import Storage

#: how long an instance that recorded the next attempt gets to power itself off (its boot
#: log's upload) before it is terminated
GRACE_SECONDS = 60.0
#: how long EC2 gets to report a terminated instance ``terminated`` (AWS: usually a minute)
TERMINATED_WITHIN_SECONDS = 600.0
POLL_SECONDS = 2.0


def end_before_retry(
    ec2: Ec2,
    storage: Storage,
    jobs: Iterable[JobSpec],
    requested: Iterable[int],
    *,
    say: Callable[[str], None] = lambda line: None,
) -> None:
    """Before the stack is updated for a later attempt of the ``requested`` jobs: wait until
    the instances their ended attempts ran on are terminated (``await_gone``)."""
    wanted = set(requested)
    restarted = [job for job in jobs if job.job_index in wanted]
    await_gone(ec2, previous_instances(storage, restarted), say=say)


def previous_instances(storage: Storage, jobs: Iterable[JobSpec]) -> list[str]:
    """The instances the ended attempts of ``jobs`` ran on (as their runners recorded them)."""
    found = []
    for job in jobs:
        for ended in state.list_attempts(storage, job):
            if ended.instance_id and ended.instance_id not in found:
                found.append(ended.instance_id)
    return found


def await_gone(
    ec2: Ec2,
    instance_ids: list[str],
    *,
    say: Callable[[str], None] = lambda line: None,
    grace: float | None = None,
    timeout: float | None = None,
    poll: float = POLL_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> None:
    """Return once EC2 reports each of ``instance_ids`` ``terminated`` (or no longer knows
    it); those still up after ``grace`` seconds are terminated. ``ComputeError`` when one is
    not terminated within ``timeout`` seconds."""
    grace = GRACE_SECONDS if grace is None else grace
    timeout = TERMINATED_WITHIN_SECONDS if timeout is None else timeout
    started = monotonic()
    terminated = False
    said = False
    while True:
        left = {i: s for i, s in ec2.instance_states(instance_ids).items() if s != "terminated"}
        if not left:
            return
        waited = monotonic() - started
        if not said:
            said = True
            say(f"Waiting for the previous instance {', '.join(sorted(left))} to end")
        if not terminated and waited >= grace:
            terminated = True
            ec2.terminate(i for i, s in left.items() if s != "shutting-down")
        if waited >= timeout:
            what = ", ".join(f"{i} ({s})" for i, s in sorted(left.items()))
            raise ComputeError(
                f"the previous instance of the job is not terminated after {timeout:.0f}s: "
                f"{what}; a new one is not started beside it (`dstack stop -x` ends the run)"
            )
        sleep(poll)
