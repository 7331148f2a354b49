"""Rendering for the terminal: tables, times, statuses. Plain text, fast for 10,000 rows;
colour only when the output is a terminal."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TextIO

from dstack.models import JobStatus

_COLOURS = {
    JobStatus.DONE: "32",
    JobStatus.FAILED: "31",
    JobStatus.INTERRUPTED: "31",
    JobStatus.ABORTED: "33",
    JobStatus.STOPPED: "33",
    JobStatus.STOPPING: "33",
    JobStatus.RUNNING: "36",
}


def colour_enabled(stream: TextIO = sys.stdout) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ


def status_text(status: JobStatus, stream: TextIO = sys.stdout) -> str:
    code = _COLOURS.get(status)
    if code and colour_enabled(stream):
        return f"\x1b[{code}m{status.value}\x1b[0m"
    return status.value


def ago(timestamp: float, now: float | None = None) -> str:
    """``3 min ago``, ``2 hours ago``, or a date for old times."""
    delta = (now or time.time()) - timestamp
    if delta < 60:
        return "now" if delta < 5 else f"{int(delta)} sec ago"
    if delta < 3600:
        return f"{int(delta // 60)} min ago"
    if delta < 86400:
        hours = int(delta // 3600)
        return f"{hours} hour{'s' if hours > 1 else ''} ago"
    return datetime.fromtimestamp(timestamp).strftime("%b %d, %Y %H:%M")


def iso(timestamp: float | None) -> str | None:
    """UTC, to the millisecond, truncated as the store's run index keeps times: a run's
    ``submitted_at`` reads the same from `ps --json` (the index) and `ps RUN --json` (its
    record)."""
    if timestamp is None:
        return None
    millis = int(timestamp * 1000)
    moment = datetime.fromtimestamp(millis // 1000, tz=timezone.utc)
    return (moment + timedelta(milliseconds=millis % 1000)).isoformat(timespec="milliseconds")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO = sys.stdout) -> None:
    """Left-aligned columns, widths from the visible text (colour codes don't count)."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], _visible_len(cell))
    lines = [_line(headers, widths)]
    lines.extend(_line(row, widths) for row in rows)
    out.write("\n".join(lines) + "\n")


def _line(cells: Sequence[str], widths: list[int]) -> str:
    parts = [
        cell + " " * (width - _visible_len(cell))
        for cell, width in zip(cells, widths, strict=False)
    ]
    return "  ".join(parts).rstrip()


def _visible_len(text: str) -> int:
    if "\x1b[" not in text:
        return len(text)
    import re

    return len(re.sub(r"\x1b\[[0-9;]*m", "", text))


def print_json(data: Any, out: TextIO = sys.stdout) -> None:
    out.write(json.dumps(data, indent=2, default=str) + "\n")


def files_text(count: int) -> str:
    """``1 file``, ``3 files``."""
    return f"{count} file" if count == 1 else f"{count} files"
