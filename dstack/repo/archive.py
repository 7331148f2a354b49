"""The code archive: a deterministic ``.tar.gz`` of chosen files, and its safe unpacking.

Owns the archive format. Entries are sorted by the UTF-8 bytes of their paths; every entry has
mtime 0, uid/gid 0 and no user or group names; a file's mode is ``0755`` if any executable bit
is set, else ``0644`` (git's two modes, so the umask does not change the digest); symlinks are
stored as symlinks, even dangling ones; no directory entries are written (git does not track
empty folders). The gzip header has mtime 0 and no file name.

The digest is the sha256 of the *uncompressed* tar stream: the same files always give the same
digest, even on machines whose zlib compresses differently, so the content address never
depends on the compressor. The archive is written to a temporary file as it is built; no file is
held in memory whole.

:func:`unpack_code` refuses absolute paths, ``..`` traversal, hard links, device files, and any
member whose parent folder is a symlink (which could make it land outside the destination). It
does not rely on ``tarfile``'s ``filter=`` argument, so it behaves the same on Python 3.10+.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import posixpath
import stat
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

from dstack.errors import RepoError
from dstack.units import format_size

_CHUNK = 1 << 20
_LARGEST_SHOWN = 5
_COMPRESS_LEVEL = 6


@dataclass(frozen=True)
class Entry:
    """One path to archive: a regular file (``target`` None) or a symlink to ``target``."""

    path: str
    size: int = 0
    executable: bool = False
    target: str | None = None


def collect(root: Path, paths: set[str]) -> tuple[list[Entry], list[str]]:
    """Entries for ``paths`` (relative to ``root``) as they are on disk, and warnings.

    Paths that no longer exist are dropped (deleted tracked files); folders (submodules, nested
    repositories) and special files are skipped with a warning.
    """
    entries: list[Entry] = []
    folders: list[str] = []
    special: list[str] = []
    for rel in sorted(paths, key=_sort_key):
        if rel.endswith("/"):  # an untracked nested repository, as ls-files shows it
            folders.append(rel.rstrip("/"))
            continue
        try:
            st = os.lstat(root / rel)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if stat.S_ISLNK(st.st_mode):
            entries.append(Entry(rel, target=os.readlink(root / rel)))
        elif stat.S_ISREG(st.st_mode):
            entries.append(Entry(rel, st.st_size, bool(st.st_mode & 0o111)))
        elif stat.S_ISDIR(st.st_mode):
            folders.append(rel)
        else:
            special.append(rel)
    warnings = []
    if folders:
        warnings.append(
            "skipped submodules and nested git repositories (their files are not shipped): "
            + ", ".join(folders)
        )
    if special:
        warnings.append("skipped special files (fifos, sockets, devices): " + ", ".join(special))
    return entries, warnings


def _sort_key(path: str) -> bytes:
    return os.fsencode(path)


def check_size(entries: list[Entry], max_size: int) -> int:
    """The total size of the files; RepoError naming the largest ones if over ``max_size``."""
    total = sum(entry.size for entry in entries)
    if total <= max_size:
        return total
    largest = sorted(entries, key=lambda e: (-e.size, e.path))[:_LARGEST_SHOWN]
    shown = ", ".join(f"{e.path} {format_size(e.size)}" for e in largest)
    more = ", …" if len(entries) > len(largest) else ""
    raise RepoError(
        f"the code to ship is {format_size(total)}, over the {format_size(max_size)} limit "
        f"(set DSTACK_MAX_CODE_SIZE to change it); largest files: {shown}{more}; "
        "add them to .gitignore or ship them as artifacts/tags"
    )


class _HashingWriter:
    """A write-only file object that hashes what tarfile writes before compressing it."""

    def __init__(self, sink: gzip.GzipFile) -> None:
        self.sink = sink
        self.sha = hashlib.sha256()
        self.offset = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.sink.write(data)
        self.offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self.offset


def write_archive(root: Path, entries: list[Entry]) -> tuple[Path, str]:
    """Write ``entries`` to a new temporary ``.tar.gz``; return its path and digest.

    The caller owns the file and deletes it. RepoError if a file changes while it is read.
    """
    fd, name = tempfile.mkstemp(prefix="dstack-code-", suffix=".tar.gz")
    path = Path(name)
    try:
        with (
            open(fd, "wb") as raw,
            gzip.GzipFile(
                filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=_COMPRESS_LEVEL
            ) as gz,
        ):
            writer = _HashingWriter(gz)
            sink = cast(IO[bytes], writer)
            with tarfile.open(fileobj=sink, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for entry in entries:
                    _add(tar, root, entry)
        return path, writer.sha.hexdigest()
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _add(tar: tarfile.TarFile, root: Path, entry: Entry) -> None:
    info = tarfile.TarInfo(entry.path)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if entry.target is not None:
        info.type = tarfile.SYMTYPE
        info.linkname = entry.target
        info.mode = 0o777
        tar.addfile(info)
        return
    info.mode = 0o755 if entry.executable else 0o644
    try:
        with open(root / entry.path, "rb") as f:
            info.size = os.fstat(f.fileno()).st_size
            tar.addfile(info, f)
    except OSError as exc:
        raise RepoError(
            f"cannot read {entry.path} ({exc.strerror or exc}): was it changed while the code "
            "was being archived? Try again"
        ) from exc


# ---- unpacking ------------------------------------------------------------------------------


def unpack_code(archive: Path, dest: Path) -> None:
    """Extract the code ``archive`` into ``dest`` (created if needed), restoring file modes and
    symlinks. RepoError, before anything unsafe is written, on a member that could escape."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    safe_dirs: set[str] = {""}
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for member in tar:
                rel = _safe_name(member)
                _make_parents(dest, rel, safe_dirs)
                target = dest / rel
                if member.isdir():
                    _make_dir(target, rel)
                    safe_dirs.add(rel)
                elif member.issym():
                    _remove_existing(target, rel)
                    os.symlink(member.linkname, target)
                elif member.isreg():
                    _remove_existing(target, rel)
                    _write_file(tar, member, target)
                else:
                    kind = "hard link" if member.islnk() else "special file"
                    raise RepoError(f"refusing to unpack {rel!r}: a {kind} in the code archive")
    except (tarfile.TarError, EOFError, gzip.BadGzipFile) as exc:
        raise RepoError(f"the code archive {archive} is corrupt: {exc}") from exc


