"""Progress bars for transfers (uploads, downloads): rich on a terminal, silent otherwise."""

from __future__ import annotations

import sys
from typing import Any

from dstack.storage.base import ProgressCallback


class transfer_bar:
    """``with transfer_bar(total, "Uploading") as advance: ...``; ``advance(n)`` per bytes moved.

    ``advance`` may be called from several threads at once (rich's ``Progress`` is locked).
    """

    def __init__(self, total: int, description: str = "Downloading") -> None:
        self.total = total
        self.description = description
        self.bar: Any = None

    def __enter__(self) -> ProgressCallback:
        if not sys.stderr.isatty():
            return lambda n: None
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

        self.bar = Progress(
            "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
            TransferSpeedColumn(), transient=True, console=Console(stderr=True),
        )  # fmt: skip
        self.bar.start()
        task = self.bar.add_task(self.description, total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


class CodeProgressView:
    """The progress of a snapshot that has much to read or send (a repo's first run): one line
    on standard error, rewritten in place on a terminal, printed once per phase otherwise.

    Quiet when there is little to do: nothing shows for fewer than ``min_files`` files hashed or
    ``min_bytes`` to send, so an ordinary re-run prints nothing.
    """

    def __init__(self, min_files: int = 500, min_bytes: int = 8 << 20) -> None:
        self.tty = sys.stderr.isatty()
        self.min_files, self.min_bytes = min_files, min_bytes
        self.total_files = self.total_bytes = self.sent_bytes = 0
        self.phase = ""
        self.last = 0.0
        self.shown = False

    def hashing(self, files: int, size: int) -> None:
        if files >= self.min_files:
            self._show(
                "reading the code", f"{files} files, {_mib(size)} hashed", files == self.min_files
            )

    def storing(self, files: int, size: int) -> None:
        self.total_files, self.total_bytes = files, size
        if files >= self.min_files or size >= self.min_bytes:
            self._show("storing the code", f"{files} new files, {_mib(size)}", True)

    def sent(self, size: int) -> None:
        self.sent_bytes += size
        if self.total_files >= self.min_files or self.total_bytes >= self.min_bytes:
            pct = 100 * self.sent_bytes // max(self.total_bytes, 1)
            self._show(
                "storing the code",
                f"{_mib(self.sent_bytes)} of {_mib(self.total_bytes)} ({pct}%)",
                False,
            )

    def done(self) -> None:
        if self.shown and self.tty:
            print(file=sys.stderr)

    def _show(self, phase: str, text: str, first: bool) -> None:
        import time

        now = time.monotonic()
        if self.tty:
            if first or now - self.last >= 0.1:
                print(f"\r{phase}: {text}\x1b[K", end="", file=sys.stderr, flush=True)
                self.last, self.shown = now, True
        elif phase != self.phase:
            print(f"{phase}: {text}…", file=sys.stderr, flush=True)
            self.shown = True
        self.phase = phase


def _mib(size: int) -> str:
    from dstack.units import format_size

    return format_size(size)
