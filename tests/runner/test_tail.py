"""``LineTail``: the lines a writer completes, whole and once, however its writes are split,
with memory bounded by the longest line kept, and a truncated or replaced file followed anew."""

from __future__ import annotations

import os
from pathlib import Path

from dstack.runner.tail import LineTail, TailLine


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as file:
        file.write(data)


def test_a_missing_file_gives_nothing_until_it_appears(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    tail = LineTail(path, max_line=100)
    assert tail.read() == [] and tail.read(final=True) == []
    append(path, b"a\n")
    assert tail.read() == [TailLine(1, b"a")]


def test_a_line_split_across_writes_comes_out_whole_once_completed(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    tail = LineTail(path, max_line=100)
    append(path, b'{"loss": 0.')
    assert tail.read() == []  # not completed yet: held
    append(path, b'5}\n{"loss"')
    assert tail.read() == [TailLine(1, b'{"loss": 0.5}')]
    append(path, b": 0.4}\n\n")
    assert tail.read() == [TailLine(2, b'{"loss": 0.4}'), TailLine(3, b"")]
    assert tail.read() == []


def test_several_lines_in_one_write_and_a_last_line_without_newline(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    tail = LineTail(path, max_line=100)
    append(path, b"a\nb\nc")
    assert tail.read() == [TailLine(1, b"a"), TailLine(2, b"b")]
    assert tail.read(final=True) == [TailLine(3, b"c")]  # the writer has exited


def test_lines_across_read_blocks_are_joined(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    line = b"x" * 100_000  # longer than a read block
    append(path, line + b"\n" + line + b"\n")
    tail = LineTail(path, max_line=200_000)
    assert tail.read() == [TailLine(1, line), TailLine(2, line)]


def test_a_too_long_line_is_reported_by_number_and_never_held(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    tail = LineTail(path, max_line=1000)
    append(path, b"ok\n" + b"y" * 5000)
    assert tail.read() == [TailLine(1, b"ok"), TailLine(2, None)]
    assert len(tail._partial) == 0  # what is read of the long line is dropped as it comes
    append(path, b"y" * 5000)
    assert tail.read() == []  # still inside the long line: not reported again
    append(path, b"y\nafter\n")
    assert tail.read() == [TailLine(3, b"after")]


def test_a_too_long_line_completed_in_one_read_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    append(path, b"z" * 2000 + b"\nnext\n")
    tail = LineTail(path, max_line=1000)
    assert tail.read() == [TailLine(1, None), TailLine(2, b"next")]


def test_a_read_stops_at_its_limit_and_says_more_is_waiting(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    append(path, b"".join(b"%d\n" % i for i in range(100_000)))
    tail = LineTail(path, max_line=100)
    first = tail.read(limit=1 << 16)
    assert tail.more and 0 < len(first) < 100_000
    rest: list[TailLine] = []
    while True:
        rest += tail.read(final=True, limit=1 << 16)
        if not tail.more:
            break
    numbers = [line.number for line in first + rest]
    assert numbers == list(range(1, 100_001))


def test_a_truncated_file_is_followed_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    tail = LineTail(path, max_line=100)
    append(path, b"one\ntwo\nthree\n")
    assert len(tail.read()) == 3
    with open(path, "wb") as file:  # truncated, then written again
        file.write(b"new\n")
    assert tail.read() == [TailLine(1, b"new")]


def test_a_replaced_file_is_followed_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    tail = LineTail(path, max_line=100)
    append(path, b"one\n")
    assert tail.read() == [TailLine(1, b"one")]
    other = tmp_path / "other"
    other.write_bytes(b"alpha\nbeta\n")  # longer than what was read: only its inode differs
    os.replace(other, path)
    assert tail.read() == [TailLine(1, b"alpha"), TailLine(2, b"beta")]


def test_a_symbolic_link_is_not_followed(tmp_path: Path) -> None:
    """A container's job could link the file to one of the host's, which the runner would read."""
    secret = tmp_path / "host-file.json"
    secret.write_text('{"password": 1234}\n')
    path = tmp_path / "m.jsonl"
    path.symlink_to(secret)
    tail = LineTail(path, max_line=100)
    assert tail.read(final=True) == []
    assert tail.refused == "is a symbolic link: not followed"
    path.unlink()
    append(path, b"a\n")  # a file again: followed
    assert tail.read() == [TailLine(1, b"a")] and tail.refused is None


def test_a_fifo_is_never_opened_for_reading_blocking(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    os.mkfifo(path)  # no writer: a blocking open would wait forever
    tail = LineTail(path, max_line=100)
    assert tail.read(final=True) == []
    assert tail.refused == "is not a regular file: not read"
