"""Driving the real `dstack` command in a subprocess, as a user would."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DSTACK = [sys.executable, "-m", "dstack"]


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def job_lines(self) -> list[str]:
        """The job's own output: ``out`` without dstack's own lines (``[dstack] code ready in
        0.08 s``, ``[dstack] building the Python environment…``)."""
        return job_lines(self.out)


class Dstack:
    """Runs `dstack` in ``cwd`` with its own DSTACK_HOME (and any extra environment; with
    ``whole``, ``env`` is the whole environment, nothing of this process's is added)."""

    def __init__(
        self, home: Path, env: dict[str, str] | None = None, *, whole: bool = False
    ) -> None:
        self.home = home
        base = {} if whole else dict(os.environ)
        self.env = {**base, "DSTACK_HOME": str(home), "NO_COLOR": "1", **(env or {})}
        self._storage: Any = None
        self._repo_ids: dict[Path, str] = {}

    def __call__(
        self, *args: str, cwd: Path, timeout: float = 120, input: str | None = None
    ) -> Result:
        proc = subprocess.run(
            [*DSTACK, *args],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def popen(self, *args: str, cwd: Path) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [*DSTACK, *args],
            cwd=cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def run_detached(
        self, workflow: str, *args: str, cwd: Path, options: tuple[str, ...] = ()
    ) -> str:
        """Submit ``workflow`` detached: ``options`` are dstack's (before the name), ``args``
        the workflow's."""
        result = self("run", "-d", *options, workflow, *args, cwd=cwd)
        assert result.code == 0, result.err
        return result.err.split("Run ", 1)[1].split()[0]

    def ps_json(self, run: str, cwd: Path) -> dict:
        result = self("ps", run, "--json", cwd=cwd)
        assert result.code == 0, result.err
        return json.loads(result.out)[0]

    def wait_status(
        self, run: str, cwd: Path, accept: Callable[[str], bool], timeout: float = 60
    ) -> dict:
        """Poll until `dstack ps RUN` shows a status ``accept`` takes; return its row.

        Between calls of the CLI (each costs a Python start-up, and more with S3), the store is
        read in this process, so the CLI is asked again as soon as the status may be there. The
        CLI is still asked every second: it is what notices a dead runner.
        """
        deadline = time.monotonic() + timeout
        ask_cli_at = 0.0
        while True:
            if time.monotonic() >= ask_cli_at:
                row = self.ps_json(run, cwd)
                if accept(row["status"]):
                    return row
                ask_cli_at = time.monotonic() + 1.0
            elif accept(self.peek_status(run, cwd)):
                ask_cli_at = 0.0
                continue
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run} stayed {row['status']}: {row}")
            time.sleep(0.05)

    def peek_status(self, run: str, cwd: Path) -> str:
        """The run's recorded status, read from its store in this process (no dead-runner
        check, nothing written)."""
        from dstack import state
        from dstack.models import run_status

        storage, repo_id = self.storage(), self._repo_id(cwd)
        record = state.read_run(storage, repo_id, run)
        statuses = [
            state.read_job_state(storage, repo_id, run, i).status for i in range(record.job_count)
        ]
        return run_status(statuses).value

    def storage(self) -> Any:
        """The store this CLI uses, opened in the test process."""
        if self._storage is None:
            from dstack.storage import default_storage

            with _environ(self.env):
                self._storage = default_storage()
        return self._storage

    def _repo_id(self, cwd: Path) -> str:
        if cwd not in self._repo_ids:
            from dstack.repo import read_repo_id

            self._repo_ids[cwd] = read_repo_id(cwd)[0]
        return self._repo_ids[cwd]


@contextlib.contextmanager
def _environ(env: dict[str, str]) -> Iterator[None]:
    """``env``'s values in ``os.environ`` for a moment (only the keys that differ change, so
    threads of this process — the moto server — never see the environment emptied)."""
    changed = {
        key: os.environ.get(key) for key, value in env.items() if os.environ.get(key) != value
    }
    os.environ.update({key: env[key] for key in changed})
    try:
        yield
    finally:
        for key, value in changed.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def wait_for(predicate: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


FINISHED = {"done", "failed", "stopped", "aborted", "interrupted"}


def job_lines(out: str) -> list[str]:
    """The job's own output lines: without dstack's (``[dstack] building the Python …``,
    which the first run on a machine shows)."""
    return [line for line in out.splitlines() if not line.startswith("[dstack] ")]
