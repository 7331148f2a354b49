"""``max_idle``: noticing that nobody uses a job (a dev environment left open) so the runner
can stop it.

"Used" is CPU: the job's processes — its main process and every descendant, Jupyter's kernels
and a VS Code server's extension hosts and terminals included — together used at least
``BUSY_SHARE`` of one CPU over a sampling window. Running a cell, a training loop, a build or a
command in the app's terminal counts; so does typing, whose completions and saves the server
and kernels compute. An idle server with a tab left open polls a few times a minute and stays
well below. CPU is measured the same way wherever the runner runs (this machine or a cloud
instance), needs nothing between the browser and the app, and never stops a job that is
still computing — which idle network traffic, a forgotten tab's, would not tell apart.

The job is idle once no window in ``max_idle`` seconds was busy. Times come from a clock the
caller gives (tests pass a fake one); CPU from ``/proc`` (Linux: where the runner can read
it; elsewhere, or for a job in a container, whose processes are not the runner's children,
nothing is watched and the runner says so).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

#: the share of one CPU a job's processes must use over a window to count as used
BUSY_SHARE = 0.01
#: how often CPU is sampled: the length of a window, in seconds (at most a tenth of max_idle)
WINDOW = 60.0

CpuProbe = Callable[[], float | None]


class IdleWatch:
    """Whether a job has been idle for ``max_idle`` seconds, asked every now and then."""

    def __init__(
        self,
        max_idle: float,
        cpu_seconds: CpuProbe,
        clock: Callable[[], float],
        *,
        window: float | None = None,
    ) -> None:
        self.max_idle = max_idle
        self.window = window if window is not None else min(WINDOW, max(max_idle / 10, 0.05))
        self._cpu_seconds = cpu_seconds
        self._clock = clock
        now = clock()
        self._last_used = now
        self._window_start = now
        self._window_cpu = cpu_seconds()

    def idle_for(self) -> float:
        """Seconds since the job was last used, sampling CPU if a window has passed."""
        now = self._clock()
        if now - self._window_start >= self.window:
            cpu = self._cpu_seconds()
            busy = BUSY_SHARE * (now - self._window_start)
            if cpu is not None and self._window_cpu is not None and cpu - self._window_cpu >= busy:
                self._last_used = now
            self._window_start, self._window_cpu = now, cpu
        return now - self._last_used

    def expired(self) -> bool:
        return self.idle_for() >= self.max_idle


def tree_cpu_probe(root_pid: int, proc: Path = Path("/proc")) -> CpuProbe | None:
    """CPU seconds used so far by ``root_pid`` and its descendants (with the children they
    waited for), from ``/proc``; None where there is no ``/proc`` to read."""
    if not (proc / str(root_pid) / "stat").exists():
        return None
    ticks = float(os.sysconf("SC_CLK_TCK"))
    last: dict[int, int] = {}  # each process's ticks when last seen
    used = [0.0]  # what the tree used since the first sample, never going back

    def probe() -> float | None:
        stats = _read_stats(proc)
        if root_pid not in stats:
            return None
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in stats.items():
            children.setdefault(ppid, []).append(pid)
        now: dict[int, int] = {}
        stack = [root_pid]
        while stack:
            pid = stack.pop()
            if pid in now or pid not in stats:
                continue
            now[pid] = stats[pid][1]
            stack.extend(children.get(pid, []))
        # growth only: a child that exits takes its ticks away, and its parent's waited-for
        # children's ticks bring them back (counted again: this errs towards "used")
        used[0] += sum(max(0, t - last.get(pid, t if not last else 0)) for pid, t in now.items())
        last.clear()
        last.update(now)
        return used[0] / ticks

    return probe


def _read_stats(proc: Path) -> dict[int, tuple[int, int]]:
    """Every process's parent and CPU ticks (user + system, and of its waited-for children)."""
    found = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name, in parentheses, may hold spaces and parentheses: split after it
        fields = text[text.rfind(")") + 2 :].split()
        try:
            ppid = int(fields[1])
            used = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
        except (IndexError, ValueError):
            continue
        found[int(entry.name)] = (ppid, used)
    return found


def idle_text(seconds: float) -> str:
    """``1h``, ``30m``, ``1h 30m``, ``45s``: how long, as the stop line says it."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"{minutes}m"
    return f"{hours}h" + (f" {minutes}m" if minutes else "")
