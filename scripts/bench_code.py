"""The code section of ``scripts/bench``: ``dstack run`` in big repositories, side by side with
Metaflow's local run of the same repository.

Two repositories of committed small files (3,000 files, 12 MB; 30,000 files, about 120 MB),
each with a one-command ``hello`` workflow and a 2-step Metaflow ``HelloFlow`` (start → end).
For each, whole commands as a user types them:

- dstack's first run (a new ``DSTACK_HOME``: every file hashed, stored and placed), its
  unchanged re-run, and a re-run after one file is edited (medians);
- ``python hello_flow.py run`` (Metaflow, local runtime and local datastore), median;
- the same three dstack runs with the state in S3 (moto on loopback, in a process of its own,
  behind ``tests.fault_proxy.FaultProxy``), counting the requests and bytes each run makes for
  the code (``code/`` keys) and in all; and with the local store, the objects and bytes each run
  writes under the store's ``code/`` folder.

Metaflow is installed from PyPI into a virtualenv of its own under ``~/.cache/dstack-bench``
(its rows are skipped, with a note, when that cannot be done).
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_common import DSTACK, ROOT

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dstack-bench"
METAFLOW = "metaflow==2.19.39"

Row = tuple[str, str, str, str, str]

WORKFLOWS = """\
workflows:
  - name: hello
    commands:
      - echo hello
"""
FLOW = """\
from metaflow import FlowSpec, step