def _safe_name(member: tarfile.TarInfo) -> str:
    name = member.name
    if not name or "\0" in name or name.startswith(("/", "\\")) or os.path.isabs(name):
        raise RepoError(f"refusing to unpack {name!r}: an absolute path in the code archive")
    rel = posixpath.normpath(name)
    if rel == ".." or rel.startswith("../") or "\\" in rel or rel == ".":
        raise RepoError(f"refusing to unpack {name!r}: it points outside the destination")
    return rel


def _make_parents(dest: Path, rel: str, safe_dirs: set[str]) -> None:
    """Create the folders above ``rel``; refuse to go through a symlink or a file."""
    parts = rel.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        prefix = "/".join(parts[:depth])
        if prefix in safe_dirs:
            continue
        _make_dir(dest / prefix, prefix)
        safe_dirs.add(prefix)


def _make_dir(path: Path, rel: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        path.mkdir()
        return
    if not stat.S_ISDIR(st.st_mode):  # a symlink (followed, it could lead anywhere) or a file
        raise RepoError(f"refusing to unpack under {rel!r}: it is not a folder")


def _remove_existing(path: Path, rel: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise RepoError(f"cannot unpack {rel!r}: a folder is in the way")
    path.unlink()


def _write_file(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
    source = tar.extractfile(member)
    if source is None:
        raise RepoError(f"cannot read {member.name!r} from the code archive")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(target, flags, 0o600)
    with contextlib.closing(source), open(fd, "wb") as out:
        while chunk := source.read(_CHUNK):
            out.write(chunk)
        os.fchmod(out.fileno(), 0o755 if member.mode & 0o111 else 0o644)
