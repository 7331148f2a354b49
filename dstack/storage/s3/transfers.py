"""Files between disk and an ``S3Storage``: which engine carries them, and how a tree is split.

Uploads and small downloads go as batches to the AWS CRT (``s3_crt``) when it can be used, else
through botocore (``s3_files``); large downloads go through ``s3_files`` in ranged parts pinned
to one ETag. Every download lands beside its target and is renamed into place: a failed
transfer leaves nothing at the target. The thresholds and why: docs/design/s3-store.md.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dstack.errors import DstackError, NotFoundError, StorageError
from dstack.storage.base import ProgressCallback, is_executable
from dstack.storage.local import validate_key
from dstack.storage.s3 import aws_errors
from dstack.storage.s3 import crt as s3_crt
from dstack.storage.s3 import files as s3_files

if TYPE_CHECKING:
    from dstack.storage.s3.storage import S3Storage

_REDIRECT_CODES = frozenset(
    {"PermanentRedirect", "TemporaryRedirect", "AuthorizationHeaderMalformed", "301", "307"}
)


class Transfers:
    """The file transfers of one store (its settings are read from it at each call)."""

    def __init__(self, store: S3Storage) -> None:
        self.store = store
        self.crt_instance: s3_crt.CrtTransfers | None = None
        self._crt_pid = 0
        self._crt_ready = False
        self._lock = threading.Lock()

    def upload_tree(
        self,
        files: list[tuple[Path, str]],
        progress: ProgressCallback | None,
        workers: int,
        on_uploaded: Callable[[str], None] | None,
    ) -> None:
        _validate([key for _, key in files])
        if files and not all(_utf8_path(path) for path, _ in files):
            # the CRT takes a path as UTF-8 text: a file name that is not goes through botocore
            odd = [item for item in files if not _utf8_path(item[0])]
            self.upload_tree(
                [item for item in files if _utf8_path(item[0])], progress, workers, on_uploaded
            )
            files, crt = odd, None
        else:
            crt = self.crt() if files else None
        modes = [_file_mode(Path(path)) for path, _ in files]
        if crt is None:

            def one(item: tuple[tuple[Path, str], str]) -> None:
                (path, key), mode = item
                self._upload_one(Path(path), key, mode, progress)
                if on_uploaded is not None:
                    on_uploaded(key)

            self._parallel(list(zip(files, modes, strict=True)), workers, one)
            return
        transfers = [
            s3_crt.Transfer(
                key=self.store._key(key),
                path=Path(path),
                meter=s3_files.Progress(progress),
                name=key,
                mode=mode,
            )
            for (path, key), mode in zip(files, modes, strict=True)
        ]
        done = None if on_uploaded is None else (lambda t: on_uploaded(t.name))
        try:
            self._crt_call(lambda: crt.upload(transfers, done))
        except _Redirected:
            self._give_up_crt()
            self.upload_tree(files, progress, workers, on_uploaded)

    def download_file(self, key: str, path: Path, progress: ProgressCallback | None) -> None:
        self._download(key, path, progress, self.store.multipart_threshold)

    def download_tree(
        self,
        items: list[tuple[str, Path]],
        progress: ProgressCallback | None,
        workers: int,
        sizes: Mapping[str, int] | None,
    ) -> None:
        _validate([key for key, _ in items])
        threshold = self.store.multipart_threshold
        if len(items) >= workers:
            threshold = max(threshold, self.store.tree_multipart_threshold)
        crt = self.crt() if items else None
        known, small = sizes or {}, self.store.multipart_threshold
        # the CRT takes a path as UTF-8 text: a file name that is not goes through botocore
        by_crt = [crt is not None and _utf8_path(path) for _, path in items]
        whole = [
            item
            for item, ok in zip(items, by_crt, strict=True)
            if ok and known.get(item[0], 0) < small
        ]
        rest = [
            item
            for item, ok in zip(items, by_crt, strict=True)
            if not ok or known.get(item[0], 0) >= small
        ]

        def larger() -> None:
            self._parallel(rest, workers, lambda p: self._download(p[0], p[1], progress, threshold))

        if crt is None or not whole:
            larger()
            return
        # the larger files stream through botocore's threads while the CRT fetches the rest
        with ThreadPoolExecutor(max_workers=1) as pool:
            streams = pool.submit(larger) if rest else None
            try:
                self._download_batch(crt, whole, progress, workers, sizes)
            finally:
                if streams is not None:
                    streams.result()

    def _download_batch(
        self,
        crt: s3_crt.CrtTransfers,
        whole: list[tuple[str, Path]],
        progress: ProgressCallback | None,
        workers: int,
        sizes: Mapping[str, int] | None,
    ) -> None:
        transfers = [
            s3_crt.Transfer(
                key=self.store._key(key),
                path=Path(path).parent / f".tmp-{uuid.uuid4().hex}",
                meter=s3_files.Progress(progress),
                name=str(path),
            )
            for key, path in whole
        ]

        def place(transfer: s3_crt.Transfer) -> None:
            _place(transfer.path, Path(transfer.name), transfer.received_mode)

        try:
            self._crt_call(lambda: crt.download(transfers, place))
        except _Redirected:
            self._give_up_crt()
            self.download_tree(whole, progress, workers, sizes)
        finally:
            for transfer in transfers:
                with suppress(OSError):
                    transfer.path.unlink()

    def crt(self) -> s3_crt.CrtTransfers | None:
        """This process's CRT transfers, or None where ``s3_crt.engine()`` says no or there
        are no credentials or region to sign with (the botocore path then reports why)."""
        client = self.store._client()
        if self._crt_pid != os.getpid():  # made by the process we were forked from
            self._crt_pid, self.crt_instance = os.getpid(), None
            self._crt_ready, self._lock = False, threading.Lock()
        if not self._crt_ready:
            with self._lock:
                if not self._crt_ready:
                    self.crt_instance = self._make_crt(client)
                    self._crt_ready = True
        return self.crt_instance

    # botocore

    def _upload_one(
        self, path: Path, key: str, mode: str, progress: ProgressCallback | None
    ) -> None:
        store = self.store
        full, meter, parts = store._key(key), s3_files.Progress(progress), self._parts()
        store._call(
            lambda: s3_files.put_file(
                store._client(), store.bucket, full, path, mode, parts, meter
            ),
            key=key,
        )

    def _download(
        self, key: str, path: Path, progress: ProgressCallback | None, threshold: int
    ) -> None:
        store = self.store
        full, target, meter = store._key(key), Path(path), s3_files.Progress(progress)
        tmp, parts = target.parent / f".tmp-{uuid.uuid4().hex}", self._parts()
        try:
            mode = store._call(
                lambda: s3_files.get_file(
                    store._client(), store.bucket, full, tmp, threshold, parts, meter
                ),
                key=key,
            )
            _place(tmp, target, mode)
        finally:
            with suppress(OSError):
                tmp.unlink()

    def _parallel(self, items: list[Any], workers: int, fn: Callable[[Any], None]) -> None:
        if not items:
            return
        self.store._client()  # one client, made before the threads share it
        s3_files.run_parallel(items, workers, fn)

    def _parts(self) -> s3_files.Parts:
        return s3_files.Parts(
            threshold=self.store.multipart_threshold,
            chunksize=self.store.multipart_chunksize,
            concurrency=self.store.transfer_concurrency,
            inline_limit=self.store.inline_upload_limit,
        )

    # the CRT

    def _make_crt(self, client: Any) -> s3_crt.CrtTransfers | None:
        store = self.store
        if not s3_crt.engine() or store._credentials is None or not client.meta.region_name:
            return None
        try:
            return s3_crt.CrtTransfers(
                client,
                store._credentials,
                store.bucket,
                part_size=store.multipart_chunksize,
                threshold=store.multipart_threshold,
                connect_timeout=min(store.connect_timeout, max(store.retry_deadline, 1.0)),
                deadline=store.retry_deadline,
            )
        except Exception:  # no CRT here: botocore carries every transfer
            return None

    def _give_up_crt(self) -> None:
        """This process sends no more files through the CRT (``_Redirected``)."""
        self.crt_instance, self._crt_ready = None, True

    def _crt_call(self, fn: Callable[[], None]) -> None:
        """A CRT batch, its failure mapped like any other (naming the object it was for)."""
        try:
            fn()
        except DstackError:
            raise
        except Exception as exc:
            if _redirected(exc):
                raise _Redirected() from exc
            full = getattr(exc, "dstack_key", None)
            prefix = self.store._prefix
            key = full[len(prefix) :] if isinstance(full, str) else None
            mapped = self.store._map_error(exc, key=key, if_absent=False)
            if mapped is None:
                raise
            raise mapped from exc


class _Redirected(Exception):
    """S3 sent the CRT elsewhere (the bucket is in another region than the one signed for):
    botocore follows such redirects, the CRT does not, so botocore takes over."""


def _redirected(exc: BaseException) -> bool:
    code, status = aws_errors.error_code(exc), aws_errors.http_status(exc)
    return code in _REDIRECT_CODES or status in (301, 307)


def _validate(keys: list[str]) -> None:
    for key in keys:
        validate_key(key)  # refuse the whole batch before sending any of it


def _file_mode(path: Path) -> str:
    """``755`` or ``644`` for the file at ``path``; ``NotFoundError`` if there is none."""
    try:
        mode = "755" if is_executable(path) else "644"
        path.stat()
    except FileNotFoundError as exc:
        raise NotFoundError(str(path)) from exc
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror}") from exc
    return mode


def _place(tmp: Path, target: Path, mode: int) -> None:
    try:
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except OSError as exc:
        raise StorageError(f"cannot write {target}: {exc.strerror}") from exc


def _utf8_path(path: Path | str) -> bool:
    try:
        str(path).encode()
    except UnicodeEncodeError:
        return False
    return True
