"""End-to-end: a run's output reaches your terminal without control strings (OSC hyperlinks,
clipboard writes, titles; DCS…), through `dstack logs` and an attached `dstack run`; colours
stay (``dstack.cli.control_strings``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_repo
from tests.e2e.cli import Dstack

LOCAL_ONLY = pytest.mark.parametrize("store", ["local"], indirect=True)
WORKFLOWS = r"""workflows:
  - name: noisy
    commands:
      - printf 'see \033]8;;https://evil.example/\007docs\033]8;;\007 here\n'
      - printf 'copy\033]52;c;cm0gLXJmIH4K\033\\ done\n'
      - printf '\033[31mred\033[0m \033]0;title'
      - printf ' and the rest\n'
      - printf '\033P+q544e\033\\ end\n'
"""


@LOCAL_ONLY
def test_logs_and_attached_runs_drop_control_strings(tmp_path: Path, dstack: Dstack) -> None:
    repo = make_repo(tmp_path / "repo", {".dstack/workflows.yaml": WORKFLOWS})
    ran = dstack("run", "noisy", cwd=repo)
    assert ran.code == 0, ran.err
    run = ran.err.split("Run ", 1)[1].split()[0]
    logs = dstack("logs", run, cwd=repo)
    for out in (ran.out, logs.out):
        assert "\x1b]" not in out and "\x1bP" not in out
        assert "see docs here" in out
        assert "copy done" in out
        assert "\x1b[31mred\x1b[0m" in out  # colours are not control strings
        # an unended title runs, as in a terminal, to the next ESC (the DCS after it)
        assert "title" not in out and "the rest" not in out
        assert "\x1b[0m  end" in out
