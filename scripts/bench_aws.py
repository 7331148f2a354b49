"""The AWS section of ``scripts/bench``: `dstack run --plan` wall time, and that `dstack --help`
stays as it was (Pulumi and boto3 are imported only on cloud paths).

Offline, like the command itself: no credentials, no engine, nothing leaves the machine.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

Row = tuple[str, str, str, str, str]
HEAVY = ("pulumi", "pulumi_aws", "boto3", "botocore")


def bench_aws(
    env: dict[str, str], repo: Path, dstack: list[str], reps: int, workflow: str = "echo"
) -> list[Row]:
    offline = {k: v for k, v in env.items() if not k.startswith("AWS_")}
    offline.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    plan = [*dstack, "run", "--plan", workflow]
    _run(plan, offline, repo)  # warm the page cache
    ours = statistics.median(_timed(lambda: _run(plan, offline, repo), reps))
    floor_cmd = [sys.executable, "-W", "ignore", "-c", "import pulumi, pulumi_aws.ec2"]
    floor = statistics.median(_timed(lambda: _run(floor_cmd, offline, repo), reps))
    probe = (
        "import sys, dstack.cli.main; "
        f"print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})) or 'none')"
    )
    loaded = _run([sys.executable, "-c", probe], offline, repo).strip()
    return [
        (
            f"dstack run --plan {workflow} (offline)",
            f"{ours:.3f}s",
            f"import pulumi_aws.ec2 {floor:.3f}s",
            f"{ours / floor:.1f}x",
            "<= 2s",
        ),
        ("dstack --help: cloud SDKs imported", loaded, "", "", "none"),
    ]


def _timed(fn: Callable[[], object], reps: int) -> list[float]:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _run(cmd: list[str], env: dict[str, str], cwd: Path) -> str:
    out = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {out.stderr}")
    return out.stdout
