"""A job's metrics on their way to the store: the file ``$DSTACK_METRICS`` names, followed
while the job runs, its points shipped in chunks as the log's output is.

The job appends JSON lines, one object a line: ``step`` (optional, a whole number) and any
other fields, each a number (``{"step": 3, "loss": 0.41}``). The runner reads the lines as
they are completed (``runner.tail``), stamps each point with the time it read it, replaces
secret values in the metrics' names by ``***`` (as in the log), and writes them as numbered
chunks of its attempt (``state.metrics``): a retried or resumed job continues the series.
A chunk that fails to upload is sent again as it was, before anything newer; while the store
is behind, the rest stays in the file, unread, so memory stays bounded.

A line that is not a metric point (not JSON, a field that is not a finite number, a line
longer than :data:`MAX_LINE`) is skipped; the attempt ends with one warning in the job's log
saying how many were, and the first one's number and why. A job that never writes the file
costs one failed ``open`` per poll.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from dstack import backoff, state
from dstack.errors import StorageError
from dstack.models import JobSpec
from dstack.runner.docker import METRICS_MOUNT
from dstack.runner.tail import LineTail, TailLine
from dstack.state import StoredPoint
from dstack.storage.base import Storage

VARIABLE = "DSTACK_METRICS"
FILE_NAME = "metrics.jsonl"
logger = logging.getLogger(__name__)
MAX_LINE = 64 * 1024
MAX_NAME = 200
MAX_STEP = 2**63
CHUNK_POINTS = 5000
#: points waiting for the store beyond which the file is not read further until they are sent
MAX_BUFFERED = 20000
#: bytes of the file read at a time: the points waiting are at most MAX_BUFFERED and one read's
READ_LIMIT = 1 << 18


def metrics_dir(job_dir: Path) -> Path:
    """The folder of the job's metrics file, outside its repo (never an artifact)."""
    return job_dir / "metrics"


def prepare_file(job_dir: Path, *, in_container: bool) -> tuple[Path, str]:
    """(the metrics file as the runner reads it, ``$DSTACK_METRICS`` as the job sees it): a
    fresh file for each attempt (one left by an earlier attempt in a kept folder is removed)."""
    folder = metrics_dir(job_dir)
    folder.mkdir(parents=True, exist_ok=True)
    if in_container:
        # whatever user the image runs as may create the file; the job's folder above it
        # (0700, the runner's) keeps this machine's other users out
        folder.chmod(0o777)
    path = folder / FILE_NAME
    path.unlink(missing_ok=True)
    return path, f"{METRICS_MOUNT}/{FILE_NAME}" if in_container else str(path)


def parse_line(data: bytes) -> tuple[int | None, dict[str, float]] | str | None:
    """``(step, values)`` of a metric line; else why it is not one; None for a blank line."""
    if not data.strip():
        return None
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError):
        return "not JSON"
    if not isinstance(raw, dict):
        return "not a JSON object"
    step = raw.pop("step", None)
    if type(step) is float and step.is_integer():  # 2.0: a step a float counter wrote
        step = int(step)
    if step is not None and (type(step) is not int or not -MAX_STEP < step < MAX_STEP):
        return f"step is {_shown(step)}, not a whole number"
    values: dict[str, float] = {}
    for name, value in raw.items():
        if not name or len(name) > MAX_NAME:
            return f"a metric name must have 1 to {MAX_NAME} characters"
        number = state.finite_number(value)
        if number is None:
            return f"{_shown(name)} is {_shown(value)}, not a finite number"
        values[name] = number
    if not values:
        return "no metric in it, only a step"
    return step, values


