"""Masking values in a job's output as a terminal displays it: escape sequences left out.

A program that colours its output may put an escape sequence inside a secret's value
(``tok-\\e[1;36m12345\\e[0m-xyz``): the raw bytes do not hold the value, the screen shows it.
:class:`ShownMasker` matches values on the displayed text and replaces the raw bytes they span
by ``***`` followed by the escape sequences that were among them (so the colours of what
follows do not change). Like the raw masker, it streams: it holds back an unfinished escape
sequence, and a displayed tail that could be the start of a value, until more data shows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = b"***"
ESC = 0x1B
#: an unfinished escape sequence longer than this is not one: it is released as it is
MAX_SEQUENCE = 4096
_CSI = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]")
_STRING = re.compile(rb"\x1b[\]P_^X][^\x07\x1b]*(?:\x07|\x1b\\)")  # OSC, DCS, APC, PM, SOS
_SHORT = re.compile(rb"\x1b[ -/]*[0-~]")
_CSI_START = re.compile(rb"\x1b\[[0-?]*[ -/]*")
_SHORT_START = re.compile(rb"\x1b[ -/]*")


class ShownMasker:
    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: list[bytes] = []
        self._pattern: re.Pattern[bytes] | None = None
        self._held = b""
        self.add(values)

    def add(self, values: Iterable[str]) -> None:
        known = set(self._values)
        for value in values:
            data = value.encode()
            if data and data not in known and ESC not in data:
                known.add(data)
                self._values.append(data)
        self._values.sort(key=len, reverse=True)
        if self._values:
            self._pattern = re.compile(b"|".join(re.escape(v) for v in self._values))

    def feed(self, data: bytes) -> bytes:
        """What may be released of what was held plus ``data``, masked."""
        if self._pattern is None:
            return data
        buffer = self._held + data
        if ESC not in buffer and not self._held:
            # nothing to see past: the raw masker has already masked plain text, only a
            # possible start of a value at the very end is held back (it may continue coloured)
            hold = partial_start(self._values, buffer, 0)
            end = len(buffer) if hold is None else hold
            self._held = buffer[end:]
            return buffer[:end]
        return self._mask(buffer, final=False)

    def flush(self) -> bytes:
        held, self._held = self._held, b""
        return self._mask(held, final=True) if held else b""

    def _mask(self, buffer: bytes, *, final: bool) -> bytes:
        assert self._pattern is not None
        shown, where, cut = _displayed(buffer, final=final)
        out = bytearray()
        raw = 0  # what of ``buffer`` is in ``out``
        pos = 0  # what of ``shown`` is decided
        hold_raw = cut
        while pos < len(shown):
            match = self._pattern.search(shown, pos)
            partial = None if final else partial_start(self._values, shown, pos)
            if match is not None and (partial is None or match.start() < partial):
                first, last = where[match.start()], where[match.end() - 1]
                out += buffer[raw:first] + MASK
                out += b"".join(_sequences(buffer[first : last + 1]))
                raw = last + 1
                pos = match.end()
                continue
            if partial is not None:
                hold_raw = where[partial]
            break
        out += buffer[raw:hold_raw]
        self._held = buffer[hold_raw:]
        return bytes(out)


def _displayed(buffer: bytes, *, final: bool) -> tuple[bytes, list[int], int]:
    """The displayed bytes of ``buffer``, the raw position of each, and where an unfinished
    escape sequence at the end starts (``len(buffer)`` when there is none)."""
    shown = bytearray()
    where: list[int] = []
    i, size = 0, len(buffer)
    while i < size:
        at = buffer.find(b"\x1b", i)
        if at < 0:
            at = size
        shown += buffer[i:at]
        where.extend(range(i, at))
        if at == size:
            break
        end = _sequence_end(buffer, at)
        if end is None:  # unfinished: held, unless it is too long to be one
            if not final and size - at <= MAX_SEQUENCE:
                return bytes(shown), where, at
            end = at + 1
            shown.append(ESC)
            where.append(at)
        i = end
    return bytes(shown), where, size


def _sequence_end(buffer: bytes, at: int) -> int | None:
    """Where the escape sequence starting at ``at`` ends; None if it is unfinished."""
    kind = buffer[at + 1 : at + 2]
    if not kind:
        return None
    if kind == b"[":
        pattern, start = _CSI, _CSI_START
    elif kind in b"]P_^X":
        pattern, start = _STRING, None
    else:
        pattern, start = _SHORT, _SHORT_START
    match = pattern.match(buffer, at)
    if match is not None:
        return match.end()
    if start is None or start.fullmatch(buffer, at):
        return None  # more bytes may finish it
    return at + 1  # not a sequence: a lone ESC, one byte


def _sequences(raw: bytes) -> list[bytes]:
    """The escape sequences among ``raw`` (the span of a masked value)."""
    found = []
    i = raw.find(b"\x1b")
    while i >= 0:
        end = _sequence_end(raw, i) or i + 1
        found.append(raw[i:end])
        i = raw.find(b"\x1b", end)
    return found


def partial_start(values: list[bytes], buffer: bytes, start: int) -> int | None:
    """The first position from ``start`` whose rest of ``buffer`` is a proper prefix of one
    of ``values`` (longest first): it could become that value with more data; or None.

    Only the last ``longest - 1`` bytes can be such a rest. Candidates there are where a
    value's first bytes occur (``bytes.find``), and the last few bytes; each is confirmed by
    one comparison, so a feed costs about the same whatever the values' sizes."""
    size = len(buffer)
    begin = max(start, size - len(values[0]) + 1)
    best: int | None = None
    for value in values:
        head = value[:_HEAD]
        at = buffer.find(head, max(begin, size - len(value) + 1))
        while at >= 0 and (best is None or at < best):
            if size - at < len(value) and value.startswith(buffer[at:]):
                best = at
                break
            at = buffer.find(head, at + 1)
        for k in range(min(_HEAD, len(value)) - 1, 0, -1):  # a tail shorter than the head
            at = size - k
            if at >= begin and (best is None or at < best) and buffer.endswith(value[:k]):
                best = at
                break
    return best


_HEAD = 4  # bytes of a value that locate a candidate tail before it is compared whole
