"""Hiding secret values in a job's output before it reaches the store: each becomes ``***``.

Output arrives in arbitrary pieces (a pipe read, a flush), so a secret may be split across two
of them. :class:`Masker` therefore holds back the end of what it was given whenever that end
could be the start of a secret, and releases it once more data shows whether it is one (or
when the stream ends). Nothing else is held back, so output that merely ends a line is not
delayed. Matching is leftmost-longest over the raw bytes: a secret inside a longer one is
masked as part of the longer one. Only the values themselves are masked, not encodings of
them (base64, URL-quoting) a program might print.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = b"***"


class Masker:
    """A streaming replacer of ``values`` (non-empty strings) by :data:`MASK`.

    Cost is near-linear in the output, whatever the values' sizes: matches are found by one
    compiled alternation (C speed), and the check for a held-back tail looks only at the last
    ``longest - 1`` bytes, at the few places where a value's first bytes occur (found by a
    second compiled pattern), each confirmed by one comparison.
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: list[bytes] = []
        self._pattern: re.Pattern[bytes] | None = None
        self._starts: re.Pattern[bytes] | None = None
        self._held = b""
        self.add(values)

    @property
    def active(self) -> bool:
        return bool(self._values)

    def add(self, values: Iterable[str]) -> None:
        """Mask these values too, from the next byte fed on."""
        known = set(self._values)
        for value in values:
            data = value.encode()
            if data and data not in known:
                known.add(data)
                self._values.append(data)
        self._values.sort(key=len, reverse=True)  # the alternation tries longer values first
        if self._values:
            self._pattern = re.compile(b"|".join(re.escape(v) for v in self._values))
            # where a held-back tail may start: a value's first 4 bytes, or fewer at the end
            heads = set()
            for v in self._values:
                heads.add(re.escape(v[:_HEAD]))
                heads.update(re.escape(v[:k]) + rb"\Z" for k in range(1, min(_HEAD, len(v))))
            self._starts = re.compile(b"(?=" + b"|".join(sorted(heads)) + b")")

    def feed(self, data: bytes) -> bytes:
        """What may be released of what was held plus ``data``, masked."""
        if self._pattern is None:
            return data
        buffer = self._held + data
        window = max(0, len(buffer) - len(self._values[0]) + 1)
        tail = self._partial_start(buffer, window)  # the same for every start <= window
        out = bytearray()
        start = 0
        while start < len(buffer):
            match = self._pattern.search(buffer, start)
            partial = tail if start <= window else self._partial_start(buffer, start)
            if match is not None and (partial is None or match.start() < partial):
                out += buffer[start : match.start()] + MASK
                start = match.end()
                continue
            end = len(buffer) if partial is None else partial
            out += buffer[start:end]
            start = end
            break
        self._held = buffer[start:]
        return bytes(out)

    def flush(self) -> bytes:
        """The end of the stream: release what is held, masked where it matches."""
        held, self._held = self._held, b""
        if self._pattern is None or not held:
            return held
        return self._pattern.sub(MASK, held)

    def _partial_start(self, buffer: bytes, start: int) -> int | None:
        """The first position from ``start`` whose rest of ``buffer`` is a proper prefix of a
        value (it could become one with more data), or None."""
        assert self._starts is not None
        begin = max(start, len(buffer) - len(self._values[0]) + 1)
        for found in self._starts.finditer(buffer, begin):
            rest = buffer[found.start() :]
            if any(len(v) > len(rest) and v.startswith(rest) for v in self._values):
                return found.start()
        return None


_HEAD = 4  # bytes of a value that locate a candidate tail before it is compared whole
