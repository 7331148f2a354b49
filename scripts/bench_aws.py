"""The AWS section of ``scripts/bench``: `dstack run --plan` wall time, and that `dstack --help`
stays as it was (Pulumi and boto3 are imported only on cloud paths).

Offline, like the command itself: no credentials, no engine, nothing leaves the machine.
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

from bench_common import run, timed

Row = tuple[str, str, str, str, str]
HEAVY = ("pulumi", "pulumi_aws", "boto3", "botocore")


def bench_aws(
    env: dict[str, str], repo: Path, dstack: list[str], reps: int, workflow: str = "echo"
) -> list[Row]:
    offline = {k: v for k, v in env.items() if not k.startswith("AWS_")}
    offline.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    plan = [*dstack, "run", "--plan", workflow]
    run(plan, offline, repo)  # warm the page cache
    ours = statistics.median(timed(lambda: run(plan, offline, repo), reps))
    floor_cmd = [sys.executable, "-W", "ignore", "-c", "import pulumi, pulumi_aws.ec2"]
    floor = statistics.median(timed(lambda: run(floor_cmd, offline, repo), reps))
    probe = (
        "import sys, dstack.cli.main; "
        f"print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})) or 'none')"
    )
    loaded = run([sys.executable, "-c", probe], offline, repo).strip()
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
