"""The job's output on its way to the store: buffered bytes flushed as ordered log chunks.

Every byte the job prints is kept, once: chunks are numbered and written in order, and a chunk
that fails to upload is retried as it was — same key, same bytes — before anything newer goes.
So if a write lands after all although the client saw it fail (a connection dropped after the
store took it), the retry only rewrites the same object: no duplicate, no gap, and a reader who
already read the chunk has read all of it. Flushes happen every
``interval`` seconds while there is output (the store decides the interval: a local folder
can take a chunk every 50 ms, S3 requests cost money), and once more at the end. Secret
values (``mask``) are replaced by ``***`` before anything is buffered (``runner.masking``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from dstack import backoff, state
from dstack.errors import StorageError
from dstack.models import JobSpec
from dstack.runner.masking import MASK, Masker
from dstack.storage.base import Storage


class LogSink:
    def __init__(self, storage: Storage, spec: JobSpec, *, first_seq: int = 0) -> None:
        self.storage = storage
        self.spec = spec
        self.interval = storage.log_flush_interval
        self.seq = first_seq
        self._buffer = bytearray()
        self._pending: tuple[str, bytes] | None = None  # a chunk that failed: resent as is
        self._masker = Masker()  # secrets become *** before anything is buffered
        self._secrets: list[str] = []  # the values masked, longest first
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="log-flusher", daemon=True)
        self.failures = 0
        #: how ``close`` waits between retries of the store (tests pass one that does not)
        self.sleep: Callable[[float], None] = time.sleep

    def start(self) -> LogSink:
        self._thread.start()
        return self

    def write(self, data: bytes) -> None:
        if not data:
            return
        with self._lock:
            self._buffer += self._masker.feed(data)
        self._wake.set()

    def mask(self, values: list[str]) -> None:
        """Replace these values (secrets, tokens) by ``***`` in everything written from now on,
        even when a value is split across writes (see ``runner.masking``)."""
        with self._lock:
            self._masker.add(values)
            known = set(self._secrets)
            self._secrets += [v for v in values if v and v not in known]
            self._secrets.sort(key=len, reverse=True)

    def mask_text(self, text: str) -> str:
        """``text`` (a metric's name) with the values masked in the log replaced by ``***``."""
        with self._lock:
            secrets = list(self._secrets)
        for value in secrets:
            text = text.replace(value, MASK.decode())
        return text

    def line(self, text: str) -> None:
        """A line of dstack's own (e.g. why the job failed before it started)."""
        self.write(text.encode() + b"\n")

    def flush(self) -> bool:
        """Upload the chunk that failed before, if any, then what is buffered as a new chunk.
        True when both are in the store."""
        with self._flush_lock:
            if self._pending is not None and not self._send_pending():
                return False
            with self._lock:
                data = bytes(self._buffer)
                self._buffer.clear()
            if not data:
                return True
            self._pending = (state.log_chunk_key(self.spec, self.seq, time.time()), data)
            return self._send_pending()

    def _send_pending(self) -> bool:
        assert self._pending is not None
        key, data = self._pending
        try:
            self.storage.put(key, data)
        except StorageError:
            self.failures += 1
            return False
        self._pending = None
        self.seq += 1
        return True

    def close(self, *, deadline: float = 600.0) -> bool:
        """Stop the flusher and upload the rest, retrying until ``deadline`` seconds pass."""
        self._closed.set()
        self._wake.set()
        self._thread.join()
        with self._lock:
            self._buffer += self._masker.flush()

        def flushed() -> None:
            if not self.flush():
                raise StorageError("the job's last output is not in the store yet")

        try:
            backoff.retry_until(
                flushed, retry_on=backoff.errors_of(StorageError), deadline=deadline,
                first_wait=0.2, max_wait=5.0, what="last log upload", sleep=self.sleep,
            )  # fmt: skip
        except StorageError:
            return False
        return True

    def _loop(self) -> None:
        delay = self.interval
        while not self._closed.is_set():
            self._wake.wait()
            if self._closed.is_set():
                return
            self._closed.wait(delay)  # gather output for one interval: fewer, larger chunks
            self._wake.clear()
            if self.flush():
                delay = self.interval
            else:
                delay = min(max(delay * 2, 0.5), 10.0)  # store unreachable: back off, keep data
