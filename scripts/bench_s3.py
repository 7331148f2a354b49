"""The S3 section of ``scripts/bench``: dstack on a shared bucket, side by side with awscli.

Everything runs against one moto server on loopback, in a process of its own (as a real S3
would be; in ours it would share our GIL):

- artifacts: 1,000 files of 64 KiB, and one file of 256 MiB. Upload: a run writes them and
  exits; dstack's time is from the job's last line to the runner's final state (the runner's
  last artifact sync, its log flush and state writes). Baseline: ``aws s3 sync`` of the same
  files, net of awscli's own start-up (measured on an ``aws s3 ls`` of the buckets), since
  the runner's start-up is not counted either. Download: ``dstack artifacts download`` against
  ``aws s3 sync`` of the same objects, both whole commands, start-ups included;
- the log delay with the S3 store (its flush and poll intervals are 0.25 s);
- ``dstack ps -a`` on buckets seeded with 100 and with N runs, in seconds and in S3 requests
  (counted by ``tests.fault_proxy.FaultProxy`` put in front of moto for one more call);
- where an upload's time goes: the same files through ``dstack tags add -a`` and ``aws s3 sync``,
  whole commands, with the CPU seconds each client and the moto server spent.

Reading the ratios: moto (whose per-request module scan ``tests.moto_server`` takes once, for
every client alike) still spends about 1.4 ms of CPU on every request and 6-8 ms on every MiB
stored, on the same two cores as the clients. dstack moves files through the AWS CRT, whose
client CPU per request and per MiB is a fraction of awscli's (the CPU row), so where the work is
requests (1,000 small files) or where fewer requests do the same work (a large download in a
few ranged parts) the ratio shows it; a large upload costs moto the same per MiB whoever sends
it, and there both tools meet that floor (compare the moto CPU of the two columns).
"""

from __future__ import annotations

import functools
import os
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_common import DSTACK, ROOT, run, timed
from bench_servers import moto_process, process_cpu, s3rver_process, s3rver_ready

AWS = [str(ROOT / ".venv/bin/aws")] if (ROOT / ".venv/bin/aws").exists() else ["aws"]
REPO_ID = "github.com/acme/bench"
STATE_BUCKET = "bench-state"
AWS_BUCKET = "bench-awscli"
MiB = 1 << 20

Row = tuple[str, str, str, str, str]

GENERATE = """\
import os, sys, time
from pathlib import Path
count, size = int(sys.argv[1]), int(sys.argv[2])
tmp = Path(".gen")
tmp.mkdir()
for i in range(count):
    (tmp / f"f{i:05d}.bin").write_bytes(os.urandom(size))
tmp.rename("out")  # the files appear at once: no sync pass sees half of them
print(f"generated {time.time():.6f}", flush=True)
"""
WORKFLOWS = """\
workflows:
  - name: many
    commands:
      - python generate.py 1000 65536
    artifacts:
      - out
  - name: big
    commands:
      - python generate.py 1 268435456
    artifacts:
      - out
  - name: ticks
    commands:
      - python -c "import time; [(print(f'tick {time.time():.6f}', flush=True), time.sleep(0.05)) for _ in range({n})]"
"""
SETS = {"many": (1000, 64 << 10, "1000 x 64 KiB"), "big": (1, 256 * MiB, "256 MiB")}


def bench_s3(
    work: Path,
    *,
    reps: int,
    runs: int,
    ticks: int,
    make_repo: Callable[[Path, str], Path],
    log_delay: Callable[..., Row],
) -> list[Row]:
    """Every S3 row of the table: on moto, then the whole-command transfer rows on s3rver."""
    rows: list[Row] = []
    with moto_process() as (endpoint, pid):
        env, repo, storage = _setup(work / "moto", endpoint, ticks, make_repo)
        rows.extend(_transfer_rows(work / "moto", env, repo, storage, endpoint, pid, reps, "moto"))
        rows.append(log_delay(env, repo, label="log delay job→CLI (S3 store)", target="<= 1.5s"))
        rows.extend(bench_ps_s3(work, endpoint, runs))
    binary = s3rver_ready()
    if binary is not None:
        with s3rver_process(binary, work / "s3rver-data") as (endpoint, pid):
            env, repo, storage = _setup(work / "s3rver", endpoint, ticks, make_repo, warm=False)
            rows.extend(
                _transfer_rows(work / "s3rver", env, repo, storage, endpoint, pid, reps, "s3rver")
            )
    return rows


