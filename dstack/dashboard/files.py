"""A run's artifacts for the browser: a folder tree with sizes, one folder's page of it, one
file found safely, and folders streamed as zip archives.

A path from a request is only ever matched against the run's own listing, never joined onto a
key, so nothing outside the run's artifacts can be named. A key the store would refuse to read
(``..``, ``.``, an empty segment: planted in a bucket, never written by dstack) is set aside
with its name shown, never listed or zipped. Names are shown as text whatever bytes they hold
(:func:`printable`). A zip is written as it is read: one chunk of one file in memory at a time,
whatever the folder holds.
"""

from __future__ import annotations

import re
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from dstack.errors import StorageError
from dstack.services.artifacts import ArtifactFile
from dstack.storage.base import Storage
from dstack.storage.local import validate_key

#: entries (folders and files) of one folder shown per page
FOLDER_PAGE = 50


@dataclass
class Node:
    """A folder (with ``children``) or a file of the tree; ``path`` is what a download names."""

    name: str
    path: str
    size: int = 0
    files: int = 0
    children: dict[str, Node] = field(default_factory=dict)
    is_file: bool = False

    def sorted_children(self) -> list[Node]:
        """Folders first, then files; numbers in names in numeric order (``f-2`` < ``f-10``)."""
        return sorted(self.children.values(), key=lambda n: (n.is_file, _natural(n.name)))


@dataclass
class FolderPage:
    """One page of one folder: its path, its entries on this page, and where the others are."""

    folder: Node
    entries: list[Node]
    page: int
    pages: int

    @property
    def crumbs(self) -> list[tuple[str, str]]:
        """(name, path) of each folder from the top down to this one."""
        parts = self.folder.path.split("/") if self.folder.path else []
        return [(part, "/".join(parts[: i + 1])) for i, part in enumerate(parts)]


def printable(text: str) -> str:
    """``text`` as a page can show it: bytes that were not UTF-8 (held as surrogates, as the
    file system hands them over) become U+FFFD."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "replace")


def readable(files: list[ArtifactFile]) -> tuple[list[ArtifactFile], list[ArtifactFile]]:
    """The files the store can read, and those whose keys it refuses (``..`` and the like)."""
    kept, refused = [], []
    for file in files:
        try:
            validate_key(file.key)
        except StorageError:
            refused.append(file)
            continue
        kept.append(file)
    return kept, refused


def folder_page(root: Node, path: str, page: int) -> FolderPage:
    """The entries of folder ``path`` (folders first), ``FOLDER_PAGE`` at a time; the top
    folder if ``path`` names none."""
    node = root
    for part in [p for p in path.strip("/").split("/") if p]:
        child = node.children.get(part) or next(
            (c for c in node.children.values() if printable(c.name) == part), None
        )
        if child is None or child.is_file:
            node = root
            break
        node = child
    entries = node.sorted_children()
    pages = max((len(entries) + FOLDER_PAGE - 1) // FOLDER_PAGE, 1)
    page = min(max(page, 1), pages)
    chosen = entries[(page - 1) * FOLDER_PAGE : page * FOLDER_PAGE]
    return FolderPage(node, chosen, page, pages)


def shown_path(file: ArtifactFile, multi_job: bool) -> str:
    """A file's path as the page shows it: ``job-<i>/`` first when the run has several jobs,
    as `dstack artifacts download` writes them."""
    return f"job-{file.job_index}/{file.path}" if multi_job else file.path


def tree(files: list[ArtifactFile], multi_job: bool) -> Node:
    root = Node(name="", path="")
    for file in files:
        parts = shown_path(file, multi_job).split("/")
        node = root
        node.size += file.size
        node.files += 1
        for depth, part in enumerate(parts):
            path = "/".join(parts[: depth + 1])
            child = node.children.setdefault(part, Node(name=part, path=path))
            child.size += file.size
            child.files += 1
            node = child
        node.is_file = True
    return root


def find_file(files: list[ArtifactFile], path: str, multi_job: bool) -> ArtifactFile | None:
    """The file at ``path``, as the page showed and linked it (:func:`printable`)."""
    exact = next((f for f in files if shown_path(f, multi_job) == path), None)
    if exact is not None:
        return exact
    return next((f for f in files if printable(shown_path(f, multi_job)) == path), None)


def in_folder(files: list[ArtifactFile], folder: str, multi_job: bool) -> list[ArtifactFile]:
    """The files under ``folder`` (every file for ``""``), in path order."""
    folder = folder.strip("/")
    prefix = f"{folder}/" if folder else ""
    return sorted(
        (f for f in files if printable(shown_path(f, multi_job)).startswith(prefix)),
        key=lambda f: printable(shown_path(f, multi_job)),
    )


def zip_stream(
    storage: Storage, files: list[ArtifactFile], folder: str, multi_job: bool
) -> Iterator[bytes]:
    """A zip of ``files`` with paths relative to ``folder``'s parent (so it unpacks into a
    folder of that name), produced as it is read."""
    folder = folder.strip("/")
    base = folder.rpartition("/")[0]
    sink = _Sink()
    stamp = time.localtime()[:6]
    writer: Any = sink  # an unseekable file ZipFile accepts, not an IO[bytes]
    with zipfile.ZipFile(writer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for file in files:
            name = printable(shown_path(file, multi_job))[len(base) + 1 if base else 0 :]
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.file_size = file.size
            with archive.open(info, "w", force_zip64=file.size >= zipfile.ZIP64_LIMIT) as out:
                for chunk in storage.read_chunks(file.key):
                    out.write(chunk)
                    if data := sink.take():
                        yield data
            if data := sink.take():
                yield data
    if data := sink.take():
        yield data


def _natural(name: str) -> list[tuple[int, int | str]]:
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name)]


class _Sink:
    """A write-only, unseekable file: ``ZipFile`` then writes a streamable archive (sizes and
    checksums after each file's data)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data
