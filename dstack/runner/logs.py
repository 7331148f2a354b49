"""The job's output on its way to the store: buffered bytes flushed as ordered log chunks.

Every byte the job prints is kept: chunks are numbered, written in order, and a chunk that
fails to upload stays in the buffer and goes with the next flush. Flushes happen every
``interval`` seconds while there is output (the store decides the interval: a local folder
can take a chunk every 50 ms, S3 requests cost money), and once more at the end.
"""

from __future__ import annotations

import threading
import time

from dstack import state
from dstack.backends.base import Storage
from dstack.errors import StorageError
from dstack.models import JobSpec


class LogSink:
    def __init__(self, storage: Storage, spec: JobSpec, *, first_seq: int = 0) -> None:
        self.storage = storage
        self.spec = spec
        self.interval = storage.log_flush_interval
        self.seq = first_seq
        self._buffer = bytearray()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="log-flusher", daemon=True)
        self.failures = 0

    def start(self) -> LogSink:
        self._thread.start()
        return self

    def write(self, data: bytes) -> None:
        if not data:
            return
        with self._lock:
            self._buffer += data
        self._wake.set()

    def line(self, text: str) -> None:
        """A line of dstack's own (e.g. why the job failed before it started)."""
        self.write(text.encode() + b"\n")

    def flush(self) -> bool:
        """Upload what is buffered as one chunk. True when the buffer is empty afterwards."""
        with self._flush_lock:
            with self._lock:
                data = bytes(self._buffer)
            if not data:
                return True
            try:
                state.write_log_chunk(self.storage, self.spec, self.seq, data)
            except StorageError:
                self.failures += 1
                return False
            with self._lock:
                del self._buffer[: len(data)]
            self.seq += 1
            return True

    def close(self, *, deadline: float = 600.0) -> bool:
        """Stop the flusher and upload the rest, retrying until ``deadline`` seconds pass."""
        self._closed.set()
        self._wake.set()
        self._thread.join()
        give_up = time.monotonic() + deadline
        delay = 0.2
        while not self.flush():
            if time.monotonic() > give_up:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
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
