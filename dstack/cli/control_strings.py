"""Dropping terminal control strings from a job's output before it reaches your terminal.

A run's output is written by whoever wrote its commands (another user of a shared store, a
package the job installed), and `dstack logs` and an attached `dstack run` write it to your
terminal. Colours and cursor movement are harmless, but a control string is not: an OSC can
make a hyperlink whose text lies about its target, set the window title, or write the
clipboard (OSC 52); DCS, APC, PM and SOS strings reach terminal features of their own. They
are dropped here, as the dashboard drops them: the 7-bit forms (``ESC ] P _ ^ X``) and the
8-bit ones as UTF-8 encodes them. A string ends at BEL, ST (``ESC \\``), or any other ESC (as
terminals end it); one that does not end within :data:`MAX_STRING` bytes loses its opening
and the rest is shown as text, so no unterminated string hides the output that follows.
"""

from __future__ import annotations

import re

MAX_STRING = 4096
_OPEN = re.compile(rb"\x1b[\]P_^X]|\xc2[\x90\x98\x9d\x9e\x9f]")
_END = re.compile(rb"\x07|\x1b|\xc2\x9c")


class ControlStringFilter:
    """Streaming: feed raw output, get it back without control strings."""

    def __init__(self) -> None:
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        buffer = self._held + data
        self._held = b""
        out = bytearray()
        position = 0
        while True:
            opening = _OPEN.search(buffer, position)
            if opening is None:
                tail = buffer[position:]
                keep = 1 if tail.endswith((b"\x1b", b"\xc2")) else 0  # may open one
                out += tail[: len(tail) - keep]
                self._held = tail[len(tail) - keep :]
                return bytes(out)
            out += buffer[position : opening.start()]
            end = _string_end(buffer, opening.end())
            if end is None:  # not ended yet
                if len(buffer) - opening.start() <= MAX_STRING:
                    self._held = buffer[opening.start() :]
                    return bytes(out)
                position = opening.end()  # too long to be one: its text is shown
                continue
            position = end

    def flush(self) -> bytes:
        """The end of the output: an unended string is dropped, a lone ESC released."""
        held, self._held = self._held, b""
        return held if not _OPEN.match(held) else b""


def _string_end(buffer: bytes, start: int) -> int | None:
    """Where the control string whose body starts at ``start`` ends (after its terminator,
    or before an ESC that starts something else); None if it has not ended in ``buffer``."""
    end = _END.search(buffer, start)
    if end is None:
        return None
    if end.group() != b"\x1b":
        return end.end()
    following = buffer[end.end() : end.end() + 1]
    if not following:
        return None  # ESC at the end: ST or another sequence, the next bytes tell
    return end.end() + 1 if following == b"\\" else end.start()
