"""Sizes and counts a user can get wrong are refused at the edge, in one line, before
anything is written: ports, huge workflow files, unbounded lists in messages, secrets that no
environment could hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_repo
from tests.e2e.cli import Dstack


def one_line_error(result, *words: str) -> None:  # type: ignore[no-untyped-def]
    assert result.code != 0
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.err
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.mark.parametrize(
    ("ports", "args"), [(65535, []), (60000, ["--plan"]), (51, []), (None, ["-p", "5000"])]
)
def test_too_many_ports_is_one_line(
    tmp_path: Path, dstack_home: Path, ports: int | None, args: list[str]
) -> None:
    field = f"\n    ports: {ports}" if ports else ""
    text = f"workflows:\n  - name: serve\n    commands: [echo]{field}\n"
    repo = make_repo(tmp_path / "repo", {".dstack/workflows.yaml": text})
    result = Dstack(dstack_home)("run", *args, "serve", cwd=repo)
    one_line_error(result, "at most 50")
    store = dstack_home / "store"
    assert not store.exists() or not any(p.is_file() for p in store.rglob("*"))


def test_a_huge_workflow_file_is_refused_at_once(tmp_path: Path, dstack_home: Path) -> None:
    entry = "  - name: w{i}\n    commands: [echo {pad}]\n"
    body = "".join(entry.format(i=i, pad="x" * 200) for i in range(12_000))
    repo = make_repo(tmp_path / "repo", {".dstack/workflows.yaml": "workflows:\n" + body})
    one_line_error(Dstack(dstack_home)("run", "w1", cwd=repo), "too large", "at most 1 MB")


def test_the_available_list_in_a_message_is_bounded(tmp_path: Path, dstack_home: Path) -> None:
    body = "".join(f"  - name: w{i}\n    commands: [a]\n" for i in range(5000))
    repo = make_repo(tmp_path / "repo", {".dstack/workflows.yaml": "workflows:\n" + body})
    result = Dstack(dstack_home)("run", "nope", cwd=repo)
    one_line_error(result, "available:", "more)")
    assert len(result.err) < 1000


def test_a_secret_no_variable_can_hold_is_refused(tmp_path: Path, dstack_home: Path) -> None:
    repo = make_repo(tmp_path / "repo", {".dstack/workflows.yaml": "workflows: []\n"})
    result = Dstack(dstack_home)("secrets", "add", "BIG", cwd=repo, input="x" * 200_000)
    one_line_error(result, "one environment variable holds at most")
