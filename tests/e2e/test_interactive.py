"""A person at a terminal: Ctrl+C on an attached run, requirements, and a fast --help."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pexpect
import pytest

from tests.e2e.cli import DSTACK, Dstack

WORKFLOWS = """\
workflows:
  - name: ticker
    commands:
      - for i in $(seq 1 600); do echo "tick $i"; sleep 0.1; done
  - name: withreqs
    python: 3.11
    requirements: requirements.txt
    commands:
      - python -c "import tinypkg; print(tinypkg.ANSWER)"
      - pip --version
  - name: noart
    commands:
      - echo made nothing
    artifacts: [out]
"""


@pytest.fixture
def repo(repo_factory) -> Path:  # type: ignore[no-untyped-def]
    return repo_factory({".dstack/workflows.yaml": WORKFLOWS})


def spawn(home: Path, repo: Path, *args: str) -> pexpect.spawn:
    env = Dstack(home).env
    return pexpect.spawn(
        DSTACK[0], [*DSTACK[1:], *args], cwd=str(repo), env=env, timeout=60, encoding="utf-8"
    )


def test_ctrl_c_then_yes_stops_the_run(dstack_home: Path, repo: Path) -> None:
    child = spawn(dstack_home, repo, "run", "ticker")
    child.expect("tick 2")
    child.sendintr()
    child.expect(r"Stop the run (\S+)\? \[y/N\]")
    run = child.match.group(1)
    child.sendline("y")
    child.expect(f"Run {run} stopped")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    row = Dstack(dstack_home).ps_json(run, repo)
    assert row["status"] == "stopped"


def test_ctrl_c_then_no_detaches_and_the_run_goes_on(dstack_home: Path, repo: Path) -> None:
    child = spawn(dstack_home, repo, "run", "ticker")
    child.expect("tick 1")
    child.sendintr()
    child.expect(r"Stop the run (\S+)\? \[y/N\]")
    run = child.match.group(1)
    child.sendline("n")
    child.expect("Detached")
    child.expect(pexpect.EOF)
    cli = Dstack(dstack_home)
    assert cli.ps_json(run, repo)["status"] == "running"
    assert cli("stop", "-x", run, cwd=repo).code == 0


def test_an_empty_artifact_is_warned_once_on_a_terminal(dstack_home: Path, repo: Path) -> None:
    """The runner says it in the job's output; on the same terminal the CLI does not repeat it
    (without a terminal it does, on stderr: ``test_compat_2022``)."""
    child = spawn(dstack_home, repo, "run", "noart")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    assert child.before.count("artifact out: the job wrote nothing there") == 1, child.before


def make_wheel(folder: Path) -> Path:
    """A tiny pure-Python wheel, built by hand so the test needs no index and no build tools."""
    name = "tinypkg-0.1-py3-none-any.whl"
    files = {
        "tinypkg/__init__.py": b"ANSWER = 42\n",
        "tinypkg-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinypkg\nVersion: 0.1\n",
        "tinypkg-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append("tinypkg-0.1.dist-info/RECORD,,")
    with zipfile.ZipFile(folder / name, "w") as wheel:
        for path, data in files.items():
            wheel.writestr(path, data)
        wheel.writestr("tinypkg-0.1.dist-info/RECORD", "\n".join(record) + "\n")
    return folder / name


def test_requirements_are_installed_into_the_jobs_environment(
    dstack_home: Path, repo: Path
) -> None:
    wheel = make_wheel(repo)
    (repo / "requirements.txt").write_text(f"--no-index\n./{wheel.name}\n")
    cli = Dstack(dstack_home)
    result = cli("run", "withreqs", cwd=repo, timeout=300)
    assert result.code == 0, result.err
    assert "42" in result.out.splitlines()
    assert "pip " in result.out
    # the user's own interpreter did not get the package
    check = subprocess.run([sys.executable, "-c", "import tinypkg"], capture_output=True)
    assert check.returncode != 0


def test_help_imports_no_heavy_sdk() -> None:
    """Importing the CLI loads no SDK and not rich; `dstack --help` (drawn by rich, through
    typer) loads no SDK either, and neither pydantic, YAML nor dstack's models and services:
    it needs the commands' names and help, nothing they run."""
    code = (
        "import json, sys\n"
        "heavy = ('boto3', 'botocore', 'pulumi', 'pulumi_aws', 'git')\n"
        "unused = ('pydantic', 'yaml', 'dstack.models', 'dstack.services', 'dstack.spec')\n"
        "def loaded(names):\n"
        "    return sorted(n for n in names if any(m == n or m.startswith(n + '.') "
        "for m in sys.modules))\n"
        "import dstack.cli.main\n"
        "imported = loaded((*heavy, 'rich', *unused))\n"
        "sys.argv = ['dstack', '--help']\n"
        "try:\n"
        "    dstack.cli.main.main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(json.dumps([imported, loaded((*heavy, *unused))]), file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Commands" in out.stdout
    assert json.loads(out.stderr.splitlines()[-1]) == [[], []]
