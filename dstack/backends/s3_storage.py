"""``S3Storage``: the state store as an S3 bucket (optionally under a key prefix), shared by a team.

This module owns everything dstack does with S3 objects: the one lazily made boto3 client per
store (shared by threads; boto3 is imported on first use only), retries, and the mapping of
every botocore error to a dstack error; ``s3_files`` holds the mechanics of file transfers. Credentials come only from the AWS chain
(environment, profile, instance role) and are never stored.

- Key ``k`` is object ``<prefix>/k``. Listings page lazily through ``list_objects_v2`` with
  ``StartAfter``, in S3's UTF-8 byte order; console "folder" markers (``…/``) are skipped.
- ``put(if_absent=True)`` is a conditional write (``IfNoneMatch='*'``): 412/409 mean
  ``AlreadyExistsError``. If a connection drops after S3 stored our write, the retry meets our
  own object and also reports ``AlreadyExistsError``: a lost name, never two owners.
- ``put(private=True)`` (secrets) asks for SSE-KMS (``aws:kms``, the account's ``aws/s3`` key
  unless the bucket names another): a server that cannot do it fails the write.
- Files move as ``s3_files`` describes (one request for a small file; parallel parts for a
  large one); the executable bit travels as ``x-amz-meta-mode`` (``755``/``644``); downloads
  are renamed into place.
- Throttling, 5xx and dropped connections are retried with jittered exponential backoff for at
  most ``retry_deadline`` s (``DSTACK_S3_RETRY_DEADLINE``, default 60); botocore retries once.
- The client belongs to the process that made it: after a fork (the local runner is forked from
  the CLI) the first call makes a new one, so no connection pool is ever shared across processes.
- ``probe_bucket()`` answers `dstack config`: does the bucket exist, in which region, may we
  read and write it.
"""

from __future__ import annotations

import functools
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from dstack.backends import aws_errors, s3_files
from dstack.backends.base import ObjectInfo, ProgressCallback, Storage, is_executable
from dstack.backends.local_storage import validate_key
from dstack.errors import AlreadyExistsError, ConfigError, DstackError, NotFoundError, StorageError

T = TypeVar("T")

MiB = 1 << 20
DEFAULT_RETRY_DEADLINE = 60.0
RETRY_DEADLINE_ENV = "DSTACK_S3_RETRY_DEADLINE"
_CONFLICT_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_DELETE_BATCH = 1000
_CHUNK = MiB
_POOL_CONNECTIONS = 50  # enough for 16 tree workers, each of which may run a managed transfer
_REFUSED_CODES = frozenset({"403", "AccessDenied", "Forbidden", "AllAccessDisabled"})