class HelloFlow(FlowSpec):
    @step
    def start(self):
        print("hello")
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    HelloFlow()
"""
#: (label, files, bytes per file, target for re-runs)
REPOS = [("3,000 files, 12 MB", 3000, 4096, 0.6), ("30,000 files, 120 MB", 30000, 4096, 1.5)]
#: the 120 MB repository is over the default limit of what a run ships (100MB)
LIMIT = {"DSTACK_MAX_CODE_SIZE": "1GB"}
_CODE_LINE = re.compile(r"\[dstack\] code ready in ([0-9.]+) s \((.*)\)")


def bench_code(work: Path, *, reps: int, quick: bool = False) -> list[Row]:
    """Every row of the section."""
    rows: list[Row] = []
    python = metaflow_python()
    repos = REPOS[:1] if quick else REPOS
    for label, count, size, target in repos:
        repo = make_big_repo(work / f"code-{count}", count, size)
        for part in (
            _local_rows(work, repo, label, python, reps, target),
            _s3_rows(work, repo, label),
        ):
            rows.extend(part)
            for row in part:  # as measured: the whole section takes minutes
                print("  ".join(row), file=sys.stderr, flush=True)
        shutil.rmtree(repo, ignore_errors=True)
    return rows


def make_big_repo(path: Path, count: int, size: int) -> Path:
    """A committed repository of ``count`` files of ``size`` bytes in folders of 100."""
    (path / ".dstack").mkdir(parents=True)
    (path / ".dstack/workflows.yaml").write_text(WORKFLOWS)
    (path / "hello_flow.py").write_text(FLOW)
    (path / ".gitignore").write_text(".metaflow/\n__pycache__/\n")  # Metaflow's local datastore
    line = (b"x = " + b"0123456789abcdef" * 4 + b"\n") * (size // 69 + 1)
    for i in range(count):
        folder = path / "src" / f"pkg{i // 100:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"mod{i:05d}.py").write_bytes(f"# {i}\n".encode() + line[: size - 8])
    for cmd in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "remote", "add", "origin", "https://github.com/acme/bench.git"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=b", "-c", "user.email=b@x", "commit", "-qm", "init"],
    ):
        subprocess.run(cmd, cwd=path, check=True)
    _age(path)
    return path


def metaflow_python() -> Path | None:
    """The Python of a virtualenv holding Metaflow (made once); None if it cannot be made."""
    venv = CACHE / "metaflow-venv"
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import metaflow"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    CACHE.mkdir(parents=True, exist_ok=True)
    made = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", METAFLOW]
    if made.returncode != 0 or subprocess.run(pip, capture_output=True).returncode != 0:
        print(
            f"bench: could not install {METAFLOW}: the Metaflow rows are skipped", file=sys.stderr
        )
        return None
    return python


def _local_rows(
    work: Path, repo: Path, label: str, python: Path | None, reps: int, target: float
) -> list[Row]:
    home = work / f"home-{repo.name}"
    env = {**os.environ, "DSTACK_HOME": str(home), "NO_COLOR": "1", **LIMIT}
    _warm_python(env, work)
    store = home / "store" / "code"
    first, first_line = _timed_run(env, repo)
    first_store = _folder_size(store)
    unchanged = []
    for _ in range(reps):
        seconds, unchanged_line = _timed_run(env, repo)
        unchanged.append(seconds)
    edited, written = [], []
    for i in range(reps):
        before = _folder_size(store)
        _edit(repo, i)
        seconds, edited_line = _timed_run(env, repo)
        edited.append(seconds)
        after = _folder_size(store)
        written.append((after[0] - before[0], after[1] - before[1]))
    base = _metaflow_median(python, repo, work, reps)
    base_text = f"metaflow run {base:.2f}s" if base else "metaflow: not installed"

    def ratio(seconds: float) -> str:
        return f"{seconds / base:.2f}x" if base else "-"

    mean_written = (written[-1][0], written[-1][1])
    return [
        (f"dstack run, {label}: first run", f"{first:.2f}s", base_text, ratio(first),
         f"say how much ({_code_part(first_line)})"),
        (f"dstack run, {label}: unchanged", f"{statistics.median(unchanged):.2f}s", base_text,
         ratio(statistics.median(unchanged)), f"<= {target}s ({_code_part(unchanged_line)})"),
        (f"dstack run, {label}: 1 file edited", f"{statistics.median(edited):.2f}s", base_text,
         ratio(statistics.median(edited)), f"<= {target}s ({_code_part(edited_line)})"),
        (f"local store writes per run, {label}",
         f"first {first_store[0]} objects {_mib(first_store[1])}",
         "unchanged 0 objects 0 B (none written)",
         f"1 edit: {mean_written[0]} objects {mean_written[1]} B", "grows with the change"),
    ]  # fmt: skip


def _s3_rows(work: Path, repo: Path, label: str) -> list[Row]:
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_s3 import _storage, s3_env
    from bench_servers import moto_process

    from tests.fault_proxy import FaultProxy

    rows: list[Row] = []
    with moto_process() as (endpoint, _pid), FaultProxy(endpoint) as proxy:
        bucket = f"bench-code-{repo.name}"
        _storage(endpoint, bucket)._client().create_bucket(Bucket=bucket)
        env = {**s3_env(work / f"s3-home-{repo.name}", proxy.url, bucket), **LIMIT}
        _warm_python(env, work)
        measured = []
        for what in ("first run", "unchanged", "1 file edited"):
            if what == "1 file edited":
                _edit(repo, 99)
            start_log, start_sizes = len(proxy.log), len(proxy.sizes)
            seconds, _ = _timed_run(env, repo)
            time.sleep(2)  # the runner's last writes (it outlives the attached CLI a little)
            log, sizes = proxy.log[start_log:], proxy.sizes[start_sizes:]
            code = [(up, down) for path, up, down in sizes if "/code/" in path]
            code_in, code_out = sum(c[0] for c in code), sum(c[1] for c in code)
            total_in = sum(s[1] for s in sizes)
            total_out = sum(s[2] for s in sizes)
            code_requests = sum(1 for _, path in log if "/code/" in path)
            measured.append((what, seconds, code_requests, code_in, code_out, len(log),
                             total_in, total_out))  # fmt: skip
    for what, seconds, n_code, c_in, c_out, n_all, t_in, t_out in measured:
        rows.append(
            (f"S3 store, {label}: {what}", f"{seconds:.2f}s",
             f"code: {n_code} requests, up {_mib(c_in)}, down {_mib(c_out)}",
             f"all: {n_all} requests, up {_mib(t_in)}, down {_mib(t_out)}",
             "code requests grow with the change")
        )  # fmt: skip
    return rows


def _warm_python(env: dict[str, str], work: Path) -> None:
    """Build the cached Python environment once, in a tiny repo, so no row pays for it."""
    tiny = work / "tiny-warm"
    if not tiny.exists():
        make_big_repo(tiny, 1, 16)
    subprocess.run([*DSTACK, "run", "hello"], env=env, cwd=tiny, capture_output=True, check=True)


def _timed_run(env: dict[str, str], repo: Path) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run([*DSTACK, "run", "hello"], env=env, cwd=repo, capture_output=True,
                         text=True)  # fmt: skip
    seconds = time.perf_counter() - start
    if out.returncode != 0 or "hello" not in out.stdout:
        raise SystemExit(f"dstack run hello failed: {out.stdout}{out.stderr}")
    match = _CODE_LINE.search(out.stdout)
    return seconds, (match.group(0) if match else "")


def _code_part(line: str) -> str:
    match = _CODE_LINE.search(line)
    return f"runner: code ready in {match.group(1)} s" if match else "no code line"


def _metaflow_median(python: Path | None, repo: Path, work: Path, reps: int) -> float | None:
    if python is None:
        return None
    env = {**os.environ, "USERNAME": "bench", "METAFLOW_HOME": str(work / "metaflow-home")}
    cmd = [str(python), "hello_flow.py", "--quiet", "run"]
    subprocess.run(cmd, cwd=repo, env=env, capture_output=True)  # first: creates .metaflow
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            print(f"bench: metaflow run failed: {done.stderr[-500:]}", file=sys.stderr)
            return None
    shutil.rmtree(repo / ".metaflow", ignore_errors=True)
    return statistics.median(times)


def _edit(repo: Path, i: int) -> None:
    path = repo / "src" / "pkg000" / "mod00000.py"
    path.write_bytes(path.read_bytes()[:-16] + f"# edit {i:08d}\n".encode()[:16].ljust(16))


def _age(repo: Path) -> None:
    """Files as a user has them: not written within the last seconds."""
    past = time.time() - 3600
    for folder, _, files in os.walk(repo / "src"):
        for name in files:
            os.utime(os.path.join(folder, name), (past, past))


def _folder_size(folder: Path) -> tuple[int, int]:
    count = size = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            count += 1
            size += os.lstat(os.path.join(dirpath, name)).st_size
    return count, size


def _mib(size: int) -> str:
    if size < 1 << 10:
        return f"{size} B"
    if size < 1 << 20:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1 << 20):.1f} MiB"
