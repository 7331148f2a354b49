"""Module docstrings say what the module owns and the one thing a reader must know, in a few
lines; the design reasoning lives in docs/design/ (and the docstring says which page)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_PROSE_LINES = 15


def _docstrings() -> dict[str, str]:
    found = {}
    for path in sorted(
        [*ROOT.joinpath("dstack").rglob("*.py"), *ROOT.joinpath("stacks").rglob("*.py")]
    ):
        text = ast.get_docstring(ast.parse(path.read_text()))
        if text:
            found[str(path.relative_to(ROOT))] = text
    return found


def _prose_lines(docstring: str) -> int:
    """Lines of prose: an indented listing (a tree, a layout, an example) is not counted."""
    return sum(1 for line in docstring.splitlines() if line.strip() and not line.startswith("    "))


def test_module_docstrings_are_short() -> None:
    long = {
        path: lines
        for path, text in _docstrings().items()
        if (lines := _prose_lines(text)) > MAX_PROSE_LINES
    }
    assert not long, f"move the reasoning to a docs/design/ page and link it: {long}"


def test_the_pages_docstrings_name_exist() -> None:
    named = {
        (path, page)
        for path, text in _docstrings().items()
        for page in re.findall(r"docs/[\w/.-]+\.md", text)
    }
    assert named, "docstrings point at their design pages"
    missing = sorted((path, page) for path, page in named if not (ROOT / page).is_file())
    generated = {"docs/reference/config.md"}  # written by scripts/docs_reference.py
    assert [m for m in missing if m[1] not in generated] == []


def test_prose_lines_leave_listings_out() -> None:
    assert _prose_lines("Owns X.\n\nLayout:\n\n    a/b   one\n    c/d   two\n\nMore.") == 3