@dataclass(frozen=True)
class BucketStatus:
    """What ``probe_bucket`` found. ``region`` is None when the server does not say (some
    S3-compatible servers); ``writable`` is None when writing was not tried."""

    exists: bool
    region: str | None = None
    readable: bool = False
    writable: bool | None = None


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
        self._client_lock = threading.Lock()

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

    def exists(self, key: str) -> bool:
        full = self._key(key)
        try:
            self._call(lambda: self._client().head_object(Bucket=self.bucket, Key=full), key=key)
        except NotFoundError:
            return False
        return True

    def list_objects(self, prefix: str, *, after: str | None = None) -> Iterator[ObjectInfo]:
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
        full, path, meter = self._key(key), Path(path), s3_files.Progress(progress)
        try:
            mode = "755" if is_executable(path) else "644"
            path.stat()
        except FileNotFoundError as exc:
            raise NotFoundError(str(path)) from exc
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror}") from exc
        parts = self._parts()
        self._call(
            lambda: s3_files.put_file(self._client(), self.bucket, full, path, mode, parts, meter),
            key=key,
        )

    def download_file(
        self, key: str, path: Path, *, progress: ProgressCallback | None = None
    ) -> None:
        self._download(key, path, progress, self.multipart_threshold)

    def _download(
        self, key: str, path: Path, progress: ProgressCallback | None, threshold: int
    ) -> None:
        full, target, meter = self._key(key), Path(path), s3_files.Progress(progress)
        tmp, parts = target.parent / f".tmp-{uuid.uuid4().hex}", self._parts()
        try:
            mode = self._call(
                lambda: s3_files.get_file(
                    self._client(), self.bucket, full, tmp, threshold, parts, meter
                ),
                key=key,
            )
            try:
                os.chmod(tmp, mode)
                os.replace(tmp, target)
            except OSError as exc:
                raise StorageError(f"cannot write {target}: {exc.strerror}") from exc
        finally:
            with suppress(OSError):
                tmp.unlink()

    def upload_tree(
        self,
        files: list[tuple[Path, str]],
        *,
        progress: ProgressCallback | None = None,
        workers: int = 16,
    ) -> None:
        """Upload many (path, key) pairs, ``workers`` at a time over the one shared client."""
        keys = [key for _, key in files]
        self._parallel(files, keys, workers, lambda p: self.upload_file(*p, progress=progress))

    def download_tree(
        self,
        items: list[tuple[str, Path]],
        *,
        progress: ProgressCallback | None = None,
        workers: int = 16,
    ) -> None:
        """Download many (key, path) pairs, ``workers`` at a time over the one shared client.

        With at least ``workers`` files the parallelism comes from the files, so each is one
        GET stream unless it reaches ``tree_multipart_threshold``: ranged parts would only add a
        request per part (and on some servers a copy of the whole object per part)."""
        keys = [key for key, _ in items]
        threshold = self.multipart_threshold
        if len(items) >= workers:
            threshold = max(threshold, self.tree_multipart_threshold)
        self._parallel(
            items, keys, workers, lambda p: self._download(p[0], p[1], progress, threshold)
        )

    def config(self) -> dict[str, Any]:
        return {
            "type": "s3",
            "bucket": self.bucket,
            "region": self.region,
            "profile": self.profile,
            "endpoint_url": self.endpoint_url,
            "prefix": self.prefix,
        }

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def probe_bucket(self, *, write: bool = True) -> BucketStatus:
        """Whether the bucket exists, its region, and whether these credentials may read it
        (``HeadBucket``) and, with ``write``, write under the prefix (an object put, then
        deleted). Raises ``StorageError`` only when S3 cannot be asked at all."""
        head, error = self._attempt(lambda: self._client().head_bucket(Bucket=self.bucket))
        region = _bucket_region(head if error is None else error)
        if error is not None:
            code, status = aws_errors.error_code(error), aws_errors.http_status(error) or 0
            if code in ("404", "NoSuchBucket", "NotFound"):
                return BucketStatus(exists=False)
            if code in _REFUSED_CODES or (region and status in (301, 400)):
                return BucketStatus(exists=True, region=region)  # refused, or elsewhere
            raise self._map_error(error, key=None, if_absent=False) or error
        if not write:
            return BucketStatus(exists=True, region=region, readable=True)
        key = f"dstack-config-check/{uuid.uuid4().hex}"
        put = functools.partial(
            self._client().put_object, Bucket=self.bucket, Key=self._key(key), Body=b""
        )
        _, error = self._attempt(put)
        if error is not None and aws_errors.error_code(error) in _REFUSED_CODES:
            return BucketStatus(exists=True, region=region, readable=True, writable=False)
        if error is not None:
            raise self._map_error(error, key=None, if_absent=False) or error
        self.delete(key)
        return BucketStatus(exists=True, region=region, readable=True, writable=True)

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
                    self._client_instance = self._make_client()
        return self._client_instance

    def _make_client(self) -> Any:
        import boto3
        import botocore.session
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ProfileNotFound

        config = Config(
            retries={"max_attempts": 2, "mode": "standard"},
            connect_timeout=min(self.connect_timeout, max(self.retry_deadline, 1.0)),
            read_timeout=self.read_timeout,
            max_pool_connections=_POOL_CONNECTIONS,
            tcp_keepalive=True,
            user_agent_extra="dstack",
            s3={"addressing_style": "path"} if self.endpoint_url else None,
        )
        try:
            core = botocore.session.get_session()
            # S3's timestamps (LastModified…) are never used here: kept as text, they cost
            # nothing, where parsing them is most of the CPU of reading a 1,000-key listing
            core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=str)
            # the service model, parsed once per process and inherited by forked runners
            core.register_component("data_loader", _shared_loader(core))
            session = boto3.session.Session(
                profile_name=self.profile, region_name=self.region, botocore_session=core
            )
            return session.client("s3", endpoint_url=self.endpoint_url, config=config)
        except ProfileNotFound as exc:
            raise StorageError(
                f"AWS profile {self.profile!r} not found: check ~/.aws/config or run "
                f"`aws configure --profile {self.profile}`"
            ) from exc
        except (BotoCoreError, ValueError) as exc:
            raise StorageError(f"cannot set up S3 for {self.describe()}: {exc}") from exc

    def _parts(self) -> s3_files.Parts:
        return s3_files.Parts(
            threshold=self.multipart_threshold,
            chunksize=self.multipart_chunksize,
            concurrency=self.transfer_concurrency,
            inline_limit=self.inline_upload_limit,
        )

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

    def _parallel(
        self, items: list[Any], keys: list[str], workers: int, fn: Callable[[Any], None]
    ) -> None:
        for key in keys:
            validate_key(key)  # refuse the whole batch before sending any of it
        if not items:
            return
        self._client()  # one client, made before the threads share it
        s3_files.run_parallel(items, workers, fn)

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
            mapped = self._map_error(exc, key=key, if_absent=if_absent)
            if mapped is None:
                raise
            raise mapped from aws_errors.unwrap(exc)

    def _map_error(
        self, exc: BaseException, *, key: str | None, if_absent: bool
    ) -> DstackError | None:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        exc = aws_errors.unwrap(exc)
        where, why = self.describe(), aws_errors.brief(exc)
        if isinstance(exc, ClientError):
            code = aws_errors.error_code(exc) or ""
            if if_absent and key is not None and code in _CONFLICT_CODES:
                return AlreadyExistsError(key)
            if key is not None and code in _NOT_FOUND_CODES:
                return NotFoundError(key)
            if code == "NoSuchBucket":
                return StorageError(f"bucket {self.bucket} does not exist: run `dstack config`")
            if code in aws_errors.ACCESS_CODES:
                return StorageError(
                    f"no access to {where} ({code}): check your AWS credentials/profile"
                )
            if aws_errors.is_transient(exc):
                return StorageError(
                    f"the S3 state store {where} kept failing for {self.retry_deadline:g}s "
                    f"({why}): retry later or check your endpoint"
                )
            return StorageError(f"the S3 state store {where} refused a request ({why})")
        if isinstance(exc, NoCredentialsError):
            return StorageError("no AWS credentials found: set AWS_PROFILE or run `aws configure`")
        if aws_errors.is_transient(exc):
            return StorageError(
                f"the S3 state store {where} did not answer for {self.retry_deadline:g}s "
                f"({why}): check your network or endpoint"
            )
        if isinstance(exc, BotoCoreError):
            return StorageError(f"the S3 state store {where} failed ({why})")
        if isinstance(exc, OSError):
            return StorageError(f"cannot transfer {key} of {where}: {exc}")
        return None


_LOADER: Any = None


def _shared_loader(core: Any) -> Any:
    """One botocore data loader per process (it only caches parsed JSON models, so a forked
    child may keep using its parent's): making a client then costs ~15 ms, not ~150 ms."""
    global _LOADER
    if _LOADER is None:
        _LOADER = core.get_component("data_loader")
    return _LOADER


def _bucket_region(source: Any) -> str | None:
    """The ``x-amz-bucket-region`` of a HeadBucket response or error, if the server sent it."""
    response = getattr(aws_errors.unwrap(source), "response", source)
    if not isinstance(response, dict):
        return None
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    region = headers.get("x-amz-bucket-region") or response.get("BucketRegion")
    return str(region) if region else None
