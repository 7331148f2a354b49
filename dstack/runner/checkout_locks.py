"""The locks of a machine's checkout of a repo's code (``dstack.runner.code``).

One lock (``lock``, exclusive) lets one runner at a time change the checkout, its spare and
their records. Runners giving a job's folder back hold another (``returning.lock``, shared)
for as long as that takes, so that a job that finds no spare can tell one is on its way and
wait for it (a rename) instead of copying every file of the checkout.
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Iterator
from pathlib import Path

#: held (shared) by every runner giving a folder back to the checkout, for as long as it takes
_RETURNING = "returning.lock"
#: how long a job waits for a folder being given back before it copies the checkout instead
RETURN_WAIT = 30.0


@contextlib.contextmanager
def giving_back(base: Path) -> Iterator[None]:
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(base / _RETURNING, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH)
        yield


def returning(base: Path) -> bool:
    """Whether a runner is giving a folder back to the checkout at ``base`` right now."""
    try:
        with open(base / _RETURNING, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def await_return(base: Path) -> None:
    """Wait (up to ``RETURN_WAIT``) until no runner is giving a folder back."""
    deadline = time.monotonic() + RETURN_WAIT
    while returning(base) and time.monotonic() < deadline:
        time.sleep(0.02)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
