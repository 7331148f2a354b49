"""The code tree: what a snapshot holds, as one content-addressed record.

A tree lists every shipped path with what it is: a regular file (its sha256, its size, whether
it is executable) or a symlink (its target). Paths are sorted by their UTF-8 bytes; folders are
not listed (git does not track empty ones). The file contents live apart, one object per
distinct content (``code/blobs/<sha256>``), so a file that did not change between two runs is
never stored twice.

The record is canonical JSON (sorted, no spaces), gzip-compressed with mtime 0; its address is
the sha256 of the *uncompressed* JSON, so the same files always give the same address whatever
zlib compresses them to. :func:`decode_rows` checks that address before it returns anything: a
record that does not hash to its key is refused with one :class:`CodeIntegrityError`.
"""

from __future__ import annotations

import contextlib
import gc
import gzip
import hashlib
import json
from collections.abc import Iterator
from typing import NamedTuple

from dstack.errors import RepoError

FORMAT = 1


class CodeIntegrityError(RepoError):
    """A stored code object does not hash to its content address: it was changed after it was
    stored (or damaged), and is never used. ``key`` names the object."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


class TreeEntry(NamedTuple):
    """One shipped path: a file (``digest``, ``size``, ``executable``) or a symlink
    (``target``). A named tuple: a tree holds one per file, and tuples are the cheapest to
    make and compare."""

    path: str
    digest: str = ""
    size: int = 0
    executable: bool = False
    target: str | None = None

    @property
    def is_link(self) -> bool:
        return self.target is not None

    def as_row(self) -> list[object]:
        if self.target is not None:
            return [self.path, "l", self.target]
        return [self.path, "x" if self.executable else "f", self.digest, self.size]


def encode_tree(entries: list[TreeEntry]) -> tuple[bytes, str]:
    """The canonical JSON of a tree and its address (its sha256); :func:`compress` gives the
    bytes stored."""
    ordered = sorted(entries, key=lambda entry: entry.path.encode("utf-8", "surrogateescape"))
    raw = json.dumps(
        {"format": FORMAT, "entries": [entry.as_row() for entry in ordered]},
        separators=(",", ":"),
        ensure_ascii=True,
    ).encode()
    return raw, hashlib.sha256(raw).hexdigest()


def compress(raw: bytes) -> bytes:
    """The stored bytes of a tree's JSON: gzip with mtime 0, level 1 (the sha256s that make
    most of a tree do not compress; speed matters more)."""
    return gzip.compress(raw, compresslevel=1, mtime=0)


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while a tree is built or read: it allocates a few objects
    per file and none of them form cycles, yet each allocation burst makes the collector scan
    every live object again (about half the time of a 30,000-file snapshot)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


#: a tree's entry without its path: ("f" or "x", sha256, size) or ("l", target)
Row = tuple[object, ...]


def decode_rows(data: bytes, digest: str, *, where: str) -> dict[str, Row]:
    """Path → row of a stored tree, after checking that it hashes to ``digest`` (rows are
    compared as they are; :func:`entry_of` makes an entry of one).

    ``where`` names the object in messages. CodeIntegrityError on any mismatch or damage.
    """
    try:
        raw = gzip.decompress(data)
    except (OSError, EOFError) as exc:
        raise CodeIntegrityError(f"the code tree {where} is damaged ({exc})", where) from None
    if hashlib.sha256(raw).hexdigest() != digest:
        raise CodeIntegrityError(
            f"the code tree {where} does not match its content address: it was changed in the "
            "store after it was stored; refusing to use it",
            where,
        )
    record = json.loads(raw)
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        found = record.get("format") if isinstance(record, dict) else None
        raise RepoError(f"the code tree {where} has format {found!r}: upgrade dstack")
    rows: dict[str, Row] = {}
    try:
        for row in record["entries"]:
            if not isinstance(row[0], str):
                raise TypeError(row[0])
            rows[row[0]] = tuple(row[1:])
    except (KeyError, IndexError, TypeError):
        raise RepoError(f"the code tree {where} is malformed") from None
    return rows


def entry_of(path: str, row: Row) -> TreeEntry:
    """The entry of ``path`` from its row; RepoError if the row is not one a tree holds."""
    if len(row) == 2 and row[0] == "l" and isinstance(row[1], str):
        return TreeEntry(path, target=row[1])
    kind, digest, size = row if len(row) == 3 else (None, None, None)
    if kind in ("f", "x") and isinstance(digest, str) and isinstance(size, int):
        return TreeEntry(path, digest, size, kind == "x")
    raise RepoError(f"the code tree has a malformed entry for {path!r}")


def decode_tree(data: bytes, digest: str, *, where: str) -> list[TreeEntry]:
    """The entries of a stored tree, after checking that it hashes to ``digest``.

    ``where`` names the object in messages. CodeIntegrityError on any mismatch or damage.
    """
    return [entry_of(path, row) for path, row in decode_rows(data, digest, where=where).items()]


def file_digest(path: str, chunk: int = 1 << 20) -> str:
    """The sha256 of the file at ``path``, read in chunks."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            sha.update(block)
    return sha.hexdigest()
