"""End-to-end: a job cannot read the submitting shell's environment through ``/proc``.

The attached `dstack run` and the supervisor it forks hold the shell's whole environment
(GITHUB_TOKEN, AWS keys); a job runs as the same user. Both are made non-dumpable, so their
``/proc/<pid>/environ`` belongs to root, and the supervisor drops what runners do not need.
Root reads every process's environ, so as root the CLI runs as ``nobody`` (with this
machine's own Python of the same version, which ``nobody`` may run; skipped without one).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

import dstack
from tests.conftest import make_repo
from tests.e2e.cli import DSTACK, Dstack

LOCAL_ONLY = pytest.mark.parametrize("store", ["local"], indirect=True)
MARKER = "ghp-marker-0b5e55ed"
SNOOP = """\
import os
found = 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            data = f.read()
    except OSError:
        continue
    if b"ghp-marker-0b5e55ed" in data:
        found += 1
        print("LEAK", pid, open(f"/proc/{pid}/cmdline", "rb").read()[:60])
print("snooped", found, "token" if "GITHUB_TOKEN" in os.environ else "no-token")
"""


@LOCAL_ONLY
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and prctl are Linux's")
def test_a_job_cannot_read_the_shells_tokens_from_dstack_processes(
    tmp_path: Path, dstack: Dstack
) -> None:
    command, preexec, env = list(DSTACK), None, dict(dstack.env)
    if os.geteuid() == 0:
        command, preexec, env, tmp_path = _as_nobody(env)
    workflows = "workflows:\n  - name: snoop\n    commands:\n      - python snoop.py\n"
    repo = make_repo(tmp_path / "repo", {".dstack/workflows.yaml": workflows, "snoop.py": SNOOP})
    if preexec is not None:
        for path in [tmp_path, *tmp_path.rglob("*")]:
            os.lchown(path, NOBODY, NOBODY)
    env.update(GITHUB_TOKEN=MARKER, AWS_SECRET_ACCESS_KEY=MARKER)
    try:
        result = subprocess.run(
            [*command, "run", "snoop"], cwd=repo, env=env, capture_output=True, text=True,
            timeout=180, preexec_fn=preexec, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    finally:
        if preexec is not None:  # nobody's own folder, outside pytest's
            shutil.rmtree(tmp_path, ignore_errors=True)
    assert result.returncode == 0, result.stderr
    assert "LEAK" not in result.stdout, result.stdout
    assert "snooped 0 no-token" in result.stdout


NOBODY = 65534


def _as_nobody(env: dict[str, str]) -> tuple[list[str], Callable[[], None], dict[str, str], Path]:
    """How to run the CLI as ``nobody``: a Python of this version it may run, this one's
    packages on its path, and a folder of its own (home, store, cache)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    python = next(
        (p for p in (f"/usr/bin/{version}", f"/usr/local/bin/{version}") if _runs_as_nobody(p)),
        None,
    )
    if python is None:
        pytest.skip(f"as root, the check needs a {version} that nobody may run")
    folder = Path(tempfile.mkdtemp(prefix="dstack-nobody-"))
    folder.chmod(0o755)
    packages = [sysconfig.get_paths()["purelib"], str(Path(dstack.__file__).parents[1])]
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(folder), "NO_COLOR": "1",
        "DSTACK_HOME": str(folder / "home"), "DSTACK_CACHE_DIR": str(folder / "cache"),
        "PYTHONPATH": os.pathsep.join(packages),
    }  # fmt: skip

    def become_nobody() -> None:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)

    return [python, "-m", "dstack"], become_nobody, env, folder


def _runs_as_nobody(python: str) -> bool:
    if not os.path.exists(python):
        return False
    probe = subprocess.run(
        [python, "-c", "import pydantic_core"], capture_output=True, timeout=60,
        env={"PYTHONPATH": sysconfig.get_paths()["purelib"]},
        preexec_fn=lambda: (os.setgid(NOBODY), os.setuid(NOBODY)),
    )  # fmt: skip
    return probe.returncode == 0
