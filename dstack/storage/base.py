"""The storage seam: ``Storage``, a flat store of blobs where all of dstack's state lives.

Everything above this module talks to this interface only; ``LocalStorage`` is the fake every
test can use, and the conformance suite in ``tests/storage`` holds every Storage to the same
contract.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dstack.store_config import StoreConfig


ProgressCallback = Callable[[int], None]
"""Called with a number of bytes just transferred."""


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object: its full key and its size in bytes."""

    key: str
    size: int


class Storage(ABC):
    """A flat store of blobs under string keys, shared by the CLI and every runner.

    Keys are ``/``-separated UTF-8 paths with no empty, ``.`` or ``..`` segment. Writes are
    atomic (a reader sees the old object or the new one, never a part). Every method may raise
    ``StorageError`` when the store cannot be reached after the implementation's own retries.
    """

    #: how often a runner should flush log chunks to this store, in seconds (cost vs delay)
    log_flush_interval: float = 0.05
    #: how often an attached CLI should poll for new log chunks, in seconds
    poll_interval: float = 0.05

    @abstractmethod
    def put(self, key: str, data: bytes, *, if_absent: bool = False, private: bool = False) -> None:
        """Store ``data`` at ``key``, replacing what is there.

        With ``if_absent`` the write happens only if no object exists at ``key``, atomically
        with respect to every other writer of any process or machine; otherwise it raises
        ``AlreadyExistsError`` and changes nothing.

        With ``private`` the object is protected at rest as a secret is: readable by the owner
        only (a local file of mode 0600), or encrypted with a KMS key (S3 SSE-KMS). Raises
        ``StorageError`` if the store cannot protect it, rather than storing it unprotected.
        """

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The whole object at ``key``; ``NotFoundError`` if there is none."""

    @abstractmethod
    def list_objects(self, prefix: str, *, after: str | None = None) -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix`` (a plain string prefix, not a folder).

        Yielded lazily in ascending order of the UTF-8 bytes of their keys, so a caller can stop
        early and pay only for what it read. ``after`` skips every key up to and including it.
        """

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object at ``key``. Idempotent: a missing key is not an error."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Remove every object whose key starts with ``prefix``; return how many there were."""

    @abstractmethod
    def upload_file(
        self, path: Path, key: str, *, progress: ProgressCallback | None = None
    ) -> None:
        """Store the file at ``path`` under ``key``, keeping whether it is executable.

        Large files are streamed, never read into memory whole.
        """

    @abstractmethod
    def download_file(
        self, key: str, path: Path, *, progress: ProgressCallback | None = None
    ) -> None:
        """Write the object at ``key`` to ``path`` atomically, restoring the executable bit.

        Parent folders are created. ``NotFoundError`` if there is no such object.
        """

    @abstractmethod
    def config(self) -> StoreConfig:
        """The typed description from which ``dstack.storage.open_storage`` rebuilds this
        store in another process (the runner, an instance). Holds no credentials."""

    @abstractmethod
    def describe(self) -> str:
        """A short human description for messages, e.g. ``s3://bucket`` or a folder path."""

    # Conveniences built on the contract above; backends override them when they can do better.

    def exists(self, key: str) -> bool:
        return self.get_or_none(key) is not None

    def write_problem(self) -> str | None:
        """Why nothing can be written to the store right now (a full disk), or None. Cheap
        enough to ask every few seconds; backends that cannot tell return None."""
        return None

    def get_or_none(self, key: str) -> bytes | None:
        from dstack.errors import NotFoundError

        try:
            return self.get(key)
        except NotFoundError:
            return None

    def read_chunks(self, key: str, *, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """The object at ``key`` as a stream of chunks of at most ``chunk_size`` bytes, never
        held in memory whole (for serving large files). ``NotFoundError`` from the first
        ``next()`` if there is no such object. This default goes through a temporary file."""
        import tempfile

        with tempfile.TemporaryDirectory(prefix="dstack-read-") as folder:
            path = Path(folder) / "object"
            self.download_file(key, path)
            with open(path, "rb") as file:
                while chunk := file.read(chunk_size):
                    yield chunk

    def upload_tree(
        self,
        files: list[tuple[Path, str]],
        *,
        progress: ProgressCallback | None = None,
        workers: int = 8,
        on_uploaded: Callable[[str], None] | None = None,
    ) -> None:
        """Upload many (path, key) pairs, in parallel where the backend gains from it, calling
        ``on_uploaded(key)`` as each one is stored. On a failure the first error is raised; the
        files reported stored are stored, the others may or may not be."""

        def one(pair: tuple[Path, str]) -> None:
            self.upload_file(pair[0], pair[1], progress=progress)
            if on_uploaded is not None:
                on_uploaded(pair[1])

        _parallel(one, files, workers)

    def download_tree(
        self,
        items: list[tuple[str, Path]],
        *,
        progress: ProgressCallback | None = None,
        workers: int = 8,
        sizes: Mapping[str, int] | None = None,
    ) -> None:
        """Download many (key, path) pairs, in parallel where the backend gains from it.
        ``sizes`` (key → size, as a listing gave them) may help it choose how."""
        _parallel(
            lambda pair: self.download_file(pair[0], pair[1], progress=progress), items, workers
        )


def _parallel(fn: Callable[[Any], None], items: list[Any], workers: int) -> None:
    if len(items) <= 1 or workers <= 1:
        for item in items:
            fn(item)
        return
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        for _ in pool.map(fn, items):
            pass


def is_executable(path: Path) -> bool:
    return os.access(path, os.X_OK) and path.is_file()
