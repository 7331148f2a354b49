"""`dstack restart RUN` through the CLI: a new run with exactly the code, arguments,
environment and deps RUN recorded, whatever the working tree holds now."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import make_repo
from tests.e2e.cli import Dstack

WORKFLOWS = """\
workflows:
  - name: show
    provider: bash
    commands:
      - cat code.txt
      - echo "name=${{ run.name }} args=${{ run.args }} foo=$FOO"
    artifacts:
      - out
"""


def _name(err: str) -> str:
    return err.split("Run ", 1)[1].split()[0]


def test_restart_runs_the_recorded_code_not_the_working_tree(
    dstack: Dstack, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "r", {".dstack/workflows.yaml": WORKFLOWS, "code.txt": "old\n"})
    first = dstack("run", "-e", "FOO=bar", "show", "one", "two", cwd=repo)
    assert first.code == 0, first.err
    old = _name(first.err)
    assert first.job_lines[:2] == ["old", f"name={old} args=one two foo=bar"]
    (repo / "code.txt").write_text("new\n")  # the working tree moves on, uncommitted
    again = dstack("restart", old, cwd=repo)
    assert again.code == 0, again.err
    new = _name(again.err)
    assert new != old
    assert f"code of {old}, not your working tree" in again.err
    assert again.job_lines[:2] == ["old", f"name={new} args=one two foo=bar"]
    shown = json.loads(dstack("ps", "-a", "--json", cwd=repo).out)
    assert {row["run"] for row in shown} == {old, new}  # the old run is left as it was
    assert dstack.peek_status(old, repo) == "done"
    assert dstack.ps_json(new, repo)["restarted_from"] == old


def test_restart_of_an_unknown_run_is_one_line(dstack: Dstack, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {".dstack/workflows.yaml": WORKFLOWS, "code.txt": "x\n"})
    result = dstack("restart", "no-such-run-1", cwd=repo)
    assert result.code != 0
    assert "no-such-run-1" in result.err and "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) == 1
