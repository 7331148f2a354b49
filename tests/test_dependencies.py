"""Every dependency ``pyproject.toml`` declares is one dstack imports: a declared package that
nothing uses is installed on every machine and every cloud instance for nothing."""

from __future__ import annotations

import ast
import re
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")

ROOT = Path(__file__).resolve().parents[1]


def imported_top_levels() -> set[str]:
    names: set[str] = set()
    for path in [*ROOT.joinpath("dstack").rglob("*.py"), *ROOT.joinpath("stacks").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return names


def declared(group: str | None = None) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] if group is None else project["optional-dependencies"][group]
    return [re.split(r"[<>=!~\[ ;]", spec, maxsplit=1)[0] for spec in specs]


def test_every_declared_dependency_is_imported() -> None:
    distributions = packages_distributions()
    used = {
        dist.lower().replace("_", "-")
        for module in imported_top_levels()
        for dist in distributions.get(module, [])
    }
    unused = [
        name for name in declared() + declared("aws") if name.lower().replace("_", "-") not in used
    ]
    assert unused == []
