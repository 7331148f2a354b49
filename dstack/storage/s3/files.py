"""Moving one file between disk and an S3 bucket, as ``S3Storage`` does it.

- Up: a small file (``inline_limit`` or less) is read and sent in one ``PutObject`` — a file
  object would make botocore ask for ``Expect: 100-continue``, a round trip per file; a larger
  one is streamed; from ``threshold`` on, boto3's multipart upload sends parts in parallel.
- Down: one ``GetObject`` streams a small object. Of a large one it streams only the first of
  ``concurrency`` equal parts while the others come at once in ranged GETs pinned to the first
  answer's ETag, so that an object overwritten meanwhile is fetched again rather than mixed.
  No HeadObject, and no more parts than workers: each request costs (on some servers, a copy
  of the whole object per ranged GET).

Nothing here retries or maps errors: the caller (``S3Storage._call``) does both, and calls
these again from the start on a transient failure.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dstack.errors import StorageError
from dstack.storage.base import ProgressCallback
from dstack.storage.s3 import aws_errors

MiB = 1 << 20
_CHUNK = MiB
_CHANGED_CODES = ("PreconditionFailed", "412")


@dataclass(frozen=True)
class Parts:
    """How files are split: see the module docstring."""

    threshold: int
    chunksize: int
    concurrency: int
    inline_limit: int


def put_file(
    client: Any, bucket: str, key: str, path: Path, mode: str, parts: Parts, meter: Progress
) -> None:
    """Store the file at ``path`` as ``key``, its mode in the object's metadata."""
    meter.restart()
    size = path.stat().st_size
    if size >= parts.threshold:
        from boto3.s3.transfer import TransferConfig, create_transfer_manager

        config = TransferConfig(
            multipart_threshold=parts.threshold,
            multipart_chunksize=parts.chunksize,
            max_concurrency=parts.concurrency,
            num_download_attempts=2,
            preferred_transfer_client="classic",
        )
        with create_transfer_manager(client, config) as manager:
            extra = {"Metadata": {"mode": mode}}
            manager.upload(str(path), bucket, key, extra, [meter]).result()
        return
    with open(path, "rb") as f:
        body = f.read() if size <= parts.inline_limit else f
        client.put_object(Bucket=bucket, Key=key, Body=body, Metadata={"mode": mode})
    meter.on_progress(size)


def get_file(
    client: Any, bucket: str, key: str, tmp: Path, threshold: int, parts: Parts, meter: Progress
) -> int:
    """Write the object ``key`` to ``tmp``; return the file mode it was stored with. An object
    overwritten during the download is downloaded again (up to three times)."""
    for attempt in range(3):
        try:
            return _get_file(client, bucket, key, tmp, threshold, parts, meter)
        except Exception as exc:
            if aws_errors.error_code(exc) not in _CHANGED_CODES or attempt == 2:
                raise
    raise AssertionError("unreachable")


def _get_file(
    client: Any, bucket: str, key: str, tmp: Path, threshold: int, parts: Parts, meter: Progress
) -> int:
    meter.restart()
    response = client.get_object(Bucket=bucket, Key=key)
    length = int(response.get("ContentLength", 0))
    tmp.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "wb") as f, closing(response["Body"]) as body:
        if length < threshold:
            for chunk in body.iter_chunks(_CHUNK):
                f.write(chunk)
                meter.on_progress(len(chunk))
        else:
            count = max(1, min(parts.concurrency, length // parts.chunksize))
            first = -(-length // count)
            f.truncate(length)
            ranges = _Ranges(client, bucket, key, response.get("ETag"), f.fileno(), meter)
            ranges.start(first, length)
            try:
                while f.tell() < first:
                    chunk = body.read(min(_CHUNK, first - f.tell()))
                    if not chunk:
                        raise StorageError(f"{key}: the object ended before its length")
                    f.write(chunk)
                    meter.on_progress(len(chunk))
            finally:
                body.close()
                ranges.wait()
    return file_mode(response.get("Metadata", {}).get("mode"))


class _Ranges:
    """Bytes ``part..total`` of an object fetched into a file, ``part`` bytes per ranged GET,
    all at once."""

    def __init__(
        self, client: Any, bucket: str, key: str, etag: str | None, fd: int, meter: Progress
    ) -> None:
        self.args: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if etag:
            self.args["IfMatch"] = etag
        self.client, self.fd, self.meter = client, fd, meter
        self.pool: ThreadPoolExecutor | None = None
        self.futures: list[Any] = []

    def start(self, part: int, total: int) -> None:
        offsets = list(range(part, total, part))
        if not offsets:
            return
        self.pool = ThreadPoolExecutor(max_workers=len(offsets))
        self.futures = [
            self.pool.submit(self._fetch, offset, min(offset + part, total) - 1)
            for offset in offsets
        ]

    def wait(self) -> None:
        """Wait for every range; raise the first failure."""
        if self.pool is None:
            return
        try:
            for future in self.futures:
                future.result()
        finally:
            self.pool.shutdown(cancel_futures=True)

    def _fetch(self, offset: int, end: int) -> None:
        response = self.client.get_object(**self.args, Range=f"bytes={offset}-{end}")
        with closing(response["Body"]) as body:
            for chunk in body.iter_chunks(_CHUNK):
                os.pwrite(self.fd, chunk, offset)
                offset += len(chunk)
                self.meter.on_progress(len(chunk))


def run_parallel(items: list[Any], workers: int, fn: Callable[[Any], None]) -> None:
    """``fn`` on every item, ``workers`` at a time; the first failure cancels what has not
    started and is raised."""
    if len(items) <= 1 or workers <= 1:
        for item in items:
            fn(item)
        return
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        futures = [pool.submit(fn, item) for item in items]
        for future in as_completed(futures):
            exc = future.exception()
            if exc is not None:
                for other in futures:
                    other.cancel()
                raise exc


class Progress:
    """Reports progress to ``callback`` so that it sums to the file size: bytes sent again by a
    retry (or rewound by botocore with negative amounts) are not counted twice."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self._callback = callback
        self._lock = threading.Lock()
        self._attempt = 0  # bytes moved by the current attempt
        self._reported = 0  # bytes already reported (the best any attempt got to)

    def restart(self) -> None:
        with self._lock:
            self._attempt = 0

    def on_progress(self, bytes_transferred: int, **_: Any) -> None:
        if self._callback is None:
            return
        with self._lock:
            self._attempt += bytes_transferred
            ahead = self._attempt - self._reported
            if ahead <= 0:
                return
            self._reported = self._attempt
        self._callback(ahead)


def file_mode(meta: str | None) -> int:
    """The file mode for an object's ``x-amz-meta-mode`` (``755`` or ``644``)."""
    try:
        return 0o755 if meta and int(meta, 8) & 0o111 else 0o644
    except ValueError:
        return 0o644
