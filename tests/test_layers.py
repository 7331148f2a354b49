"""The import contracts of ``pyproject.toml`` hold, and a backward import breaks them.

``scripts/check`` runs ``lint-imports`` on the tree; this test proves the contracts are not
vacuous: a copy of the package with one import that runs the wrong way fails the check.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed"),
]


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT), "--no-cache"], cwd=tree, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree)},
    )  # fmt: skip


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    copy = tmp_path / "tree"
    copy.mkdir()
    shutil.copy(ROOT / "pyproject.toml", copy)
    shutil.copytree(ROOT / "dstack", copy / "dstack", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "stacks", copy / "stacks", ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_the_tree_keeps_its_contracts(tree: Path) -> None:
    result = lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("dstack/state/keys.py", "from dstack.services import runs", "Layers"),
        ("dstack/runner/agent.py", "from dstack.cli import main", "Layers"),
        ("dstack/services/logs.py", "import boto3", "know no cloud SDK"),
        ("dstack/lifecycle.py", "from dstack.compute.aws import driver", "Layers"),
        ("dstack/storage/local.py", "from dstack.storage.s3 import client", "know no cloud SDK"),
        ("dstack/services/names.py", "from dstack.services import runs", "No import cycles"),
        # the Pulumi programs import nothing of dstack above models
        ("stacks/run.py", "from dstack.compute.aws import scope", "Layers"),
        ("stacks/policies.py", "from dstack.state import keys", "Layers"),
        ("stacks/program.py", "from dstack.store_config import S3StoreConfig", "Layers"),
        ("dstack/runner/cloud.py", "from stacks import run", "know no cloud SDK"),
        ("stacks/tags.py", "from stacks import program", "No import cycles"),
    ],
)
def test_a_backward_import_breaks_a_contract(
    tree: Path, module: str, line: str, contract: str
) -> None:
    path = tree / module
    # inside a function, as the lazy imports are: the contracts see those too
    path.write_text(path.read_text() + f"\n\ndef _backward() -> None:\n    {line}  # noqa\n")
    result = lint(tree)
    assert result.returncode != 0
    assert contract in result.stdout
