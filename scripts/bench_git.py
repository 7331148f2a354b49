"""What dstack asks git for on every submit — status, the tracked and untracked files, the
config, the diff against HEAD — through the git command line (``dstack.repo.git``, as dstack
does) and through GitPython, on a repository of a few thousand files with some edited and
some new. Prints the median of each. Run: ``.venv/bin/python scripts/bench_git.py [FILES]``.
GitPython is not a dependency of dstack: install it into the venv to compare."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dstack.repo import git as repo_git

REPS = 7


def make_repo(root: Path, files: int) -> None:
    for i in range(files):
        path = root / f"pkg{i % 50}" / f"module_{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# module {i}\n" + "x = 1\n" * 40)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(
        ["git", "-c", "user.name=b", "-c", "user.email=b@x", "commit", "-qm", "init"],
        cwd=root, check=True,
    )  # fmt: skip
    for i in range(0, files, 100):  # 1 % edited, 20 new files
        (root / f"pkg{i % 50}" / f"module_{i}.py").write_text("edited\n")
    for i in range(20):
        (root / f"new_{i}.py").write_text("new\n")


def median_ms(fn: Callable[[], object]) -> float:
    fn()  # warm the page cache and the index's stat data
    times = []
    for _ in range(REPS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def cli_way(root: Path) -> None:
    repo_git.read_facts(root)
    repo_git.diff_head(root)


def gitpython_way(root: Path) -> None:
    import git

    repo = git.Repo(root)
    repo.is_dirty(untracked_files=True)
    _ = repo.untracked_files
    _ = [path for (path, _stage) in repo.index.entries]
    _ = repo.head.commit.diff(None)
    _ = repo.git.diff("HEAD")
    reader = repo.config_reader()
    _ = [reader.items(section) for section in reader.sections() if section.startswith("remote")]


def import_ms(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout) * 1000


def main() -> None:
    files = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        make_repo(root, files)
        print(f"{files} files, 1 % edited, 20 untracked; median of {REPS}")
        print(f"git CLI (dstack.repo.git): {median_ms(lambda: cli_way(root)):8.1f} ms")
        try:
            import git  # noqa: F401
        except ImportError:
            print("GitPython: not installed")
            return
        print(f"GitPython:                 {median_ms(lambda: gitpython_way(root)):8.1f} ms")
        print(f"import git (GitPython):    {import_ms('git'):8.1f} ms, once per command")


if __name__ == "__main__":
    main()
