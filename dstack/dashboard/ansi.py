"""Terminal output to HTML: SGR colors and styles become spans, other escapes are dropped.

Stateful and incremental, like a terminal: a color set in one chunk holds in the next, and an
escape sequence or a UTF-8 character split across chunks is completed by the next one.
"""

from __future__ import annotations

import codecs
import html
import re

#: the longest OSC (ESC ] … BEL) or CSI kept waiting for its end; past it, or at a newline, the
#: sequence is over. A terminal would wait for ever: a page must not, as one unterminated
#: ``ESC ]`` would hide all later output and cost a rescan of it at every chunk.
MAX_SEQUENCE = 4096
_MAX_CSI = 64
# CSI (ESC [ params final), OSC (ESC ] … BEL or ESC \, or cut short by a newline, an escape or
# its length), or a lone two-byte escape
_ESCAPE = re.compile(
    rf"\x1b(?:\[([0-9;:?]{{0,{_MAX_CSI}}})([@-~])"
    rf"|\][^\x07\x1b\n]{{0,{MAX_SEQUENCE}}}(?:\x07|\x1b\\)?"
    r"|[@-Z\\-_])"
)
# the start of a sequence at the end of a chunk, short enough to wait for the next chunk
_PARTIAL = re.compile(
    rf"\x1b(?:\[[0-9;:?]{{0,{_MAX_CSI - 1}}}|\][^\x07\x1b\n]{{0,{MAX_SEQUENCE - 1}}}\x1b?)?$"
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]")


class AnsiToHtml:
    """Feed raw output bytes, get HTML-escaped text with ``<span>``s for colors."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._style = _Style()

    def feed(self, data: bytes) -> str:
        text = self._pending + self._decoder.decode(data)
        self._pending = ""
        partial = _PARTIAL.search(text)
        if partial:
            text, self._pending = text[: partial.start()], text[partial.start() :]
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        out: list[str] = []
        position = 0
        for match in _ESCAPE.finditer(text):
            out.append(self._text(text[position : match.start()]))
            position = match.end()
            if match.group(2) == "m":
                self._style.apply(match.group(1) or "0")
        out.append(self._text(text[position:]))
        return "".join(out)

    def _text(self, text: str) -> str:
        text = _CONTROL.sub("", text)
        if not text:
            return ""
        escaped = html.escape(text, quote=False)
        attributes = self._style.attributes()
        return f"<span{attributes}>{escaped}</span>" if attributes else escaped


class _Style:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.fg: str | None = None  # a class suffix ("1", "b3") or an rgb() value
        self.bg: str | None = None
        self.flags: set[str] = set()

    def apply(self, params: str) -> None:
        codes = [int(p) if p.isdigit() else 0 for p in re.split("[;:]", params)]
        i = 0
        while i < len(codes):
            code = codes[i]
            if code == 0:
                self.reset()
            elif code in _FLAGS:
                self.flags.add(_FLAGS[code])
            elif code == 22:
                self.flags -= {"bold", "dim"}
            elif code in (23, 24, 27, 29):
                self.flags.discard(
                    {23: "italic", 24: "underline", 27: "inverse", 29: "strike"}[code]
                )
            elif 30 <= code <= 37 or 90 <= code <= 97:
                self.fg = str(code - 30) if code < 90 else f"b{code - 90}"
            elif 40 <= code <= 47 or 100 <= code <= 107:
                self.bg = str(code - 40) if code < 100 else f"b{code - 100}"
            elif code == 39:
                self.fg = None
            elif code == 49:
                self.bg = None
            elif code in (38, 48) and i + 1 < len(codes):
                color, used = _extended(codes[i + 1 :])
                if code == 38:
                    self.fg = color
                else:
                    self.bg = color
                i += used
            i += 1

    def attributes(self) -> str:
        classes = sorted(self.flags)
        styles = []
        for kind, value in (("fg", self.fg), ("bg", self.bg)):
            if value is None:
                continue
            if value.startswith("#"):
                styles.append(f"{'color' if kind == 'fg' else 'background-color'}:{value}")
            else:
                classes.append(f"{kind}{value}")
        out = f' class="{" ".join(classes)}"' if classes else ""
        return out + (f' style="{";".join(styles)}"' if styles else "")


_FLAGS = {1: "bold", 2: "dim", 3: "italic", 4: "underline", 7: "inverse", 9: "strike"}
_CUBE = (0, 95, 135, 175, 215, 255)
_BASIC = ("#000000", "#cd3131", "#0dbc79", "#e5e510", "#2472c8", "#bc3fbc", "#11a8cd", "#e5e5e5")
_BRIGHT = ("#666666", "#f14c4c", "#23d18b", "#f5f543", "#3b8eea", "#d670d6", "#29b8db", "#ffffff")


def _extended(rest: list[int]) -> tuple[str | None, int]:
    """A 256-color (5;n) or true-color (2;r;g;b) value: (#rrggbb, how many codes it used)."""
    if rest[0] == 5 and len(rest) >= 2:
        return _palette(rest[1]), 2
    if rest[0] == 2 and len(rest) >= 4:
        r, g, b = (min(max(v, 0), 255) for v in rest[1:4])
        return f"#{r:02x}{g:02x}{b:02x}", 4
    return None, 1


def _palette(n: int) -> str:
    n = min(max(n, 0), 255)
    if n < 8:
        return _BASIC[n]
    if n < 16:
        return _BRIGHT[n - 8]
    if n < 232:
        n -= 16
        r, g, b = _CUBE[n // 36], _CUBE[(n // 6) % 6], _CUBE[n % 6]
        return f"#{r:02x}{g:02x}{b:02x}"
    level = 8 + (n - 232) * 10
    return f"#{level:02x}{level:02x}{level:02x}"