def _setup(
    work: Path,
    endpoint: str,
    ticks: int,
    make_repo: Callable[[Path, str], Path],
    *,
    warm: bool = True,
) -> tuple[dict[str, str], Path, Any]:
    """The buckets, a home and a repo with the bench's workflows, its Python environment warm."""
    env = s3_env(work / "home", endpoint, STATE_BUCKET)
    storage = _storage(endpoint, STATE_BUCKET)
    for bucket in (STATE_BUCKET, AWS_BUCKET):
        storage._client().create_bucket(Bucket=bucket)
    repo = make_repo(work / "repo", WORKFLOWS.replace("{n}", str(ticks)))
    (repo / "generate.py").write_text(GENERATE)
    run(["git", "add", "-A"], env, repo)
    run(["git", "-c", "user.name=b", "-c", "user.email=b@x", "commit", "-qm", "gen"], env, repo)
    if warm:
        run([*DSTACK, "run", "ticks"], env, repo)  # the job's Python environment
    return env, repo, storage


def _transfer_rows(
    work: Path,
    env: dict[str, str],
    repo: Path,
    storage: Any,
    endpoint: str,
    pid: int,
    reps: int,
    server: str,
) -> list[Row]:
    """On moto: runs' artifacts up and down, then the whole-command rows with CPU. On another
    server, the whole-command rows only (no runs: s3rver does not replace objects atomically,
    so a job state read while it is rewritten can come back cut short)."""
    rows: list[Row] = []
    if server == "moto":
        list_buckets = [*AWS, "s3", "ls", "--endpoint-url", endpoint]
        startup = statistics.median(timed(lambda: run(list_buckets, env), 3))
        for name in SETS:
            rows.extend(bench_transfers(work, env, repo, storage, endpoint, name, reps, startup))
    for name in SETS:
        rows.extend(bench_cli(work, env, repo, endpoint, pid, name, min(reps, 3), server))
    if server != "moto":
        rows = [(f"{row[0]} · {server}", *row[1:]) for row in rows]
    return rows


def bench_transfers(
    work: Path,
    env: dict[str, str],
    repo: Path,
    storage: Any,
    endpoint: str,
    name: str,
    reps: int,
    aws_startup: float,
) -> list[Row]:
    from dstack import state

    count, size, label = SETS[name]
    total = count * size
    local = work / f"aws-src-{name}"
    (local / "out").mkdir(parents=True)
    for i in range(count):
        (local / "out" / f"f{i:05d}.bin").write_bytes(os.urandom(size))
    up_ours, up_aws, down_ours, down_aws = [], [], [], []
    for rep in range(reps):
        out = run([*DSTACK, "run", name], env, repo)
        generated = float(out.split("generated ")[1].split()[0])
        run_name = run([*DSTACK, "ps", "-a", "-n", "1", "--json"], env, repo).split('"run": "')[1]
        run_name = run_name.split('"')[0]
        job = state.read_job_state(storage, REPO_ID, run_name, 0)
        assert job.finished_at is not None and job.status.value == "done", job
        up_ours.append(job.finished_at - generated)
        prefix = state.artifacts_prefix(REPO_ID, run_name, 0)
        stored = list(storage.list_objects(prefix))
        assert len(stored) == count and sum(i.size for i in stored) == total, "artifacts missing"

        target = f"s3://{AWS_BUCKET}/up-{name}-{rep}/"
        start = time.perf_counter()
        run([*AWS, "s3", "sync", str(local), target, "--endpoint-url", endpoint, "--quiet"], env)
        up_aws.append(time.perf_counter() - start - aws_startup)

        ours_dir, aws_dir = work / f"down-ours-{name}-{rep}", work / f"down-aws-{name}-{rep}"
        start = time.perf_counter()
        run([*DSTACK, "artifacts", "download", run_name, "-o", str(ours_dir)], env, repo)
        down_ours.append(time.perf_counter() - start)
        source = f"s3://{STATE_BUCKET}/{prefix}"
        start = time.perf_counter()
        run([*AWS, "s3", "sync", source, str(aws_dir), "--endpoint-url", endpoint, "--quiet"], env)
        down_aws.append(time.perf_counter() - start)
        for folder in (ours_dir, aws_dir):
            got = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
            assert got >= total, f"{folder}: {got} bytes, expected {total}"
        shutil.rmtree(ours_dir)
        shutil.rmtree(aws_dir)
        run([*DSTACK, "rm", run_name, "-y"], env, repo)
    shutil.rmtree(local)
    return [
        _ratio_row(f"S3 upload {label} (run artifacts)", total, up_ours, up_aws,
                   f"aws s3 sync, net of {aws_startup:.2f}s start-up"),
        _ratio_row(f"S3 download {label} (artifacts download)", total, down_ours, down_aws,
                   "aws s3 sync"),
    ]  # fmt: skip


