"""Broken workflow files in the user's words: the line as written, and the likely fix.

PyYAML says where its parser gave up (``expected <block end>, but found '?'``, or ``could not
find expected ':'`` at the line *after* the culprit). This module turns that into one line
naming the line the user wrote, showing it, and saying what probably went wrong: a key
indented off its siblings' column, a key without its colon, a tab, a list item out of place,
a workflow without its ``-``. It renders only; reading the file is ``dstack.spec.loader``'s.
"""

from __future__ import annotations

from typing import Any

#: problems of PyYAML's that a line indented off its siblings' column gives
_INDENTATION = (
    "expected <block end>",
    "mapping values are not allowed here",
    "did not find expected key",
    "did not find expected '-' indicator",
)


def describe_yaml_error(exc: Any, text: str, source: str) -> str:
    """One line for PyYAML's ``exc`` (a ``yaml.YAMLError``) raised on ``text``."""
    lines = text.splitlines()
    problem = str(getattr(exc, "problem", None) or exc)
    mark = getattr(exc, "problem_mark", None)
    context_mark = getattr(exc, "context_mark", None)
    if mark is None:
        return f"{source}: invalid YAML: {problem}"
    if "could not find expected ':'" in problem and context_mark is not None:
        number = context_mark.line + 1  # where the key began, not where the parser gave up
        written = _line(lines, number)
        key = written.strip().split()[0].rstrip(":") if written.strip() else "KEY"
        return (
            f"{source}, line {number}: `{written.strip()}` has no `:` after its key: write "
            f"`{key}: VALUE`, or `{key}:` with its list or mapping on the lines below"
        )
    number = mark.line + 1
    written = _line(lines, number)
    if not written.strip() and context_mark is not None:  # it ran off the end: say where
        number = context_mark.line + 1  # what it was parsing began (an unclosed [ { or ")
        return (
            f"{source}, line {number}: `{_line(lines, number).strip()}`: a bracket or quote "
            f"opened on this line is never closed ({problem}): close it"
        )
    if "'\\t'" in problem or "\t" in written[: len(written) - len(written.lstrip())]:
        return (
            f"{source}, line {number}: `{written.strip()}` is indented with a tab: YAML "
            "indents with spaces only; replace the tab with spaces"
        )
    if "mapping values are not allowed here" in problem and _colon_in_command(written):
        item = written.strip()[2:].strip()
        return (
            f"{source}, line {number}: `{written.strip()}`: YAML reads each `: ` in this "
            f"command as a key: quote the whole item (`- '{item.replace(chr(39), chr(39) * 2)}'`)"
            ", or write the commands as a block (`commands: |`)"
        )
    if any(p in problem for p in _INDENTATION) and written.strip():
        return f"{source}, line {number}: `{written.strip()}` {_indentation_fix(lines, number)}"
    shown = f" (the line: `{written.strip()}`)" if written.strip() else ""
    return f"{source}, line {number}, column {mark.column + 1}: invalid YAML: {problem}{shown}"


def describe_not_a_list(entries: Any, text: str, source: str) -> str:
    """``workflows:`` holds something else than a list: most often the ``-`` before each
    workflow is missing (``name: hello`` where ``- name: hello`` was meant)."""
    if isinstance(entries, dict):
        lines = text.splitlines()
        number = _first_line_under(lines, "workflows:")
        if number is not None:
            written = _line(lines, number).strip()
            return (
                f"{source}, line {number}: `{written}`: `workflows:` holds a mapping, not a list: "
                f"each workflow starts with `- `, as in `- {written}` (the other keys of the "
                "workflow are indented under its `name:`)"
            )
        return f"{source}: workflows: expected a list (each workflow starts with `- `)"
    kind = "nothing" if entries is None else f"the {type(entries).__name__} {str(entries)[:40]!r}"
    return (
        f"{source}: workflows: expected a list of workflows (each starting with `- name: …`), "
        f"got {kind}"
    )


def _colon_in_command(written: str) -> bool:
    """A list item whose text before its first ``: `` is no key (it has spaces or quotes):
    a command such as ``- echo '{"step": 1, "loss": 2}' >> "$DSTACK_METRICS"``."""
    text = written.strip()
    if not text.startswith("- ") or ": " not in text:
        return False
    before = text[2:].split(": ", 1)[0].strip()
    return any(c in before for c in " '\"{[")


def _line(lines: list[str], number: int) -> str:
    return lines[number - 1] if 0 < number <= len(lines) else ""


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip(" "))


def _key_column(text: str) -> int:
    """The column of the line's key: past its ``- `` markers (``  - name:`` → 4)."""
    column, rest = _indent(text), text.lstrip(" ")
    while rest.startswith("- "):
        dash_free = rest[2:]
        column += 2 + _indent(dash_free)
        rest = dash_free.lstrip(" ")
    return column


def _meaningful(text: str) -> bool:
    stripped = text.strip()
    return bool(stripped) and not stripped.startswith("#")


def _indentation_fix(lines: list[str], number: int) -> str:
    """What to say of line ``number``, whose indentation the parser could not place: the
    column of the nearest line above that it most likely belongs with."""
    written = _line(lines, number)
    is_item = written.lstrip(" ").startswith("-")
    column = _indent(written)
    best: tuple[int, int, int] | None = None  # (distance, lines up, that line's number)
    for above in range(number - 1, 0, -1):
        other = _line(lines, above)
        if not _meaningful(other):
            continue
        if is_item:
            if not other.lstrip(" ").startswith("-"):
                continue
            theirs = _indent(other)
        else:
            theirs = _key_column(other)
        if theirs == column:
            continue
        candidate = (abs(theirs - column), number - above, above)
        if best is None or candidate < best:
            best = candidate
    if best is None:
        return "is indented where no key or list item can be: check its indentation"
    other = _line(lines, best[2])
    theirs = _indent(other) if is_item else _key_column(other)
    like = other.strip() if is_item else other.strip().lstrip("- ").split(":")[0] + ":"
    what = "list item" if is_item else "key"
    return (
        f"is indented {column} spaces, where no {what} can be: indent it {theirs} spaces, like "
        f"`{like}` on line {best[2]}"
    )


def _first_line_under(lines: list[str], heading: str) -> int | None:
    """The number of the first meaningful line after the line that is ``heading``."""
    for index, text in enumerate(lines):
        if text.strip() == heading:
            for after in range(index + 1, len(lines)):
                if _meaningful(lines[after]):
                    return after + 1
    return None
