"""The filter of control strings: dropped whole, wherever the output is split."""

from __future__ import annotations

import random

import pytest

from dstack.cli.control_strings import MAX_STRING, ControlStringFilter

DATA = (
    b"a\x1b]8;;http://evil.example/\x07link\x1b]8;;\x07 b\x1b]52;c;aGk=\x1b\\ c "
    b"\x1b[31mred\x1b[0m \xc2\x9d0;t\x07d \xc2\xa9 e\x1b_apc\x1b\\f\x1b]0;cut\x1b[1mbold"
)
CLEAN = b"alink b c \x1b[31mred\x1b[0m d \xc2\xa9 ef\x1b[1mbold"


def test_control_strings_go_and_everything_else_stays() -> None:
    f = ControlStringFilter()
    assert f.feed(DATA) + f.flush() == CLEAN


@pytest.mark.parametrize("seed", range(30))
def test_any_split_gives_the_same_output(seed: int) -> None:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(DATA)), rng.randint(1, 15)))
    f = ControlStringFilter()
    pieces = [DATA[a:b] for a, b in zip([0, *cuts], [*cuts, len(DATA)], strict=True)]
    assert b"".join(f.feed(piece) for piece in pieces) + f.flush() == CLEAN


def test_an_unended_string_hides_nothing_after_its_bound() -> None:
    f = ControlStringFilter()
    assert f.feed(b"starting\n\x1b]0;t") == b"starting\n"
    later = b"line\n" * (MAX_STRING // 4)
    out = f.feed(later) + f.flush()
    assert out.endswith(later) and b"\x1b]" not in out
