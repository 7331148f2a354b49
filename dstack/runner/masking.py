r"""Hiding secret values in a job's output before it reaches the store: each becomes ``***``.

Output arrives in arbitrary pieces (a pipe read, a flush), so a secret may be split across two
of them. :class:`Masker` therefore holds back the end of what it was given whenever that end
could be the start of a secret, and releases it once more data shows whether it is one (or
when the stream ends). Nothing else is held back, so output that merely ends a line is not
delayed. Matching is leftmost-longest over the raw bytes: a secret inside a longer one is
masked as part of the longer one. Only the values themselves are masked, not encodings of
them (base64, URL-quoting) a program might print.

Values are matched twice: over the raw bytes (a value inside an escape sequence's payload, a
hyperlink's address), then over the text as a terminal displays it, escape sequences left out
(``rich`` colours the digits of ``tok-12345-xyz``: ``tok-\e[1;36m12345\e[0m-xyz`` shows the
value without holding it). A value found in the displayed text becomes ``***``, followed by the
escape sequences it spanned, so the colours of what follows stay as they were.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from dstack.runner.shown import ShownMasker, partial_start

MASK = b"***"


class Masker:
    """A streaming replacer of ``values`` (non-empty strings) by :data:`MASK`, over the raw
    bytes and then over the text as displayed (see the module's docstring)."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._raw = _RawMasker(values)
        self._shown = ShownMasker(values)

    @property
    def active(self) -> bool:
        return self._raw.active

    def add(self, values: Iterable[str]) -> None:
        values = list(values)
        self._raw.add(values)
        self._shown.add(values)

    def feed(self, data: bytes) -> bytes:
        return self._shown.feed(self._raw.feed(data))

    def flush(self) -> bytes:
        return self._shown.feed(self._raw.flush()) + self._shown.flush()


class _RawMasker:
    """A streaming replacer of ``values`` (non-empty strings) by :data:`MASK`.

    Cost is near-linear in the output, whatever the values' sizes: matches are found by one
    forward ``bytes.find`` per value (:class:`_Matches`), and the check for a held-back tail looks only at the last
    ``longest - 1`` bytes, at the few places where a value's first bytes occur, each confirmed
    by one comparison.
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: list[bytes] = []
        self._pattern: re.Pattern[bytes] | None = None
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

    def feed(self, data: bytes) -> bytes:
        """What may be released of what was held plus ``data``, masked."""
        if self._pattern is None:
            return data
        buffer = self._held + data
        window = max(0, len(buffer) - len(self._values[0]) + 1)
        tail = partial_start(self._values, buffer, window)  # the same for every start <= window
        matches = _Matches(self._values, buffer)
        out = bytearray()
        start = 0
        while start < len(buffer):
            match = matches.next(start)
            partial = tail if start <= window else partial_start(self._values, buffer, start)
            if match is not None and (partial is None or match[0] < partial):
                out += buffer[start : match[0]] + MASK
                start = match[1]
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


class _Matches:
    """The leftmost-longest occurrence of any value from a position on, found by one
    ``bytes.find`` per value (C speed); a value's next occurrence is looked up again only once
    the search has passed it, so each value scans the buffer forward once."""

    def __init__(self, values: list[bytes], buffer: bytes) -> None:
        self.values = values  # longest first
        self.buffer = buffer
        self.next_at = [-2] * len(values)  # -2: not looked up yet; -1: no more

    def next(self, start: int) -> tuple[int, int] | None:
        best: tuple[int, int] | None = None
        for i, value in enumerate(self.values):
            at = self.next_at[i]
            if at == -2 or 0 <= at < start:
                at = self.buffer.find(value, start)
                self.next_at[i] = at
            if at >= 0 and (best is None or at < best[0]):
                best = (at, at + len(value))  # longer values come first: ties keep them
        return best
