"""Code in the state store: storing a snapshot's tree and file contents, and fetching them back
verified.

Storing (the CLI, :func:`store_code`): every file content is one object under its sha256
(``code/blobs/<sha256>``) and the tree is one more (``code/trees/<sha256>.json.gz``). This
machine keeps, per store, the addresses it stored itself (``code/stores/<store>/stored``
under the cache folder): those are never sent again, so a re-run sends only what changed — an
unchanged re-run sends nothing and makes one existence check of its tree. An object this
machine did not store is never trusted because it exists: the same content is written over it
(a content address has one right content, so writing it is always safe), never skipped.

When a tree this machine stored is gone from the store (removed, or removed by a runner that
found one of its objects tampered with), every file of the tree is stored again.

Fetching (the runner): :func:`fetch_tree` and :func:`fetch_blobs` hash what they download and
refuse anything that does not match its address with one :class:`CodeIntegrityError` naming
the object; :func:`discard` then removes the bad object and the tree (best effort) so that the
next ``dstack run`` stores them anew.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dstack.errors import NotFoundError, RepoError
from dstack.repo.tree import CodeIntegrityError, Row, TreeEntry, decode_rows, file_digest
from dstack.state import code_blob_key, code_digest, code_tree_key

if TYPE_CHECKING:
    from dstack.storage.base import ProgressCallback, Storage

#: files up to this size are read whole when staged; larger ones are copied in chunks
_SMALL = 1 << 20


@dataclass
class StoreReport:
    """What :func:`store_code` sent: new file contents and their bytes, and the tree."""

    files: int = 0
    bytes: int = 0
    tree_stored: bool = False


StoreProgress = Callable[[int, int], None]
"""Called once with (files to send, bytes to send) before sending; see ``ProgressCallback``."""


def store_code(
    storage: Storage,
    root: Path,
    tree_digest: str,
    tree_data: Callable[[], bytes],
    entries: list[TreeEntry],
    *,
    cache_dir: Path,
    on_start: StoreProgress | None = None,
    progress: ProgressCallback | None = None,
) -> StoreReport:
    """Store the snapshot's tree and the file contents the store may lack (see the module).
    ``tree_data`` gives the tree's stored bytes (made only when the tree is stored).

    RepoError if a file changed since it was hashed (nothing wrong is stored).
    """
    stored = _StoredRecord(cache_dir, storage)
    tree_key = code_tree_key(tree_digest)
    recover = False
    if tree_digest in stored.trees:
        if storage.exists(tree_key):
            return StoreReport()
        recover = True  # gone from the store: send everything again
    wanted: dict[str, TreeEntry] = {}
    for entry in entries:
        if entry.target is None and (recover or entry.digest not in stored.blobs):
            wanted.setdefault(entry.digest, entry)
    report = StoreReport(files=len(wanted), bytes=sum(e.size for e in wanted.values()))
    if on_start is not None:
        on_start(report.files, report.bytes)
    if wanted:
        with tempfile.TemporaryDirectory(prefix="dstack-code-") as staging:
            files = [
                (_stage(root, entry, Path(staging)), code_blob_key(digest))
                for digest, entry in wanted.items()
            ]
            storage.upload_tree(files, progress=progress, workers=16)
        stored.add(blobs=list(wanted))
    storage.put(tree_key, tree_data())
    stored.add(trees=[tree_digest])
    report.tree_stored = True
    return report


def _stage(root: Path, entry: TreeEntry, staging: Path) -> Path:
    """A private copy of ``entry``'s file, checked against its digest (the working tree may
    change while a run is submitted; what is stored under an address must be that content)."""
    target = staging / entry.digest
    source = root / entry.path
    sha = hashlib.sha256()
    try:
        with open(source, "rb") as src, open(target, "wb") as dst:
            while block := src.read(_SMALL):
                sha.update(block)
                dst.write(block)
    except OSError as exc:
        raise RepoError(f"cannot read {entry.path} ({exc.strerror or exc}): try again") from exc
    if sha.hexdigest() != entry.digest:
        raise RepoError(f"{entry.path} changed while the code was being stored: try again")
    return target


class _StoredRecord:
    """The addresses this machine stored in one store: ``b <sha256>`` and ``t <sha256>`` lines,
    appended after each store (owner-only)."""

    def __init__(self, cache_dir: Path, storage: Storage) -> None:
        description = json.dumps(storage.config().model_dump(mode="json"), sort_keys=True)
        name = hashlib.sha256(description.encode()).hexdigest()[:16]
        self.path = cache_dir / "code" / "stores" / name / "stored"
        self.blobs: set[str] = set()
        self.trees: set[str] = set()
        try:
            text = self.path.read_text()
        except OSError:
            return
        for line in text.splitlines():
            kind, _, digest = line.partition(" ")
            if len(digest) == 64:
                (self.trees if kind == "t" else self.blobs).add(digest)

    def add(self, *, blobs: Sequence[str] = (), trees: Sequence[str] = ()) -> None:
        lines = [f"b {d}\n" for d in blobs] + [f"t {d}\n" for d in trees]
        if not lines:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with open(fd, "w") as f:
            f.write("".join(lines))
        self.blobs.update(blobs)
        self.trees.update(trees)


# ---- fetching, verified ---------------------------------------------------------------------


def fetch_tree(storage: Storage, key: str) -> tuple[str, bytes, dict[str, Row]]:
    """(digest, stored bytes, rows by path) of the tree at ``key``, verified against its
    address (``dstack.repo.tree.decode_rows``)."""
    _, digest = code_digest(key)
    try:
        data = storage.get(key)
    except NotFoundError:
        raise RepoError(
            f"the run's code {key} is not in the store (removed?): run it again to store it anew"
        ) from None
    return digest, data, decode_rows(data, digest, where=key)


def fetch_blobs(
    storage: Storage, digests: list[str], dest: Path, progress: ProgressCallback | None = None
) -> None:
    """Download the contents ``digests`` into ``dest/<digest>``, each verified.

    CodeIntegrityError naming the first object that does not match its address (every
    downloaded file is removed then); RepoError if one is missing.
    """
    items = [(code_blob_key(digest), dest / digest) for digest in digests]
    try:
        storage.download_tree(items, progress=progress, workers=16)
    except NotFoundError as exc:
        raise RepoError(f"a file of the run's code is missing from the store: {exc}") from None
    for digest in digests:
        if file_digest(str(dest / digest)) != digest:
            shutil.rmtree(dest, ignore_errors=True)
            key = code_blob_key(digest)
            raise CodeIntegrityError(
                f"the code object {key} does not match its content address: it was changed in "
                "the store after it was stored; refusing to use it",
                key,
            )


def discard(storage: Storage, keys: list[str]) -> bool:
    """Remove objects found not to match their addresses; False if the store refused."""
    from dstack.errors import StorageError

    try:
        for key in keys:
            storage.delete(key)
    except StorageError:
        return False
    return True
