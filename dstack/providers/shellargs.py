"""Placing ``${{ run.args }}`` in shell text as data, never as code.

The job script assigns the run's arguments first (``DSTACK_RUN_ARGS=(...)`` for bash, ``set --``
for ``sh``; ``dstack.runner.prepare.script_header``), and each ``${{ run.args }}`` becomes a
reference the shell expands without parsing the value again. Safe by construction, whatever a
context is misjudged as: an argument holding ``[``, ``$`` or a backtick is refused at submit
(:func:`check_evaluable`), and an argument's text is never pasted (a whole number in
arithmetic excepted). The reasoning and the cases: docs/design/run-args.md.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from dstack.errors import SpecError
from dstack.spec.fields import EXPRESSION

ARRAY = "DSTACK_RUN_ARGS"
_INTEGER = re.compile(r"[+-]?[0-9]+")
_WORD_BREAK = set(" \t\n;&|()<>")

# Contexts an expression can sit in.
UNQUOTED, DOUBLE, SINGLE, ANSI, ARITH, COMMENT, HEREDOC, LITERAL_HEREDOC = (
    "unquoted", "double", "single", "ansi", "arith", "comment", "heredoc", "literal-heredoc"
)  # fmt: skip


def substitute_script(
    pieces: list[str], *, run_name: str, args: list[str], shell: str = "bash", where: str = ""
) -> list[str]:
    """Each of ``pieces`` (lines of one script, joined by newlines when run) with
    ``${{ run.args }}`` and ``${{ run.name }}`` replaced for the context they sit in.

    Contexts are judged over the whole script, so a here-doc opened in one piece and closed in
    a later one is seen as such. Raises SpecError for arguments a context cannot take.
    """
    text = "\n".join(pieces)
    found = contexts(text)
    out: list[str] = []
    offset = 0
    for piece in pieces:
        parts: list[str] = []
        end = 0
        for match in EXPRESSION.finditer(piece):
            parts.append(piece[end : match.start()])
            context = found.get(offset + match.start(), UNQUOTED)
            parts.append(_replacement(match, context, run_name, args, shell, where))
            end = match.end()
        out.append("".join(parts) + piece[end:])
        offset += len(piece) + 1
    return out


def _replacement(
    match: re.Match[str], context: str, run_name: str, args: list[str], shell: str, where: str
) -> str:
    name = match.group(1)
    if name == "run.name":
        return shlex.quote(run_name) if context in (UNQUOTED, COMMENT) else run_name
    if name != "run.args":
        return match.group(0)
    check_evaluable(args, where)
    if context == ARITH:
        bad = [a for a in args if not _INTEGER.fullmatch(a)]
        if bad:
            raise SpecError(
                f"{where}${{{{ run.args }}}} inside an arithmetic expression takes whole numbers "
                f"only, not {bad[0]!r}: pass it outside $(( … )) or as a number"
            )
        return " ".join(args)
    if context == LITERAL_HEREDOC:
        raise SpecError(
            f"{where}${{{{ run.args }}}} cannot go into a quoted here-document (<<'EOF'), where "
            "the shell expands nothing: use an unquoted one (<<EOF), which takes the arguments "
            "as data"
        )
    many = '"$@"' if shell == "sh" else f'"${{{ARRAY}[@]}}"'
    one = "$*" if shell == "sh" else f"${{{ARRAY}[*]}}"
    if context == SINGLE:
        return f"'\"{one}\"'"
    if context == ANSI:
        return f"'\"{one}\"$'"
    if context in (DOUBLE, HEREDOC):
        return one
    return many


def shown(commands: list[str], args: list[str]) -> list[str]:
    """A bash job's ``commands`` as a reader should see them: each reference to the run's
    arguments replaced by the arguments themselves, as the shell receives them (``sh`` jobs
    are shown as they are: their ``"$@"`` may be the user's own)."""
    one = " ".join(args)
    forms = [
        (f"'\"${{{ARRAY}[*]}}\"$'", one),  # inside $'…'
        (f"'\"${{{ARRAY}[*]}}\"'", one),  # inside '…'
        (f'"${{{ARRAY}[@]}}"', shlex.join(args)),  # a word of its own
        (f"${{{ARRAY}[*]}}", one),  # inside "…" or a here-document
    ]
    out = []
    for command in commands:
        for reference, text in forms:
            command = command.replace(reference, text)
        out.append(command)
    return out


#: what makes an argument something bash could evaluate (a subscript, an expansion)
EVALUABLE = ("[", "$", "`")


def check_evaluable(args: list[str], where: str = "") -> None:
    """SpecError if an argument holds what bash could evaluate (:data:`EVALUABLE`): called
    whenever a workflow uses ``${{ run.args }}``, wherever it does."""
    for arg in args:
        found = next((c for c in EVALUABLE if c in arg), None)
        if found is not None:
            raise SpecError(
                f"{where}the argument {arg[:40]!r} holds {found!r}, which bash could evaluate "
                "where ${{ run.args }} is used (arithmetic, subscripts): pass it without "
                f"{found!r}, or read it from a file or a variable"
            )


@dataclass
class _Heredoc:
    delimiter: str
    quoted: bool
    strip_tabs: bool


@dataclass
class _Scanner:
    """A small shell lexer: enough to know which kind of quoting each position is in."""

    text: str
    starts: set[int]
    found: dict[int, str] = field(default_factory=dict)
    pending: list[_Heredoc] = field(default_factory=list)
    i: int = 0

    def expression_here(self, context: str) -> bool:
        if self.i in self.starts:
            self.found[self.i] = context
            match = EXPRESSION.match(self.text, self.i)
            assert match is not None
            self.i = match.end()
            return True
        return False

    def command(self, closer: str) -> None:
        """Unquoted text until ``closer`` (``)`` of ``$(``, a backtick, or the end)."""
        text, depth = self.text, 0
        while self.i < len(text):
            if self.expression_here(UNQUOTED):
                continue
            c = text[self.i]
            at_word_start = self.i == 0 or text[self.i - 1] in _WORD_BREAK
            if c == "\\":
                self.i += 2
            elif c == "'":
                self.i += 1
                self.single()
            elif c == '"':
                self.i += 1
                self.double()
            elif text.startswith("$'", self.i):
                self.i += 2
                self.ansi()
            elif text.startswith("$((", self.i) or (
                at_word_start and text.startswith("((", self.i)
            ):
                self.i += 3 if c == "$" else 2
                self.arith()
            elif text.startswith("$(", self.i):
                self.i += 2
                self.command(")")
            elif text.startswith("${", self.i):
                self.i += 2
                self.braces(UNQUOTED)
            elif c == "`":
                if closer == "`":
                    self.i += 1
                    return
                self.i += 1
                self.command("`")
            elif c == "#" and at_word_start:
                self.comment()
            elif text.startswith("<<", self.i) and not text.startswith("<<<", self.i):
                self.i += 2
                self.heredoc_operator()
            elif c == "(":
                depth += 1
                self.i += 1
            elif c == ")":
                self.i += 1
                if depth == 0 and closer == ")":
                    return
                depth = max(0, depth - 1)
            elif c == "\n":
                self.i += 1
                self.heredoc_bodies()
            else:
                self.i += 1

    def single(self) -> None:
        end = self.text.find("'", self.i)
        end = len(self.text) if end < 0 else end
        for start in self.starts:
            if self.i <= start < end:
                self.found[start] = SINGLE
        self.i = end + 1

    def ansi(self) -> None:
        text = self.text
        while self.i < len(text):
            if self.expression_here(ANSI):
                continue
            if text[self.i] == "\\":
                self.i += 2
            elif text[self.i] == "'":
                self.i += 1
                return
            else:
                self.i += 1

    def double(self, heredoc: bool = False, until: _Heredoc | None = None) -> None:
        """Inside "…" (or, with ``heredoc``, an unquoted here-doc body up to ``until``)."""
        text = self.text
        context = HEREDOC if heredoc else DOUBLE
        while self.i < len(text):
            if heredoc and until is not None and self.heredoc_end(until):
                return
            if self.expression_here(context):
                continue
            c = text[self.i]
            if c == "\\":
                self.i += 2
            elif c == '"' and not heredoc:
                self.i += 1
                return
            elif text.startswith("$((", self.i):
                self.i += 3
                self.arith()
            elif text.startswith("$(", self.i):
                self.i += 2
                self.command(")")
            elif text.startswith("${", self.i):
                self.i += 2
                self.braces(context)
            elif c == "`":
                self.i += 1
                self.command("`")
            else:
                self.i += 1

    def braces(self, context: str) -> None:
        """Inside ``${…}``: words there are expanded like the text around it."""
        text, depth = self.text, 0
        while self.i < len(text):
            if self.expression_here(DOUBLE if context != UNQUOTED else UNQUOTED):
                continue
            c = text[self.i]
            if c == "\\":
                self.i += 2
            elif c == "{":
                depth += 1
                self.i += 1
            elif c == "}":
                self.i += 1
                if depth == 0:
                    return
                depth -= 1
            elif c == "'" and context == UNQUOTED:
                self.i += 1
                self.single()
            elif c == '"':
                self.i += 1
                self.double()
            elif text.startswith("$(", self.i) and not text.startswith("$((", self.i):
                self.i += 2
                self.command(")")
            else:
                self.i += 1

    def arith(self) -> None:
        text, depth = self.text, 0
        while self.i < len(text):
            if self.expression_here(ARITH):
                continue
            c = text[self.i]
            if text.startswith("$(", self.i) and not text.startswith("$((", self.i):
                self.i += 2
                self.command(")")
            elif c == "`":
                self.i += 1
                self.command("`")
            elif c == "(":
                depth += 1
                self.i += 1
            elif c == ")":
                if depth == 0 and text.startswith("))", self.i):
                    self.i += 2
                    return
                depth = max(0, depth - 1)
                self.i += 1
            else:
                self.i += 1

    def comment(self) -> None:
        end = self.text.find("\n", self.i)
        end = len(self.text) if end < 0 else end
        for start in self.starts:
            if self.i <= start < end:
                self.found[start] = COMMENT
        self.i = end

    def heredoc_operator(self) -> None:
        text = self.text
        strip = text.startswith("-", self.i)
        self.i += 1 if strip else 0
        while self.i < len(text) and text[self.i] in " \t":
            self.i += 1
        word, quoted = [], False
        while self.i < len(text) and text[self.i] not in _WORD_BREAK:
            c = text[self.i]
            if c in "'\"":
                quoted = True
                end = text.find(c, self.i + 1)
                end = len(text) if end < 0 else end
                word.append(text[self.i + 1 : end])
                self.i = end + 1
            elif c == "\\":
                quoted = True
                word.append(text[self.i + 1 : self.i + 2])
                self.i += 2
            else:
                word.append(c)
                self.i += 1
        if word:
            self.pending.append(_Heredoc("".join(word), quoted, strip))

    def heredoc_bodies(self) -> None:
        """After a newline: the bodies of the here-docs opened on the line that ended."""
        pending, self.pending = self.pending, []
        for doc in pending:
            if doc.quoted:
                start = self.i
                while self.i < len(self.text) and not self.heredoc_end(doc):
                    line_end = self.text.find("\n", self.i)
                    self.i = len(self.text) if line_end < 0 else line_end + 1
                for position in self.starts:
                    if start <= position < self.i:
                        self.found[position] = LITERAL_HEREDOC
            else:
                self.double(heredoc=True, until=doc)

    def heredoc_end(self, doc: _Heredoc) -> bool:
        """At the start of a line that closes ``doc``: skip past it and say so."""
        text = self.text
        if self.i > 0 and text[self.i - 1] != "\n":
            return False
        line_end = text.find("\n", self.i)
        line_end = len(text) if line_end < 0 else line_end
        line = text[self.i : line_end]
        if (line.lstrip("\t") if doc.strip_tabs else line) == doc.delimiter:
            self.i = min(len(text), line_end + 1)
            return True
        return False


def contexts(text: str) -> dict[int, str]:
    """The context of every ``${{ … }}`` in ``text``, by its start offset."""
    starts = {match.start() for match in EXPRESSION.finditer(text)}
    if not starts:
        return {}
    scanner = _Scanner(text, starts)
    scanner.command("")
    return scanner.found
