"""``S3Storage``: the state store as an S3 bucket (optionally under a key prefix), shared by a team.

This module owns the store's objects and its one client per process (made again after a fork);
``s3_client``, ``s3_transfers``, ``s3_crt``, ``s3_files``, ``s3_errors`` and ``s3_probe`` own the
rest. ``put(if_absent=True)`` is a conditional write: the one way two writers never both win.
The details: docs/design/s3-store.md.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any, TypeVar

from dstack.errors import ConfigError, DstackError, NotFoundError, StorageError
from dstack.settings import RETRY_DEADLINE_ENV
from dstack.storage.base import ObjectInfo, ProgressCallback, Storage
from dstack.storage.local import validate_key, validate_prefix
from dstack.storage.s3 import aws_errors
from dstack.storage.s3 import client as s3_client
from dstack.storage.s3 import errors as s3_errors
from dstack.storage.s3 import probe as s3_probe
from dstack.storage.s3 import transfers as s3_transfers
from dstack.storage.s3.probe import BucketStatus
from dstack.store_config import S3StoreConfig

T = TypeVar("T")
logger = logging.getLogger(__name__)

MiB = 1 << 20
DEFAULT_RETRY_DEADLINE = 60.0
_DELETE_BATCH = 1000


class S3Storage(Storage):
    """Blobs as objects of ``bucket`` under ``prefix``."""

    log_flush_interval = 0.25
    poll_interval = 0.25
    #: files at least this big use multipart transfers of ``multipart_chunksize`` parts
    multipart_threshold = 8 * MiB
    multipart_chunksize = 8 * MiB
    #: in a download of many files, only files this big are split in parts (rclone's default
    #: --multi-thread-cutoff): see ``download_tree``
    tree_multipart_threshold = 256 * MiB
    #: files up to this size are read into memory and sent in one request
    inline_upload_limit = MiB
    #: threads of one managed (multipart) transfer
    transfer_concurrency = 8
    #: keys per ``list_objects_v2`` request (S3's maximum)
    list_page_size = 1000
    connect_timeout = 5.0
    read_timeout = 30.0

    def __init__(
        self,
        bucket: str,
        *,
        region: str | None = None,
        profile: str | None = None,
        endpoint_url: str | None = None,
        prefix: str = "",
        retry_deadline: float | None = None,
    ) -> None:
        if not bucket:
            raise ConfigError("the S3 state store has no bucket: run `dstack config`")
        self.bucket = bucket
        self.region = region or None
        self.profile = profile or None
        self.endpoint_url = endpoint_url or None
        prefix = prefix.strip("/")
        if prefix:
            try:
                validate_key(prefix)
            except StorageError:
                raise ConfigError(f"invalid S3 key prefix {prefix!r}") from None
        self._prefix = f"{prefix}/" if prefix else ""
        self.retry_deadline = aws_errors.deadline_setting(
            retry_deadline, RETRY_DEADLINE_ENV, DEFAULT_RETRY_DEADLINE
        )
        self._client_instance: Any = None
        self._client_pid = 0
        self._credentials: Any = None
        self._client_lock = threading.Lock()
        self._files = s3_transfers.Transfers(self)

    @property
    def prefix(self) -> str:
        return self._prefix.rstrip("/")

    # the Storage contract

    def put(self, key: str, data: bytes, *, if_absent: bool = False, private: bool = False) -> None:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key), "Body": data}
        if if_absent:
            args["IfNoneMatch"] = "*"
        if private:  # SSE-KMS with the account's aws/s3 key: usable by whoever may use the bucket
            args["ServerSideEncryption"] = "aws:kms"
        self._call(lambda: self._client().put_object(**args), key=key, if_absent=if_absent)

    def get(self, key: str) -> bytes:
        full = self._key(key)

        def fetch() -> bytes:
            response = self._client().get_object(Bucket=self.bucket, Key=full)
            with closing(response["Body"]) as body:
                return bytes(body.read())

        return self._call(fetch, key=key)

    def read_chunks(self, key: str, *, chunk_size: int = 8 << 20) -> Iterator[bytes]:
        """A HEAD for the size, then one ranged GET per chunk, each retried on its own: a
        dropped connection costs one chunk, and memory holds one chunk at a time."""
        full = self._key(key)
        head = self._call(lambda: self._client().head_object(Bucket=self.bucket, Key=full), key=key)
        size = int(head.get("ContentLength", 0))
        start = 0
        while start < size:
            byte_range = f"bytes={start}-{min(start + chunk_size, size) - 1}"

            def fetch(byte_range: str = byte_range) -> bytes:
                response = self._client().get_object(Bucket=self.bucket, Key=full, Range=byte_range)
                with closing(response["Body"]) as body:
                    return bytes(body.read())

            data = self._call(fetch, key=key)
            if not data:  # replaced by a shorter object meanwhile
                return
            yield data
            start += len(data)

    def exists(self, key: str) -> bool:
        full = self._key(key)
        try:
            self._call(lambda: self._client().head_object(Bucket=self.bucket, Key=full), key=key)
        except NotFoundError:
            return False
        return True

    def list_objects(self, prefix: str, *, after: str | None = None) -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        start = None if after is None else self._prefix + after
        for item in self._list_raw(self._prefix + prefix, start):
            key = item["Key"][len(self._prefix) :]
            if not key.endswith("/"):
                yield ObjectInfo(key=key, size=int(item.get("Size", 0)))

    def delete(self, key: str) -> None:
        full = self._key(key)
        self._call(lambda: self._client().delete_object(Bucket=self.bucket, Key=full), key=key)

    def delete_prefix(self, prefix: str) -> int:
        count = 0
        batch: list[str] = []
        for item in self._list_raw(self._prefix + prefix, None):
            batch.append(item["Key"])
            count += not item["Key"].endswith("/")
            if len(batch) == _DELETE_BATCH:
                self._delete_batch(batch)
                batch = []
        if batch:
            self._delete_batch(batch)
        return count

    def upload_file(
        self, path: Path, key: str, *, progress: ProgressCallback | None = None
    ) -> None:
        self.upload_tree([(Path(path), key)], progress=progress)

    def download_file(
        self, key: str, path: Path, *, progress: ProgressCallback | None = None
    ) -> None:
        self._files.download_file(key, Path(path), progress)

    def upload_tree(
        self,
        files: list[tuple[Path, str]],
        *,
        progress: ProgressCallback | None = None,
        workers: int = 16,
        on_uploaded: Callable[[str], None] | None = None,
    ) -> None:
        """See ``s3_transfers.Transfers.upload_tree``."""
        self._files.upload_tree(files, progress, workers, on_uploaded)

    def download_tree(
        self,
        items: list[tuple[str, Path]],
        *,
        progress: ProgressCallback | None = None,
        workers: int = 16,
        sizes: Mapping[str, int] | None = None,
    ) -> None:
        """See ``s3_transfers.Transfers.download_tree``."""
        self._files.download_tree(items, progress, workers, sizes)

    def config(self) -> S3StoreConfig:
        return S3StoreConfig(
            bucket=self.bucket,
            region=self.region,
            profile=self.profile,
            endpoint_url=self.endpoint_url,
            prefix=self.prefix,
        )

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def probe_bucket(self, *, write: bool = True) -> BucketStatus:
        """See ``s3_probe.probe_bucket``."""
        return s3_probe.probe_bucket(self, write=write)

    # helpers

    def _key(self, key: str) -> str:
        validate_key(key)
        return self._prefix + key

    def _client(self) -> Any:
        if self._client_pid != os.getpid():  # made by the process we were forked from
            self._client_lock = threading.Lock()
            self._client_instance = None
            self._client_pid = os.getpid()
        if self._client_instance is None:
            with self._client_lock:
                if self._client_instance is None:
                    self._client_instance, self._credentials = s3_client.make_client(
                        where=self.describe(),
                        profile=self.profile,
                        region=self.region,
                        endpoint_url=self.endpoint_url,
                        connect_timeout=min(self.connect_timeout, max(self.retry_deadline, 1.0)),
                        read_timeout=self.read_timeout,
                    )
        return self._client_instance

    def _list_raw(self, full_prefix: str, start_after: str | None) -> Iterator[dict[str, Any]]:
        while True:
            args = dict(Bucket=self.bucket, Prefix=full_prefix, MaxKeys=self.list_page_size)
            if start_after:
                args["StartAfter"] = start_after
            page = self._call(functools.partial(self._client().list_objects_v2, **args))
            contents = page.get("Contents") or []
            yield from contents
            if not page.get("IsTruncated") or not contents:
                return
            start_after = contents[-1]["Key"]

    def _delete_batch(self, keys: list[str]) -> None:
        objects = [{"Key": key} for key in keys]
        response = self._call(
            lambda: self._client().delete_objects(
                Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
            )
        )
        if errors := response.get("Errors"):
            first = errors[0]
            raise StorageError(
                f"cannot delete {len(errors)} objects of {self.describe()} "
                f"({first.get('Code')}: {first.get('Message')}, e.g. {first.get('Key')})"
            )

    def _attempt(self, fn: Callable[[], T]) -> tuple[T | None, BaseException | None]:
        """``fn()`` with retries: (its result, None), or (None, the error it ended with)."""
        try:
            return aws_errors.call_with_deadline(fn, self.retry_deadline), None
        except DstackError:
            raise
        except Exception as exc:
            return None, aws_errors.unwrap(exc)

    def _call(
        self,
        fn: Callable[[], T],
        *,
        key: str | None = None,
        if_absent: bool = False,
    ) -> T:
        """``fn()`` with retries; every failure leaves as a dstack error."""
        try:
            return aws_errors.call_with_deadline(fn, self.retry_deadline)
        except DstackError:
            raise
        except Exception as exc:
            logger.debug("s3://%s/%s: %s", self.bucket, key or "", aws_errors.brief(exc))
            mapped = self._map_error(exc, key=key, if_absent=if_absent)
            if mapped is None:
                raise
            raise mapped from aws_errors.unwrap(exc)

    def _map_error(
        self, exc: BaseException, *, key: str | None, if_absent: bool
    ) -> DstackError | None:
        return s3_errors.map_error(
            exc,
            where=self.describe(),
            bucket=self.bucket,
            deadline=self.retry_deadline,
            key=key,
            if_absent=if_absent,
        )