def bench_cli(
    work: Path,
    env: dict[str, str],
    repo: Path,
    endpoint: str,
    pid: int,
    name: str,
    reps: int,
    server: str,
) -> list[Row]:
    """The same files up and down through whole commands, with the CPU each client and the
    server spent (medians): ``dstack tags add -a`` (the store's upload path, as a run's
    artifacts take it) and ``dstack artifacts download :TAG``, against ``aws s3 sync``."""
    count, size, label = SETS[name]
    local = work / f"cli-src-{name}"
    local.mkdir(parents=True)
    for i in range(count):
        (local / f"f{i:05d}.bin").write_bytes(os.urandom(size))
    costs: dict[str, list[tuple[float, float, float]]] = {k: [] for k in ("up", "aup", "dn", "adn")}
    for rep in range(reps):
        tag, prefix = f"cli-{name}-{rep}", f"s3://{AWS_BUCKET}/cli-{name}-{rep}/"
        ours_dir, aws_dir = work / f"cli-ours-{name}-{rep}", work / f"cli-aws-{name}-{rep}"
        commands = {
            "up": ([*DSTACK, "tags", "add", tag, "-a", str(local)], repo),
            "aup": ([*AWS, "s3", "sync", str(local), prefix, "--endpoint-url", endpoint, "--quiet"],
                    None),
            "dn": ([*DSTACK, "artifacts", "download", f":{tag}", "-o", str(ours_dir)], repo),
            "adn": ([*AWS, "s3", "sync", prefix, str(aws_dir), "--endpoint-url", endpoint,
                     "--quiet"], None),
        }  # fmt: skip
        for kind, (cmd, cwd) in commands.items():
            costs[kind].append(_costs(functools.partial(run, cmd, env, cwd), pid))
        for folder in (ours_dir, aws_dir):
            got = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
            assert got == count * size, f"{folder}: {got} bytes, expected {count * size}"
            shutil.rmtree(folder)
        run([*DSTACK, "tags", "delete", tag, "-y"], env, repo)
    shutil.rmtree(local)
    mib = count * size / MiB
    rows = []
    for ours, theirs, what in (("up", "aup", "upload"), ("dn", "adn", "download")):
        mine, base = (
            tuple(statistics.median(x) for x in zip(*costs[k], strict=True)) for k in (ours, theirs)
        )
        command = "tags add -a" if ours == "up" else "artifacts download :TAG"
        rows.append(
            (
                f"S3 {what} {label} ({command})",
                f"{mine[0]:.2f}s {mib / mine[0]:.0f} MiB/s; CPU: us {mine[1]:.2f}s, "
                f"{server} {mine[2]:.2f}s",
                f"aws s3 sync {base[0]:.2f}s; CPU: aws {base[1]:.2f}s, {server} {base[2]:.2f}s",
                f"{base[0] / mine[0]:.2f}x",
                f"(whole commands; client CPU {base[1] / mine[1]:.1f}x less)",
            )
        )
    return rows


def _costs(fn: Callable[[], object], moto_pid: int) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds of the command run by ``fn``, CPU seconds of the server)."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    server = process_cpu(moto_pid)
    start = time.perf_counter()
    fn()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    return wall, client, process_cpu(moto_pid) - server


