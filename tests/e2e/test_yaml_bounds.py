"""YAML a user wrote is loaded within bounds (``dstack.yamlload``): an alias bomb or a deeply
nested file is one clear line, not minutes, gigabytes or a ``RecursionError`` traceback.

The CLI runs under an address-space limit of 1.5 GB, and a wait of 60 s stands only for a
hang: unbounded, the ten-level bomb below costs tens of GB, so it fails either way.
"""

from __future__ import annotations

import resource
import subprocess
from pathlib import Path

import pytest

from tests.conftest import make_repo
from tests.e2e.cli import DSTACK, Dstack
from tests.e2e.conftest import Store

LOCAL_ONLY = pytest.mark.parametrize("store", ["local"], indirect=True)
MEMORY_LIMIT = 1536 * 2**20
OK = "workflows:\n  - name: ok\n    commands:\n      - echo fine\n"


def _bomb(levels: int) -> str:
    """A workflow whose env holds the classic bomb: each level ten aliases of the one below."""
    lines = ["workflows:", "  - name: bomb", "    commands: [echo]", "    env:"]
    lines.append(f"      A0: &a0 [{', '.join(['lol'] * 10)}]")
    for level in range(1, levels + 1):
        lines.append(f"      A{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 10)}]")
    return "\n".join(lines) + "\n"


def _limited(cli: Dstack, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    return subprocess.run(
        [*DSTACK, *args], cwd=cwd, env=cli.env, capture_output=True, text=True,
        timeout=60, preexec_fn=limit, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@LOCAL_ONLY
def test_an_alias_bomb_in_one_file_costs_nothing_to_another_workflow(
    tmp_path: Path, dstack: Dstack, store: Store
) -> None:
    files = {".dstack/workflows.yaml": OK, ".dstack/workflows/bomb.yaml": _bomb(10)}
    repo = make_repo(tmp_path / "repo", files)
    ran = _limited(dstack, "run", "ok", cwd=repo)
    assert ran.returncode == 0, ran.stderr
    assert "fine" in ran.stdout
    refused = _limited(dstack, "run", "bomb", cwd=repo)
    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr
    lines = [line for line in refused.stderr.splitlines() if "alias" in line]
    assert len(lines) == 1, refused.stderr
    assert ".dstack/workflows/bomb.yaml, line" in lines[0]
    assert "expand it past 100,000 values" in lines[0]


@LOCAL_ONLY
@pytest.mark.parametrize("style", ["flow", "block"])
def test_a_deeply_nested_file_is_one_line(
    tmp_path: Path, dstack: Dstack, store: Store, style: str
) -> None:
    if style == "flow":
        depth = 50_000
        value = "[" * depth + "]" * depth
    else:
        depth = 400  # block style: 100 KB of indentation
        value = "".join(f"\n{'  ' * (i + 3)}k{i}:" for i in range(depth)) + " x"
    text = OK + f"  - name: deep\n    commands: [echo]\n    env:\n      X: {value}\n"
    assert len(text) > 100_000
    repo = make_repo(tmp_path / "repo", {".dstack/workflows.yaml": text})
    result = _limited(dstack, "run", "deep", cwd=repo)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "RecursionError" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].count("nested deeper than 64 levels") == 1
    assert ".dstack/workflows.yaml, line" in result.stderr


@LOCAL_ONLY
def test_an_alias_bomb_in_the_config_file_is_one_line(
    tmp_path: Path, dstack: Dstack, store: Store
) -> None:
    (dstack.home / "config.yaml").write_text(_bomb(10))
    repo = make_repo(tmp_path / "repo", {".dstack/workflows.yaml": OK})
    result = _limited(dstack, "ps", cwd=repo)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "config.yaml, line" in result.stderr and "alias bomb" in result.stderr
