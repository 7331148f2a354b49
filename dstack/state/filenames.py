"""File names as store keys, and back: any name a job can write, reversibly.

Store keys are UTF-8 text (S3 keys must be), but a file name on Linux is any bytes: a job may
write ``out/bad\\377name``. Python reads such a name with the undecodable bytes as lone
surrogates (``os.fsdecode``). In a key, a path segment that holds one is written escaped:
each undecodable byte as ``%XX``, each ``%`` as ``%25``, and ``%~`` appended to mark it. A
segment that already ends in ``%~`` is escaped too, so every segment ending in ``%~`` is an
escaped one and decoding is unambiguous; every other name (all valid UTF-8 names, that is
nearly all) is its own key, as before. ``from_key(to_key(p)) == p`` for every path ``p``, and
``os.fsencode`` of the result gives the bytes the job wrote.
"""

from __future__ import annotations

import re

MARK = "%~"
_ESCAPE = re.compile(r"%([0-9A-F]{2})")


def to_key(path: str) -> str:
    """The key form of a relative POSIX path (as ``os.fsdecode`` reads it)."""
    return "/".join(_segment_to_key(part) for part in path.split("/"))


def from_key(key: str) -> str:
    """The path a key form stands for (lone surrogates for undecodable bytes)."""
    return "/".join(_segment_from_key(part) for part in key.split("/"))


def _segment_to_key(part: str) -> str:
    if not part.endswith(MARK) and not any("\udc80" <= c <= "\udcff" for c in part):
        return part
    out = []
    for c in part:
        if c == "%":
            out.append("%25")
        elif "\udc80" <= c <= "\udcff":
            out.append(f"%{ord(c) - 0xDC00:02X}")
        else:
            out.append(c)
    return "".join(out) + MARK


def _segment_from_key(part: str) -> str:
    if not part.endswith(MARK):
        return part

    def byte(match: re.Match[str]) -> str:
        value = int(match.group(1), 16)
        return chr(0xDC00 + value) if value >= 0x80 else chr(value)

    return _ESCAPE.sub(byte, part[: -len(MARK)])
