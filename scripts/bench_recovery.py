"""Recovery benchmark: from `kill -9` of a runner to the job's next attempt running, and to a
job without retry being recorded `interrupted`. Local compute, local store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

WORKFLOWS = """\
workflows:
  - name: resumable
    commands:
      - for i in $(seq 1 600); do sleep 0.1; done
    retry: {on: [interruption], limit: 3}
  - name: fragile
    commands:
      - for i in $(seq 1 600); do sleep 0.1; done
"""


def bench_recovery(
    work: Path, dstack: list[str], make_repo
) -> list[tuple[str, str, str, str, str]]:  # type: ignore[no-untyped-def]
    home = work / "recovery-home"
    env = {**os.environ, "DSTACK_HOME": str(home), "NO_COLOR": "1"}
    repo = make_repo(work / "recovery-repo", WORKFLOWS)
    restart = _kill_and_time(env, repo, dstack, "resumable", lambda s: s.get("attempt") == 2
                             and s["status"] == "running")  # fmt: skip
    detect = _kill_and_time(env, repo, dstack, "fragile", lambda s: s["status"] == "interrupted")
    return [
        ("kill -9 → next attempt running", f"{restart:.2f}s", "SkyPilot's test allows 200s",
         f"{200 / restart:.0f}x faster", "<= 10s"),
        ("kill -9 → recorded interrupted", f"{detect:.2f}s", "heartbeat timeout 10s",
         f"{10 / detect:.0f}x faster", "within seconds"),
    ]  # fmt: skip


def _kill_and_time(env, repo: Path, dstack: list[str], workflow: str, reached) -> float:  # type: ignore[no-untyped-def]
    out = subprocess.run(
        [*dstack, "run", "-d", workflow], env=env, cwd=repo, capture_output=True, text=True
    )
    run = out.stderr.split("Run ", 1)[1].split()[0]
    state_path = _wait_for_state(Path(env["DSTACK_HOME"]), run, lambda s: s["status"] == "running")
    os.kill(json.loads(state_path.read_text())["runner_pid"], signal.SIGKILL)
    killed = time.perf_counter()
    while not reached(json.loads(state_path.read_text())):
        time.sleep(0.005)
    elapsed = time.perf_counter() - killed
    subprocess.run([*dstack, "stop", "-x", run], env=env, cwd=repo, capture_output=True)
    return elapsed


def _wait_for_state(home: Path, run: str, reached) -> Path:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for path in (home / "store").rglob(f"runs/{run}/jobs/0/state.json"):
            try:
                if reached(json.loads(path.read_text())):
                    return path
            except ValueError:
                pass
        time.sleep(0.01)
    raise SystemExit(f"run {run} never reached the expected state")
