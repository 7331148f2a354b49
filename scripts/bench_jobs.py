"""The jobs section of ``scripts/bench``: dependencies fetched from S3 against ``aws s3 sync``,
and secret masking on a big log against no secrets."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from bench_common import DSTACK, ROOT, make_repo, run, timed
from bench_servers import moto_process


def bench_deps(work: Path, reps: int = 3, mib: int = 256) -> list[tuple[str, str, str, str, str]]:
    """Deps on S3 (a moto server on loopback): the first consumer of a ``mib`` MiB uploaded tag
    (download into the machine cache, then into the job's folder) against ``aws s3 sync`` of the
    same objects; and the bytes a second consumer on the same machine downloads (target: 0)."""
    # moto in a process of its own, as a real S3 would be: in ours it would share our GIL
    with moto_process() as (endpoint, _pid):
        return _deps_rows(work, endpoint, reps, mib)


def _deps_rows(
    work: Path, endpoint: str, reps: int, mib: int
) -> list[tuple[str, str, str, str, str]]:
    import boto3

    from dstack.models import JobSpec, RepoSnapshot
    from dstack.runner.deps import fetch_deps
    from dstack.services import tags
    from dstack.services.context import Context
    from dstack.storage.s3.storage import S3Storage

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
    storage = S3Storage("bench", endpoint_url=endpoint)
    data = work / "deps-data"
    sizes = [32] * 6 + [1] * (mib - 6 * 32)  # a few large files and many small ones, MiB
    for i, size in enumerate(sizes):
        path = data / "dataset" / f"part-{i:03d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size << 20))
    repo_id = "github.com/acme/bench"
    ctx = Context(storage=storage, repo_path=data, _repo_id=repo_id)
    tag = tags.add_upload_tag(ctx, "big", tags.collect_upload([Path("dataset")], data))
    shutil.rmtree(data)
    repo = RepoSnapshot(repo_id=repo_id, code_key="codes/x.tar.gz")
    deps = [tag.as_dependency()]
    spec = JobSpec(run_name="x-y-1", workflow="w", provider="bash", repo=repo, deps=deps)
    prefix = f"s3://bench/repos/{repo_id}/tagdata/big/{tag.upload_id}/"
    aws = [str(ROOT / ".venv/bin/aws"), "s3", "sync", prefix]
    # awscli's own start-up and one list request, which a sync pays too: measured next to
    # each sync, so that both see the same machine
    startup_cmd = [str(ROOT / ".venv/bin/aws"), "s3", "ls", "s3://bench/none/"]
    startup_cmd += ["--endpoint-url", endpoint]
    ours_times, aws_times, startups, second_bytes, second_times = [], [], [], [], []
    for rep in range(reps):
        startups.extend(timed(lambda: subprocess.run(startup_cmd, capture_output=True), 1))
        target = work / f"aws-{rep}"
        start = time.perf_counter()
        run([*aws, str(target), "--endpoint-url", endpoint, "--quiet"], dict(os.environ))
        aws_times.append(time.perf_counter() - start)
        assert sum(f.stat().st_size for f in target.rglob("*") if f.is_file()) == mib << 20
        shutil.rmtree(target)
        cache = work / f"cache-{rep}"
        start = time.perf_counter()
        first = fetch_deps(storage, spec, work / f"job-{rep}-1", cache)
        ours_times.append(time.perf_counter() - start)
        assert first.downloaded_bytes == first.size == mib << 20, first
        start = time.perf_counter()
        second = fetch_deps(storage, spec, work / f"job-{rep}-2", cache)
        second_times.append(time.perf_counter() - start)
        second_bytes.append(second.downloaded_bytes)
        for folder in (cache, work / f"job-{rep}-1", work / f"job-{rep}-2"):
            shutil.rmtree(folder)
    ours, gross = statistics.median(ours_times), statistics.median(aws_times)
    startup = statistics.median(startups)
    base = statistics.median(a - b for a, b in zip(aws_times, startups, strict=True))
    if base > 0:
        baseline = (
            f"aws s3 sync {gross:.2f}s, net of {startup:.2f}s start-up {mib / base:.0f} MiB/s"
        )
        ratio = f"{base / ours:.2f}x ({gross / ours:.2f}x gross)"
    else:  # a loaded machine can make aws's start-up look longer than its whole sync
        baseline = f"aws s3 sync {gross:.2f}s {mib / gross:.0f} MiB/s (start-up not separable)"
        ratio = f"{gross / ours:.2f}x gross"
    return [
        (
            f"deps: first consumer, {mib} MiB tag (S3)",
            f"{ours:.2f}s {mib / ours:.0f} MiB/s",
            baseline,
            ratio,
            ">= 1.5x",
        ),
        (
            f"deps: second consumer, {mib} MiB tag",
            f"{max(second_bytes)} B downloaded",
            f"first {mib << 20} B",
            f"{statistics.median(second_times):.2f}s",
            "0 B",
        ),
    ]


def bench_masking(
    work: Path, reps: int = 3, mib: int = 100
) -> list[tuple[str, str, str, str, str]]:
    """`dstack run` of a job printing ``mib`` MiB of log lines, attached, end to end (job →
    runner → store → CLI): a repo with 10 secrets of up to 4 KB, and one with a 100 KB secret,
    against a repo with none, runs interleaved."""
    import random

    rng = random.Random(7)
    lines = b"".join(
        f"epoch {rng.randint(0, 99)} step {rng.randint(0, 10**6)} loss {rng.random():.5f} "
        f"acc {rng.random():.4f}\n".encode()
        for _ in range(20_000)
    )
    output = work / "mask-output.log"
    output.write_bytes((lines * (mib * 2**20 // len(lines) + 1))[: mib * 2**20])
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    sizes = (16, 32, 40, 64, 128, 256, 512, 1024, 2048, 4096)
    cases = {
        "none": [],
        "ten": ["".join(rng.choice(alphabet) for _ in range(n)) for n in sizes],
        "big": ["".join(rng.choice(alphabet) for _ in range(100_000))],
    }
    env = {**os.environ, "DSTACK_HOME": str(work / "mask-home"), "NO_COLOR": "1"}
    workflows = f"workflows:\n  - name: big\n    commands:\n      - cat {output}\n"
    repos = {label: make_repo(work / f"mask-{label}", workflows) for label in cases}
    for label, values in cases.items():  # one repo each: secrets belong to a repo
        url = f"https://github.com/acme/bench-mask-{label}.git"
        subprocess.run(["git", "remote", "set-url", "origin", url], cwd=repos[label], check=True)
        for i, value in enumerate(values):
            subprocess.run([*DSTACK, "secrets", "add", f"S{i}", "-y"], input=value, text=True,
                           env=env, cwd=repos[label], check=True, capture_output=True)  # fmt: skip
        run([*DSTACK, "run", "big"], env, repos[label])  # the first run builds the Python env
    times: dict[str, list[float]] = {label: [] for label in cases}
    for _ in range(reps):  # interleaved, so load on the machine hits all alike
        for label in cases:
            times[label] += timed(lambda r=repos[label]: run([*DSTACK, "run", "big"], env, r), 1)  # type: ignore[misc]
    result = {label: statistics.median(found) for label, found in times.items()}
    base = result["none"]
    return [
        (
            f"dstack run, {mib} MB output, 10 secrets <= 4 KB",
            f"{result['ten']:.2f}s",
            f"no secret {base:.2f}s",
            f"{result['ten'] / base:.2f}x",
            "<= 1.10x",
        ),
        (
            f"dstack run, {mib} MB output, one 100 KB secret",
            f"{result['big']:.2f}s",
            f"no secret {base:.2f}s",
            f"{result['big'] / base:.2f}x",
            "near-linear (was 150s)",
        ),
    ]