class MetricsShipper:
    """Follows ``path`` and writes its points as chunks of ``attempt`` (see the module)."""

    def __init__(
        self,
        storage: Storage,
        spec: JobSpec,
        attempt: int,
        path: Path,
        *,
        mask: Callable[[str], str],
        interval: float,
    ) -> None:
        self.storage = storage
        self.spec = spec
        self.attempt = attempt
        self.mask = mask
        self.interval = interval
        self.tail = LineTail(path, max_line=MAX_LINE)
        self.skipped = 0
        self.first_bad: tuple[int, str] | None = None
        self.failures = 0
        self.lost = False
        #: why the file could not be followed (the first reason seen), if it could not
        self.refused: str | None = None
        #: how ``close`` waits between retries of the store (tests pass one that does not)
        self.sleep: Callable[[float], None] = time.sleep
        self._buffer: list[StoredPoint] = []
        self._pending: list[StoredPoint] | None = None  # a chunk that failed: resent as is
        self._seq: int | None = None  # found in the store before the first chunk is written
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="metrics-shipper", daemon=True)

    def start(self) -> MetricsShipper:
        self._thread.start()
        return self

    def close(self, *, deadline: float = 600.0) -> str | None:
        """Read the file to its end (the job has exited), ship the rest, retrying the store
        until ``deadline`` seconds pass; the warning line for the job's log, if any."""
        self._closed.set()
        if self._thread.ident is not None:  # started
            self._thread.join()

        def drain() -> None:
            while True:
                if not self._flush():
                    raise StorageError("the job's last metric points are not in the store yet")
                self._poll(final=True)
                if not self._flush():
                    raise StorageError("the job's last metric points are not in the store yet")
                if not self.tail.more:
                    return

        try:
            backoff.retry_until(
                drain, retry_on=backoff.errors_of(StorageError), deadline=deadline,
                first_wait=0.2, max_wait=5.0, what="last metrics upload", sleep=self.sleep,
            )  # fmt: skip
        except StorageError:
            self.lost = True
        except Exception:  # the runner's own bug: said in the log, never the job's failure
            logger.exception("job %s: shipping its metrics failed", self.spec.job_id)
            self.lost = True
        return self.warning()

    def warning(self) -> str | None:
        problems = []
        if self.refused is not None:
            problems.append(f"${VARIABLE} {self.refused}")
        if self.first_bad is not None:
            number, why = self.first_bad
            problems.append(
                f"skipped {self.skipped} line(s) of ${VARIABLE} that are not metric points; "
                f"the first, line {number}: {why}"
            )
        if self.lost:
            problems.append("some points could not be saved to the store")
        return f"metrics: {'; '.join(problems)}" if problems else None

    def _loop(self) -> None:
        while not self._closed.wait(self.interval):
            try:
                self._poll()
                self._flush()
            except Exception:  # the runner's own bug: logged; ``close`` tries once more
                logger.exception("job %s: shipping its metrics failed", self.spec.job_id)

    def _poll(self, *, final: bool = False) -> None:
        """Read what the job has written, while fewer than MAX_BUFFERED points wait (the store
        is behind: the rest waits in the file)."""
        while len(self._buffer) < MAX_BUFFERED:
            self._take(self.tail.read(final=final, limit=READ_LIMIT))
            self.refused = self.refused or self.tail.refused
            if not self.tail.more:
                return

    def _take(self, lines: list[TailLine]) -> None:
        now = time.time()
        for line in lines:
            parsed = None if line.data is None else parse_line(line.data)
            if line.data is None:
                self._skip(line.number, f"longer than {MAX_LINE // 1024} KiB")
            elif isinstance(parsed, str):
                self._skip(line.number, parsed)
            elif parsed is not None:
                step, values = parsed
                masked = {self.mask(name): value for name, value in values.items()}
                self._buffer.append(StoredPoint(at=now, step=step, values=masked))

    def _skip(self, number: int, why: str) -> None:
        self.skipped += 1
        if self.first_bad is None:
            self.first_bad = (number, self.mask(why))

    def _flush(self) -> bool:
        """Send the chunk that failed before, if any, then what is buffered; True when all
        of it is in the store."""
        while self._pending is not None or self._buffer:
            if self._pending is None:
                self._pending = self._buffer[:CHUNK_POINTS]
                del self._buffer[:CHUNK_POINTS]
            if not self._send_pending():
                return False
        return True

    def _send_pending(self) -> bool:
        assert self._pending is not None
        try:
            if self._seq is None:
                self._seq = state.next_metric_seq(self.storage, self.spec, self.attempt)
            state.write_metric_chunk(
                self.storage, self.spec, self.attempt, self._seq, self._pending
            )
        except StorageError:
            self.failures += 1
            return False
        self._pending = None
        self._seq += 1
        return True


def _shown(value: object, limit: int = 40) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
