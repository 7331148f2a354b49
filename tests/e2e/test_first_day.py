"""A newcomer's first day through the CLI: what dstack says, in which order, and how often."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from tests.e2e.cli import DSTACK, Dstack

LOCAL_ONLY = pytest.mark.parametrize("store", ["local"], indirect=True)

WORKFLOWS = """\
workflows:
  - name: print-args
    provider: bash
    commands:
      - echo "args:${{ run.args }}"
  - name: typo
    provider: bash
    working_dir: tutorail
    commands:
      - python prepare.py
"""
PREPARE = "import argparse\nargparse.ArgumentParser(prog='prepare.py').parse_args()\n"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(
        tmp_path / "r", {".dstack/workflows.yaml": WORKFLOWS, "tutorial/prepare.py": PREPARE}
    )


def _one_error_line(result) -> str:  # type: ignore[no-untyped-def]
    assert result.code != 0
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.err
    return lines[0]


@LOCAL_ONLY
def test_options_after_the_workflow_name_are_the_workflows(dstack: Dstack, repo: Path) -> None:
    """2022's example hint, `dstack run print-args -l 'Hello, world!'`, passes -l on; dstack
    says once how to mean its own --local, and `--` says the user meant it."""
    hinted = dstack("run", "print-args", "-l", "Hello, world!", cwd=repo)
    assert hinted.code == 0, hinted.err
    assert hinted.job_lines[0] == "args:-l Hello, world!"
    warning = next(line for line in hinted.err.splitlines() if line.startswith("Warning: -l"))
    assert "--local" in warning and "dstack run print-args -- -l" in warning
    meant = dstack("run", "print-args", "--", "-l", "-d", cwd=repo)
    assert meant.code == 0, meant.err
    assert meant.job_lines[0] == "args:-l -d" and "Warning" not in meant.err
    local = dstack("run", "-l", "print-args", "x", cwd=repo)  # dstack's --local, before the name
    assert local.job_lines[0] == "args:x" and "Warning" not in local.err
    planned = dstack("run", "print-args", "--plan", cwd=repo)
    assert "dstack run --plan print-args" in _one_error_line(planned)


@LOCAL_ONLY
def test_dash_dash_help_after_a_script_is_the_scripts(dstack: Dstack, repo: Path) -> None:
    result = dstack("run", "python", "tutorial/prepare.py", "--help", cwd=repo)
    assert result.code == 0, result.err
    assert result.job_lines[0].startswith("usage: prepare.py")
    assert "dstack run" not in result.out


@LOCAL_ONLY
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["typo"], ["working_dir", "tutorail", "did you mean tutorial?"]),
        (["-w", "nope", "print-args"], ["-w", "nope", "tutorial"]),
        (["-w", "tutorial/prepare.py", "print-args"], ["-w", "is a file"]),
    ],
)
def test_a_working_dir_that_is_not_a_folder_is_refused_at_submit(
    dstack: Dstack, repo: Path, dstack_home: Path, args: list[str], words: list[str]
) -> None:
    line = _one_error_line(dstack("run", *args, cwd=repo))
    assert all(word in line for word in words), line
    store = dstack_home / "store"
    assert not store.exists() or not any(p.is_file() for p in store.rglob("*"))


@LOCAL_ONLY
def test_ps_lists_newest_first_in_the_table_as_in_json(dstack: Dstack, repo: Path) -> None:
    for _ in range(3):
        assert dstack("run", "print-args", cwd=repo).code == 0
    shown = [r["run"] for r in json.loads(dstack("ps", "-a", "--json", cwd=repo).out)]
    table = [line.split()[0] for line in dstack("ps", "-a", cwd=repo).out.splitlines()[1:]]
    assert table == shown
    assert "Newest first" in dstack("ps", "--help", cwd=repo).out


@LOCAL_ONLY
def test_the_ctrl_c_hint_comes_before_the_jobs_output(dstack: Dstack, repo: Path) -> None:
    """stdout and stderr in one pipe, as a terminal shows them."""
    proc = subprocess.run(
        [*DSTACK, "run", "print-args", "first"],
        cwd=repo, env=dstack.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout
    lines = proc.stdout.splitlines()
    assert lines.index("To interrupt, press Ctrl+C.") < lines.index("args:first")


@LOCAL_ONLY
def test_no_git_identity_is_said_once_with_how_to_set_it(
    dstack: Dstack, repo: Path, tmp_path: Path
) -> None:
    git(repo, "config", "--unset", "user.name")
    git(repo, "config", "--unset", "user.email")
    nobody = Dstack(dstack.home, {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"})
    first = nobody("run", "print-args", cwd=repo)
    assert first.code == 0, first.err
    warning = next(line for line in first.err.splitlines() if "user.name" in line)
    assert "git config --global user.name" in warning and "recorded as" in warning
    again = nobody("run", "print-args", cwd=repo)
    assert again.code == 0 and "user.name" not in again.err


@LOCAL_ONLY
def test_runs_before_the_remote_notice_is_said_once_per_repo(
    dstack: Dstack, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "r", {".dstack/workflows.yaml": WORKFLOWS}, remote=None)
    assert dstack("run", "print-args", cwd=repo).code == 0
    git(repo, "remote", "add", "origin", "https://github.com/acme/first-day.git")
    said = [("had a git remote" in dstack("ps", cwd=repo).err) for _ in range(3)]
    assert said == [True, False, False]


@LOCAL_ONLY
@pytest.mark.parametrize(
    ("text", "words"),
    [
        (  # PyYAML: expected <block end>, but found '?'
            "workflows:\n  - name: hello\n    provider: bash\n  commands:\n    - echo hi\n",
            ["line 4: `commands:` is indented 2 spaces", "indent it 4 spaces, like `provider:`"],
        ),
        (  # PyYAML: line 6, column 1: could not find expected ':' (in a 5-line file)
            "workflows:\n  - name: hello\n    provider: bash\n    commands\n      - echo hi\n",
            ["line 4: `commands` has no `:`", "`commands:`"],
        ),
        (  # the missing `-`: expected a list of workflows, got {'name': 'hello', 'provider'…
            "workflows:\n  name: hello\n  provider: bash\n  commands:\n    - echo hi\n",
            ["line 2: `name: hello`", "starts with `- `", "`- name: hello`"],
        ),
        (  # PyYAML: mapping values are not allowed here (the second `: ` of a command)
            "workflows:\n  - name: hello\n    provider: bash\n    commands:\n"
            '      - echo \'{"step": 1, "loss": 2}\' >> "$DSTACK_METRICS"\n',
            ["line 5: `- echo '{", "reads each `: ` in this command as a key", "quote the whole"],
        ),
    ],
    ids=["found-key", "no-colon", "no-dash", "colon-in-command"],
)
def test_yaml_errors_point_at_the_line_as_written(
    dstack: Dstack, tmp_path: Path, text: str, words: list[str]
) -> None:
    repo = make_repo(tmp_path / "r", {".dstack/workflows.yaml": text})
    line = _one_error_line(dstack("run", "hello", cwd=repo))
    assert all(word in line for word in words), line
    assert "<block end>" not in line and "{'name'" not in line


def test_the_plan_says_the_gpus_per_instance_and_that_all_are_paid(
    dstack_home: Path, tmp_path: Path
) -> None:
    """One V100 with 700GB of memory only fits an 8-GPU type: the summary says "8× V100",
    and that all eight are paid for, before anything is created."""
    from tests.e2e.test_aws_cli import no_aws_env

    text = (
        "workflows:\n  - name: gpu-v100\n    commands: [nvidia-smi]\n    resources:\n"
        "      memory: 700GB\n      gpu:\n        name: V100\n        count: 1\n"
    )
    repo = make_repo(tmp_path / "r", {".dstack/workflows.yaml": text})
    cli = Dstack(dstack_home, no_aws_env(dstack_home, AWS_REGION="us-east-1"), whole=True)
    result = cli("run", "--plan", "gpu-v100", cwd=repo, timeout=300)
    assert result.code == 0, result.err
    summary = next(line for line in result.out.splitlines() if "instances:" in line)
    assert "(8× V100, " in summary and " × 1;" in summary, summary
    note = next(line for line in result.out.splitlines() if "note: job 0" in line)
    assert "asks for 1 GPU(s)" in note and "all 8 are paid for" in note


@LOCAL_ONLY
def test_tags_says_the_unshared_repo_notice_once(dstack: Dstack, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {".dstack/workflows.yaml": WORKFLOWS}, remote=None)
    said = [("cannot be shared" in dstack("tags", cwd=repo).err) for _ in range(2)]
    assert said == [True, False]


@LOCAL_ONLY
def test_the_cloud_markets_settings_are_said_to_be_ignored_on_this_machine(
    dstack: Dstack, repo: Path
) -> None:
    """A newcomer capping the price of a local run is told the cap means nothing here."""
    result = dstack("run", "--max-price", "1", "--spot-policy", "spot", "print-args", cwd=repo)
    assert result.code == 0, result.err
    assert (
        "Warning: spot_policy and max_price apply to runs on AWS; this run is on this "
        "machine, where they are ignored"
    ) in result.err
    assert "apply to runs on AWS" not in dstack("run", "print-args", cwd=repo).err
    flagged = dstack("run", "--on-demand-after", "2", "print-args", cwd=repo)
    assert flagged.code == 0, flagged.err
    assert "Warning: on_demand_after applies to runs on AWS" in flagged.err, flagged.err
