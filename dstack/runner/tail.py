"""Following a file another process appends lines to: each call returns the lines completed
since the last, however the writes were split.

The file is read from where the last call stopped, in blocks, so memory stays bounded by the
longest line kept (``max_line``): a longer line is reported as too long (by its line number,
without its bytes) and the rest of it is read past, never held. A line still being written
(no newline yet) waits for the next call, or is taken as it is at the ``final`` call (the
writer has exited). A file that shrinks (truncated) or is replaced (a new inode) is followed
again from its start, and its lines numbered from 1 again. A file that does not exist yet
costs one failed ``open`` per call.

Only a regular file is followed: a symbolic link is not (the writer may be a container whose
link would name a file of the host's), nor a FIFO or a device (opened without blocking, never
read); ``refused`` says why, and nothing is read while it is so.
"""

from __future__ import annotations

import errno
import os
import stat
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
        #: why the path was not read at the last call (not a regular file), if it was not
        self.refused: str | None = None

    def read(self, *, final: bool = False, limit: int = 1 << 24) -> list[TailLine]:
        """The lines completed since the last call (at most about ``limit`` bytes of the file
        are read per call: the rest waits for the next one, ``more`` says so); with ``final``,
        once the file is read to its end, a last line without its newline too."""
        out: list[TailLine] = []
        self.more = False
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return out
        except OSError as exc:
            link = exc.errno == errno.ELOOP
            self.refused = "is a symbolic link: not followed" if link else _unreadable(exc)
            return out
        try:
            self._read_from(fd, limit, out)
        except OSError as exc:  # the file went bad under us (EIO): what was read is kept
            self.refused = _unreadable(exc)
            self.more = False
            return out
        if final and not self.more:
            self._end(out)
        return out

    def _read_from(self, fd: int, limit: int, out: list[TailLine]) -> None:
        with os.fdopen(fd, "rb") as file:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                self.refused = "is not a regular file: not read"
                return
            self.refused = None
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


def _unreadable(exc: OSError) -> str:
    return f"cannot be read ({exc.strerror or exc})"
