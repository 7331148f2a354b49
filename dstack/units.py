"""Parsing of human sizes (``16GB``, ``512MiB``) and durations (``1h``, ``30m``)."""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)?\s*$", re.IGNORECASE)
_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_size_bytes(value: str | int) -> int:
    """``16GB`` → bytes. Units are binary (GB = GiB), as in the 2022 workflow format;
    a bare number is bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"{value} is negative")
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a size like 512MB, 16GB or 1TB")
    number, unit = match.groups()
    letter = (unit or "").lower().rstrip("b").rstrip("i")
    return int(float(number) * _UNITS[letter])


def parse_size_mib(value: str | int) -> int:
    """``16GB`` → MiB; a bare number is MiB (as the 2022 format's ``memory: 1024``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"{value} is not a positive size")
        return value
    text = str(value).strip()
    if re.fullmatch(r"\d+", text):
        return int(text)
    size = parse_size_bytes(text)
    if size <= 0:
        raise ValueError(f"{value!r} is not a positive size")
    return max(1, size // (1024 * 1024))


def parse_duration(value: str) -> float:
    """``90s``, ``15m``, ``2h``, ``1d`` → seconds."""
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a duration like 30s, 15m, 2h or 1d")
    number, unit = match.groups()
    return float(number) * _SECONDS[(unit or "s").lower()]


def format_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size}B"
