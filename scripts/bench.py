"""Benchmarks of dstack against the baselines its issues name, measured side by side.

Each section prints what it measured, the baseline measured in the same run, the ratio and
the target. Nothing here is asserted by the tests; this is for people and for issue notes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DSTACK = [str(ROOT / ".venv/bin/dstack")] if (ROOT / ".venv/bin/dstack").exists() else ["dstack"]
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
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--runs", type=int, default=10_000, help="runs seeded for `ps -a`")
    args = parser.parse_args()
    reps = 3 if args.quick else 7
    with tempfile.TemporaryDirectory(prefix="dstack-bench-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "DSTACK_HOME": str(work / "home"), "NO_COLOR": "1"}
        repo = make_repo(work / "repo", WORKFLOWS.replace("{n}", "40" if args.quick else "100"))
        rows: list[tuple[str, str, str, str, str]] = []
        rows.append(bench_help(env, reps))
        rows.append(bench_run(env, repo, reps))
        rows.append(bench_log_delay(env, repo))
        rows.extend(bench_ps(work, args.runs if not args.quick else 2000))
        print_table(rows)


def make_repo(path: Path, workflows: str) -> Path:
    (path / ".dstack").mkdir(parents=True)
    (path / ".dstack/workflows.yaml").write_text(workflows)
    for cmd in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "remote", "add", "origin", "https://github.com/acme/bench.git"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=b", "-c", "user.email=b@x", "commit", "-qm", "init"],
    ):
        subprocess.run(cmd, cwd=path, check=True)
    return path


def timed(fn: Callable[[], object], reps: int) -> list[float]:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def run(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    out = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {out.stderr}")
    return out.stdout


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


def bench_log_delay(env: dict[str, str], repo: Path) -> tuple[str, str, str, str, str]:
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
    return (
        "log delay job→attached CLI",
        f"p95 {p95:.3f}s",
        f"p50 {p50:.3f}s",
        f"n={len(delays)}",
        "p95 <= 0.3s",
    )


def bench_ps(work: Path, count: int) -> list[tuple[str, str, str, str, str]]:
    """`dstack ps -a` on stores seeded with ``count`` and 100 finished runs."""
    results = []
    timings = {}
    for runs in (100, count):
        home = work / f"ps-{runs}"
        seed_store(home / "store", runs)
        env = {**os.environ, "DSTACK_HOME": str(home), "NO_COLOR": "1"}
        repo = work / "repo"
        out = run([*DSTACK, "ps", "-a"], env, repo)
        assert len(out.splitlines()) == runs + 1, "ps -a did not show every run"
        show_all = [*DSTACK, "ps", "-a"]
        show_last = [*DSTACK, "ps", "-a", "-n", "20"]
        timings[runs] = (
            statistics.median(timed(lambda e=env, c=show_all, r=repo: run(c, e, r), 3)),
            statistics.median(timed(lambda e=env, c=show_last, r=repo: run(c, e, r), 3)),
        )
    all_small, last_small = timings[100]
    all_big, last_big = timings[count]
    results.append(
        (
            f"dstack ps -a ({count} runs)",
            f"{all_big:.3f}s",
            f"100 runs {all_small:.3f}s",
            f"{all_big / all_small:.1f}x",
            "<= 1s",
        )
    )
    results.append(
        (
            f"dstack ps -a -n 20 ({count} runs)",
            f"{last_big:.3f}s",
            f"100 runs {last_small:.3f}s",
            f"{last_big / last_small:.2f}x",
            "~1x (grows with shown)",
        )
    )
    shutil.rmtree(work / f"ps-{count}", ignore_errors=True)
    return results


def seed_store(root: Path, runs: int) -> None:
    """Write ``runs`` finished runs through the real state layer, as dstack would."""
    from dstack import state
    from dstack.backends.local_storage import LocalStorage
    from dstack.models import JobSpec, JobState, JobStatus, Owner, RepoSnapshot, RunRecord

    storage = LocalStorage(root)
    repo = RepoSnapshot(repo_id="github.com/acme/bench", code_key="codes/x.tar.gz")
    owner = Owner(git_name="Bench", user="bench")
    start = time.time() - runs
    for i in range(runs):
        name = f"seeded-run-{i}"
        at = start + i
        record = RunRecord(
            run_name=name,
            repo_id=repo.repo_id,
            workflow="echo",
            provider="bash",
            submitted_at=at,
            owner=owner,
            repo=repo,
        )
        spec = JobSpec(
            run_name=name,
            workflow="echo",
            provider="bash",
            repo=repo,
            submitted_at=at,
            commands=["echo hello"],
        )
        state.create_run(storage, record, [spec])
        state.write_job_state(
            storage,
            spec,
            owner.display,
            JobState(status=JobStatus.DONE, exit_code=0, updated_at=at + 1),
        )


def print_table(rows: list[tuple[str, str, str, str, str]]) -> None:
    headers = ("benchmark", "dstack", "baseline (same run)", "ratio", "target")
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(5)]
    for row in [headers, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    print(json.dumps({"rows": rows}), file=sys.stderr)


if __name__ == "__main__":
    main()
