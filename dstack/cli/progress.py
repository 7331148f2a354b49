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
