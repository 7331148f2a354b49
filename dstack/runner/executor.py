"""The job's processes: one shell in its own process group, its output pumped to a sink.

The shell is started in a new session so that stopping the job signals everything it started,
and (on Linux) with a parent-death signal so that it dies with the runner rather than outliving
it unobserved.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from dstack.runner.logs import LogSink

STOP_GRACE_SECONDS = 10.0


class JobProcess:
    """``argv`` (by default: bash running ``script``) in its own process group.

    ``on_kill`` runs after the group has been killed, for what lives outside it (a container).
    """

    def __init__(
        self,
        script: Path,
        cwd: Path,
        env: dict[str, str],
        sink: LogSink,
        *,
        argv: list[str] | None = None,
        on_kill: Callable[[], None] | None = None,
    ) -> None:
        self.sink = sink
        self.on_kill = on_kill
        argv = list(argv or ["bash", "--noprofile", "--norc", str(script)])
        # the program is found on the runner's PATH, not the job's (``-e PATH=…`` is the job's)
        argv[0] = shutil.which(argv[0]) or argv[0]
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self.pgid = self.proc.pid
        self._pump = threading.Thread(target=self._read_output, name="output-pump", daemon=True)
        self._pump.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def wait(self, timeout: float | None = None) -> int:
        code = self.proc.wait(timeout)
        self._pump.join()
        return code

    def terminate(self, grace: float = STOP_GRACE_SECONDS) -> int:
        """SIGTERM the process group, then SIGKILL what is left after ``grace`` seconds."""
        signal_group(self.pgid, signal.SIGTERM)
        try:
            return self.wait(grace)
        except subprocess.TimeoutExpired:
            return self.kill()

    def kill(self) -> int:
        signal_group(self.pgid, signal.SIGKILL)
        code = self.wait()
        if self.on_kill:
            self.on_kill()
        return code

    def _read_output(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                break
            if not data:
                break
            self.sink.write(data)
        self.proc.stdout.close()


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def exit_code_of(returncode: int) -> int:
    """A shell-style exit code: 128+N for a process killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
