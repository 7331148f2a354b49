"""Driving the real `dstack` command in a subprocess, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DSTACK = [sys.executable, "-m", "dstack"]


@dataclass
class Result:
    code: int
    out: str
    err: str


class Dstack:
    """Runs `dstack` in ``cwd`` with its own DSTACK_HOME (and any extra environment)."""

    def __init__(self, home: Path, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.env = {**os.environ, "DSTACK_HOME": str(home), "NO_COLOR": "1", **(env or {})}

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

    def run_detached(self, workflow: str, *args: str, cwd: Path) -> str:
        result = self("run", "-d", workflow, *args, cwd=cwd)
        assert result.code == 0, result.err
        return result.err.split("Run ", 1)[1].split()[0]

    def ps_json(self, run: str, cwd: Path) -> dict:
        result = self("ps", run, "--json", cwd=cwd)
        assert result.code == 0, result.err
        return json.loads(result.out)[0]

    def wait_status(
        self, run: str, cwd: Path, accept: Callable[[str], bool], timeout: float = 60
    ) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            row = self.ps_json(run, cwd)
            if accept(row["status"]):
                return row
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run} stayed {row['status']}: {row}")
            time.sleep(0.1)


def wait_for(predicate: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


FINISHED = {"done", "failed", "stopped", "aborted", "interrupted"}
