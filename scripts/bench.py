"""Benchmarks of dstack against the baselines its issues name, measured side by side.

Each section prints what it measured, the baseline measured in the same run, the ratio and
the target. Nothing here is asserted by the tests; this is for people and for issue notes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_common import DSTACK, dashboard, make_repo, run, timed  # noqa: E402
from bench_jobs import bench_deps, bench_masking  # noqa: E402
from bench_store import bench_dashboard, bench_ps  # noqa: E402

WORKFLOWS = """\
workflows:
  - name: echo
    provider: bash
    commands:
      - echo hello
  - name: ticks
    provider: bash
    commands:
      - python -c "import time; [(print(f'tick {time.time():.6f}', flush=True), time.sleep(0.05)) for _ in range({n})]"
  - name: ticks-long
    provider: bash
    commands:
      - python -c "import time; [(print(f'tick {time.time():.6f}', flush=True), time.sleep(0.05)) for _ in range(200)]"
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--runs", type=int, default=10_000, help="runs seeded for `ps -a`")
    parser.add_argument("--s3", action="store_true", help="only the S3 section")
    parser.add_argument("--aws", action="store_true", help="only the AWS (plan) section")
    parser.add_argument("--code", action="store_true", help="only the big-repository section")
    args = parser.parse_args()
    reps = 3 if args.quick else 7
    # Python as users have it: modules compiled once and cached, not at every start (for
    # dstack and the baselines alike)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    if args.code:
        with tempfile.TemporaryDirectory(prefix="dstack-bench-") as tmp:
            print_table(code_rows(Path(tmp), args, reps))
        return
    if args.aws:
        with tempfile.TemporaryDirectory(prefix="dstack-bench-") as tmp:
            env = {**os.environ, "DSTACK_HOME": str(Path(tmp) / "home"), "NO_COLOR": "1"}
            repo = make_repo(Path(tmp) / "repo", WORKFLOWS.replace("{n}", "40"))
            print_table([bench_help(env, reps), *bench_aws(env, repo, DSTACK, reps)])
        return
    if args.s3:
        with tempfile.TemporaryDirectory(prefix="dstack-bench-") as tmp:
            print_table(s3_rows(Path(tmp), args))
        return
    with tempfile.TemporaryDirectory(prefix="dstack-bench-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "DSTACK_HOME": str(work / "home"), "NO_COLOR": "1"}
        repo = make_repo(work / "repo", WORKFLOWS.replace("{n}", "40" if args.quick else "100"))
        rows: list[tuple[str, str, str, str, str]] = []
        rows.append(bench_help(env, reps))
        rows.append(bench_run(env, repo, reps))
        rows.append(bench_log_delay(env, repo))
        rows.append(bench_dashboard_log_delay(env, repo))
        rows.extend(bench_ps(work, args.runs if not args.quick else 2000))
        rows.append(bench_dashboard(work, args.runs if not args.quick else 2000))
        rows.extend(bench_deps(work, reps=2 if args.quick else 3))
        rows.extend(recovery_rows(work))
        rows.extend(bench_masking(work, reps=1 if args.quick else 3))
        rows.extend(s3_rows(work, args))
        rows.extend(bench_aws(env, repo, DSTACK, reps))
        rows.extend(code_rows(work, args, reps))
        print_table(rows)


def code_rows(work: Path, args: argparse.Namespace, reps: int) -> list:  # type: ignore[type-arg]
    """The code section (``scripts/bench_code.py``): big repositories against Metaflow."""
    from bench_code import bench_code

    return bench_code(work, reps=min(reps, 5), quick=args.quick)


def recovery_rows(work: Path) -> list:  # type: ignore[type-arg]
    """The recovery section (``scripts/bench_recovery.py``): kill -9 to the next attempt."""
    from bench_recovery import bench_recovery

    return bench_recovery(work, DSTACK, make_repo)


def bench_aws(env: dict[str, str], repo: Path, dstack: list[str], reps: int) -> list:
    """The AWS section (``scripts/bench_aws.py``): `run --plan` and `--help`'s imports."""
    from bench_aws import bench_aws as rows

    return rows(env, repo, dstack, reps)


def s3_rows(work: Path, args: argparse.Namespace) -> list[tuple[str, str, str, str, str]]:
    """The S3 section (``scripts/bench_s3.py``): a shared bucket on a moto server."""
    from bench_s3 import bench_s3

    return bench_s3(
        work,
        reps=1 if args.quick else 3,
        runs=2000 if args.quick else args.runs,
        ticks=40 if args.quick else 100,
        make_repo=make_repo,
        log_delay=bench_log_delay,
    )


def bench_help(env: dict[str, str], reps: int) -> tuple[str, str, str, str, str]:
    run([*DSTACK, "--help"], env)  # warm the page cache
    ours = statistics.median(timed(lambda: run([*DSTACK, "--help"], env), reps))
    base = statistics.median(timed(lambda: run([sys.executable, "-c", "pass"], env), reps))
    return (
        "dstack --help",
        f"{ours:.3f}s",
        f"python -c pass {base:.3f}s",
        f"{ours / base:.1f}x",
        "<= 0.25s",
    )


def bench_run(env: dict[str, str], repo: Path, reps: int) -> tuple[str, str, str, str, str]:
    run([*DSTACK, "run", "echo"], env, repo)  # first run: builds the cached Python env
    ours = statistics.median(timed(lambda: run([*DSTACK, "run", "echo"], env, repo), reps))
    base = statistics.median(timed(lambda: run(["bash", "-c", "echo hello"], env, repo), reps))
    return (
        "dstack run (1 command, warm)",
        f"{ours:.3f}s",
        f"bash -c {base:.3f}s",
        f"{ours / base:.0f}x",
        "<= 0.5s",
    )


def bench_log_delay(
    env: dict[str, str],
    repo: Path,
    *,
    label: str = "log delay job→attached CLI",
    target: str = "p95 <= 0.3s",
) -> tuple[str, str, str, str, str]:
    proc = subprocess.Popen(
        [*DSTACK, "run", "ticks"], env=env, cwd=repo, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    delays = []
    for line in proc.stdout:
        seen = time.time()
        if line.startswith("tick "):
            delays.append(seen - float(line.split()[1]))
    proc.wait()
    delays.sort()
    p50 = delays[len(delays) // 2]
    p95 = delays[int(len(delays) * 0.95) - 1]
    return (label, f"p95 {p95:.3f}s", f"p50 {p50:.3f}s", f"n={len(delays)}", target)


def bench_dashboard_log_delay(env: dict[str, str], repo: Path) -> tuple[str, str, str, str, str]:
    """From a job's print to the dashboard's log stream (what the page appends), side by side
    with the attached CLI's delay on the same machine."""
    import http.client
    import json
    import re

    with dashboard(env) as (host, port, cookie):
        submitted = subprocess.run(
            # 10 s of ticks: most are printed after the stream opened, however slow the start
            [*DSTACK, "run", "-d", "ticks-long"],
            env=env,
            cwd=repo,
            capture_output=True,
            text=True,
        )
        run_name = submitted.stderr.split("Run ", 1)[1].split()[0]
        repo_id = "github.com/acme/bench"  # make_repo's remote
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        conn.request("GET", f"/run/logs?repo={repo_id}&run={run_name}",
                     headers={"Cookie": cookie})  # fmt: skip
        reply = conn.getresponse()
        delays = []
        opened = None
        for raw in reply.fp:
            if raw.startswith(b"event: end"):
                break
            opened = opened or time.time()  # the first event: the stream is open
            if raw.startswith(b"data: "):
                seen = time.time()
                text = json.loads(raw[6:]).get("html", "")
                printed = [float(t) for t in re.findall(r"tick (\d+\.\d+)", text)]
                # only lines printed once the stream was open are live
                delays.extend(seen - at for at in printed if at > opened)
        conn.close()
    live = sorted(delays)
    if not live:
        return ("log delay job→dashboard stream", "no line seen live", "", "n=0", "<= 1s")
    p50, p95 = live[len(live) // 2], live[int(len(live) * 0.95) - 1]
    return ("log delay job→dashboard stream", f"p95 {p95:.3f}s", f"p50 {p50:.3f}s",
            f"n={len(live)}", "<= 1s")  # fmt: skip


def print_table(rows: list[tuple[str, str, str, str, str]]) -> None:
    headers = ("benchmark", "dstack", "baseline (same run)", "ratio", "target")
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(5)]
    for row in [headers, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    print(json.dumps({"rows": rows}), file=sys.stderr)


if __name__ == "__main__":
    main()