def bench_ps_s3(work: Path, endpoint: str, count: int) -> list[Row]:
    """`dstack ps` on buckets seeded with 100 and ``count`` finished runs: time and requests."""
    from tests.fault_proxy import FaultProxy

    measured: dict[int, dict[str, tuple[float, int]]] = {}
    commands = {"ps -a": ["ps", "-a"], "ps -a -n 20": ["ps", "-a", "-n", "20"], "ps": ["ps"]}
    for runs in (100, count):
        bucket = f"bench-ps-{runs}"
        storage = _storage(endpoint, bucket)
        storage._client().create_bucket(Bucket=bucket)
        seed_bucket(storage, work / f"seed-{runs}", runs)
        repo = work / "moto" / "repo"
        env = s3_env(work / f"ps-home-{runs}", endpoint, bucket)
        lines = run([*DSTACK, "ps", "-a"], env, repo).splitlines()
        assert len(lines) == runs + 1, f"ps -a showed {len(lines) - 1} of {runs} runs"
        measured[runs] = {}
        with FaultProxy(endpoint) as proxy:
            counted = {**env, "DSTACK_AWS_ENDPOINT_URL": proxy.url}
            for label, args in commands.items():
                seconds = statistics.median(
                    timed(lambda a=args, e=env, r=repo: run([*DSTACK, *a], e, r), 3)
                )
                before = proxy.requests
                run([*DSTACK, *args], counted, repo)
                measured[runs][label] = (seconds, proxy.requests - before)
    rows = []
    for label, target in (
        ("ps -a", "requests ~ runs/1000"),
        ("ps -a -n 20", "requests same as 100"),
        ("ps", "requests same as 100"),
    ):
        (small_s, small_n), (big_s, big_n) = measured[100][label], measured[count][label]
        rows.append(
            (
                f"dstack {label}, {count} runs (S3)",
                f"{big_s:.2f}s {big_n} requests",
                f"100 runs: {small_s:.2f}s {small_n} requests",
                f"{big_n / small_n:.1f}x requests",
                target,
            )
        )
    return rows


def seed_bucket(storage: Any, folder: Path, runs: int) -> None:
    """``runs`` finished runs written by the real state layer into a local folder, then copied
    object for object into the bucket (writing them one by one over S3 would take minutes)."""
    from dstack import state
    from dstack.lifecycle import Writer, set_state
    from dstack.models import JobSpec, JobState, JobStatus, Owner, RepoSnapshot, RunRecord
    from dstack.storage.local import LocalStorage

    local = LocalStorage(folder)
    repo = RepoSnapshot(repo_id=REPO_ID, code_key="codes/x.tar.gz")
    owners = [Owner(git_name="Ada", user="ada"), Owner(git_name="Bob", user="bob")]
    start = time.time() - runs
    for i in range(runs):
        name, at, owner = f"seeded-run-{i}", start + i, owners[i % 2]
        record = RunRecord(run_name=name, repo_id=REPO_ID, workflow="echo", provider="bash",
                           submitted_at=at, owner=owner, repo=repo)  # fmt: skip
        spec = JobSpec(run_name=name, workflow="echo", provider="bash", repo=repo,
                       submitted_at=at, commands=["echo hello"])  # fmt: skip
        state.create_run(local, record, [spec])
        done = JobState(status=JobStatus.DONE, exit_code=0, updated_at=at + 1, finished_at=at + 1)
        set_state(local, spec, owner.display, Writer.RUNNER, done)
        local.put(state.name_key(name), b"")
    files = [(p, p.relative_to(folder).as_posix()) for p in folder.rglob("*") if p.is_file()]
    storage.upload_tree(files, workers=32)
    shutil.rmtree(folder)


def s3_env(home: Path, endpoint: str, bucket: str) -> dict[str, str]:
    return {
        **os.environ,
        "DSTACK_HOME": str(home),
        "NO_COLOR": "1",
        "DSTACK_AWS_S3_BUCKET": bucket,
        "DSTACK_AWS_ENDPOINT_URL": endpoint,
    }


def _storage(endpoint: str, bucket: str) -> Any:
    from dstack.storage.s3.storage import S3Storage

    return S3Storage(bucket, endpoint_url=endpoint)


def _ratio_row(label: str, total: int, ours: list[float], base: list[float], how: str) -> Row:
    mine, theirs = statistics.median(ours), statistics.median(base)
    mib = total / MiB
    return (
        label,
        f"{mine:.2f}s {mib / mine:.0f} MiB/s",
        f"{how} {theirs:.2f}s {mib / theirs:.0f} MiB/s",
        f"{theirs / mine:.2f}x",
        ">= 1.5x",
    )
