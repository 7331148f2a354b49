"""The store-size section of ``scripts/bench``: `dstack ps -a` and the dashboard's first page on
stores seeded with many finished runs, against the same on 100 runs."""

from __future__ import annotations

import os
import shutil
import statistics
import time
from pathlib import Path

from bench_common import DSTACK, dashboard, run, timed


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


def bench_dashboard(work: Path, count: int) -> tuple[str, str, str, str, str]:
    """`dstack dashboard`: the first page of a repo's runs, on stores of ``count`` and 100 runs
    (the first request after start-up, and the median of 5 more)."""
    import http.client

    timings = {}
    for runs in (100, count):
        home = work / f"dash-{runs}"
        seed_store(home / "store", runs)
        env = {**os.environ, "DSTACK_HOME": str(home), "NO_COLOR": "1"}
        with dashboard(env) as (host, port, cookie):

            def first_page(h: str = host, p: str = port, c: str = cookie) -> None:
                conn = http.client.HTTPConnection(h, int(p), timeout=60)
                conn.request("GET", "/runs?repo=github.com/acme/bench",
                             headers={"Cookie": c})  # fmt: skip
                reply = conn.getresponse()
                assert reply.status == 200 and b"seeded-run-" in reply.read()
                conn.close()

            cold = timed(first_page, 1)[0]
            timings[runs] = (cold, statistics.median(timed(first_page, 5)))
        shutil.rmtree(home, ignore_errors=True)
    cold_big, warm_big = timings[count]
    return (
        f"dashboard runs page 1 ({count} runs)",
        f"{warm_big:.3f}s (first {cold_big:.3f}s)",
        f"100 runs {timings[100][1]:.3f}s",
        f"{warm_big / timings[100][1]:.1f}x",
        "<= 1s",
    )


def seed_store(root: Path, runs: int) -> None:
    """Write ``runs`` finished runs through the real state layer, as dstack would."""
    from dstack import state
    from dstack.lifecycle import Writer, set_state
    from dstack.models import JobSpec, JobState, JobStatus, Owner, RepoSnapshot, RunRecord
    from dstack.storage.local import LocalStorage

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
        done = JobState(status=JobStatus.DONE, exit_code=0, updated_at=at + 1)
        set_state(storage, spec, owner.display, Writer.RUNNER, done)
