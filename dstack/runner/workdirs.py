"""Jobs' working folders on this machine: held while their runner lives, swept once it died.

A runner makes its job's folder (``<work>/<repo>/<job>``, owner-only) and holds an exclusive
``flock`` on ``<job>/.lock`` for as long as it lives; it removes the folder when the job ends.
A runner killed with ``kill -9`` cannot remove it, but the kernel releases its lock, so the
next runner to start on the machine finds the folder unlocked and removes it (:func:`sweep`).
A folder kept on purpose (``--keep-workdir``) is marked ``.keep`` and left alone.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from dstack.runner.removal import remove_tree

LOCK = ".lock"
KEEP = ".keep"
FRESH_SECONDS = 60.0


def hold(job_dir: Path) -> int:
    """Make ``job_dir`` (0700) and hold its lock; returns the descriptor to keep open."""
    job_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(job_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def release(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def sweep(work_root: Path) -> list[Path]:
    """Remove the job folders under ``work_root`` whose runner is gone; return them."""
    removed = []
    for job_dir in sorted(work_root.glob("*/*")):
        lock = job_dir / LOCK
        if not lock.is_file() or (job_dir / KEEP).exists():
            continue
        if time.time() - lock.stat().st_mtime < FRESH_SECONDS:
            continue  # a runner may be between creating the lock and taking it
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # a live runner holds it
        try:
            remove_tree(job_dir)  # never across a mount a job left
            removed.append(job_dir)
        finally:
            os.close(fd)
        try:
            job_dir.parent.rmdir()  # the repo's folder, once empty
        except OSError:
            pass
    return removed
