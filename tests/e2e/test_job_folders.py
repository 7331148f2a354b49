"""End-to-end: whatever a job does to its code folder, the next `dstack run` starts in exactly
the snapshot — the job's folder is checked and used again (``dstack.runner.recycle``), and
the job's log says which: ``spare`` or ``copy``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.cli import Dstack

LOCAL_ONLY = pytest.mark.parametrize("store", ["local"], indirect=True)

WORKFLOWS = """\
workflows:
  - name: look
    provider: bash
    commands:
      - python look.py
"""

#: prints the folder as the job finds it (what a job must see), then leaves a mess behind
LOOK = """\
import hashlib, os, stat
for folder, dirs, files in sorted(os.walk(".")):
    dirs[:] = sorted(d for d in dirs if d != ".git")
    for name in sorted(dirs + files):
        path = os.path.join(folder, name)
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            what = "-> " + os.readlink(path)
        elif stat.S_ISDIR(st.st_mode):
            what = "dir"
        else:
            what = hashlib.sha256(open(path, "rb").read()).hexdigest()[:12]
        print("seen", path, oct(stat.S_IMODE(st.st_mode)), what)

with open("train.py", "r+") as f:
    f.write("# the job was here\\n")
os.chmod("lib/a.py", 0o755)
os.utime("lib/a.py", (1e9, 1e9))
os.remove("lib/b.py")
os.makedirs("outputs/epoch1", exist_ok=True)
open("outputs/epoch1/model.bin", "wb").write(b"\\0" * 4096)
os.remove("data.txt")
os.symlink("/etc/hostname", "data.txt")
os.link("train.py", "hard.py")
"""


@pytest.fixture
def repo(repo_factory) -> Path:  # type: ignore[no-untyped-def]
    return repo_factory(
        {
            ".dstack/workflows.yaml": WORKFLOWS,
            "look.py": LOOK,
            "train.py": "print('train')\n",
            "lib/a.py": "a = 1\n",
            "lib/b.py": "b = 2\n",
            "data.txt": "1,2,3\n",
        }
    )


def _seen(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("seen ")]


def _placed(out: str) -> str:
    match = re.search(r"\[dstack\] code ready in .*; (checkout .*)\)", out)
    assert match, out
    return match.group(1)


@LOCAL_ONLY
def test_each_run_starts_in_exactly_the_snapshot(dstack: Dstack, repo: Path) -> None:
    first = dstack("run", "look", cwd=repo)
    assert first.code == 0, first.out + first.err
    assert "copy" in _placed(first.out)  # the first job of the repo: a copy of the checkout
    expected = _seen(first.out)
    assert "seen ./lib/b.py 0o644" in " ".join(expected)
    second = dstack("run", "look", cwd=repo)
    assert second.code == 0, second.out + second.err
    assert "spare" in _placed(second.out)  # the first job's folder, cleaned
    assert _seen(second.out) == expected
    (repo / "lib/b.py").write_text("b = 3\n")  # an edit between two runs shows, alone
    third = dstack("run", "look", cwd=repo)
    assert "spare" in _placed(third.out)
    changed = [line for line in _seen(third.out) if line not in expected]
    assert [line.split()[1] for line in changed] == ["./lib/b.py"]
