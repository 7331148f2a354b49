"""Identity and liveness of processes on this machine.

A pid alone can be recycled; a pid with its start time (``/proc/<pid>/stat`` field 22) names
one process for good. Runners record both, so a reader can tell "my runner died" from "some
other process now has that pid". :func:`keep_out_of_reach` keeps a runner's memory and open
files from the jobs it runs.
"""

from __future__ import annotations

import os
from pathlib import Path


def start_ticks(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot, or None if unknown/gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    try:
        return int(fields[19])  # field 22 overall; fields[0] is field 3 (state)
    except (IndexError, ValueError):
        return None


def is_alive(pid: int, ticks: int | None) -> bool:
    """Whether the process ``pid`` that started at ``ticks`` is still running (not a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return _signal_zero(pid)
    fields = stat.rsplit(")", 1)[-1].split()
    if not fields or fields[0] in ("Z", "X"):
        return False
    return ticks is None or start_ticks(pid) == ticks


def _signal_zero(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def keep_out_of_reach() -> bool:
    """Make this process's memory and open files unreachable to other processes of the same
    user — the jobs a runner starts run as that user — as ssh-agent does: on Linux the process
    is made non-dumpable, so no ptrace, and ``/proc/<pid>/fd``, ``mem`` and ``environ`` belong
    to root. Its children get their own setting back when they start a program. False where
    it cannot be done (not Linux)."""
    import sys

    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    return bool(prctl(4, 0, 0, 0, 0) == 0)  # PR_SET_DUMPABLE, 0
