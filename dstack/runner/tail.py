"""Following a file another process appends lines to: each call returns the lines completed
since the last, however the writes were split.

The file is read from where the last call stopped, in blocks, so memory stays bounded by the
longest line kept (``max_line``): a longer line is reported as too long (by its line number,
without its bytes) and the rest of it is read past, never held. A line still being written
(no newline yet) waits for the next call, or is taken as it is at the ``final`` call (the
writer has exited). A file that shrinks (truncated) or is replaced (a new inode) is followed
again from its start, and its lines numbered from 1 again. A file that does not exist yet
costs one ``stat`` per call.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

BLOCK = 1 << 16


@dataclass(frozen=True)
class TailLine:
    number: int  # 1-based, in the file
    data: bytes | None  # None: longer than ``max_line``, left out


class LineTail:
    def __init__(self, path: Path, *, max_line: int) -> None:
        self.path = path
        self.max_line = max_line
        self.offset = 0
        self._identity: tuple[int, int] | None = None
        self._partial = bytearray()
        self._discarding = False  # inside a line already reported as too long
        self._lines = 0  # lines completed so far
        #: the last call stopped at its ``limit``: more of the file is waiting to be read
        self.more = False

    def read(self, *, final: bool = False, limit: int = 1 << 24) -> list[TailLine]:
        """The lines completed since the last call (at most about ``limit`` bytes of the file
        are read per call: the rest waits for the next one, ``more`` says so); with ``final``,
        once the file is read to its end, a last line without its newline too."""
        out: list[TailLine] = []
        try:
            with open(self.path, "rb") as file:
                info = os.fstat(file.fileno())
                identity = (info.st_dev, info.st_ino)
                if identity != self._identity or info.st_size < self.offset:
                    self._restart(identity)
                file.seek(self.offset)
                budget = limit
                while budget > 0:
                    data = file.read(min(BLOCK, budget))
                    if not data:
                        break
                    self.offset += len(data)
                    budget -= len(data)
                    self._feed(data, out)
                self.more = budget <= 0
        except FileNotFoundError:
            self.more = False
            return out
        if final and not self.more:
            self._end(out)
        return out

    def _restart(self, identity: tuple[int, int]) -> None:
        self._identity = identity
        self.offset = 0
        self._partial.clear()
        self._discarding = False
        self._lines = 0

    def _feed(self, data: bytes, out: list[TailLine]) -> None:
        pos = 0
        while pos < len(data):
            newline = data.find(b"\n", pos)
            if self._discarding:
                if newline < 0:
                    return
                self._discarding = False
                self._lines += 1
                pos = newline + 1
                continue
            if newline < 0:
                self._partial += data[pos:]
                if len(self._partial) > self.max_line:
                    out.append(TailLine(self._lines + 1, None))
                    self._partial.clear()
                    self._discarding = True
                return
            if len(self._partial) + newline - pos > self.max_line:
                out.append(TailLine(self._lines + 1, None))
            else:
                out.append(TailLine(self._lines + 1, bytes(self._partial + data[pos:newline])))
            self._partial.clear()
            self._lines += 1
            pos = newline + 1

    def _end(self, out: list[TailLine]) -> None:
        if self._partial:
            out.append(TailLine(self._lines + 1, bytes(self._partial)))
            self._lines += 1
        self._partial.clear()
        self._discarding = False
