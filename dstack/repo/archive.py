"""Choosing the files of a snapshot, and unpacking the whole-tree code archives that earlier
versions stored (``codes/<sha256>.tar.gz``).

:func:`collect` lists what is shipped, as it is on disk (regular files with their ``lstat``,
symlinks with their targets); :func:`check_size` enforces the size limit.

An archive's address is the sha256 of its *uncompressed* tar stream. :func:`unpack_code` checks
that address before it writes anything (an archive replaced in the store is refused with one
``CodeIntegrityError``), and refuses absolute paths, ``..`` traversal, hard links, device files,
and any member whose parent folder is a symlink (which could make it land outside the
destination). It does not rely on ``tarfile``'s ``filter=`` argument, so it behaves the same on
Python 3.10+.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import posixpath
import stat
import tarfile
from pathlib import Path
from typing import NamedTuple

from dstack.errors import RepoError
from dstack.units import format_size

_CHUNK = 1 << 20
_LARGEST_SHOWN = 5


class Entry(NamedTuple):
    """One path to ship: a regular file (``target`` None) or a symlink to ``target``."""

    path: str
    size: int = 0
    executable: bool = False
    target: str | None = None


def collect(
    root: Path, paths: set[str]
) -> tuple[list[Entry], list[str], dict[str, os.stat_result]]:
    """Entries for ``paths`` (relative to ``root``) as they are on disk, warnings, and the
    ``lstat`` of each regular file.

    Paths that no longer exist are dropped (deleted tracked files); folders (submodules, nested
    repositories) and special files are skipped with a warning.
    """
    entries: list[Entry] = []
    stats: dict[str, os.stat_result] = {}
    folders: list[str] = []
    special: list[str] = []
    base = os.path.join(os.fspath(root), "")  # plain strings: pathlib costs more than lstat
    for rel in sorted(paths, key=_sort_key):
        if rel.endswith("/"):  # an untracked nested repository, as ls-files shows it
            folders.append(rel.rstrip("/"))
            continue
        try:
            st = os.lstat(base + rel)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if stat.S_ISLNK(st.st_mode):
            entries.append(Entry(rel, target=os.readlink(base + rel)))
        elif stat.S_ISREG(st.st_mode):
            entries.append(Entry(rel, st.st_size, bool(st.st_mode & 0o111)))
            stats[rel] = st
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
    return entries, warnings, stats


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


# ---- unpacking ------------------------------------------------------------------------------


def verify_archive(archive: Path, digest: str, *, where: str) -> None:
    """CodeIntegrityError unless the uncompressed tar stream of ``archive`` hashes to
    ``digest``; ``where`` names it in the message."""
    from dstack.repo.tree import CodeIntegrityError

    sha = hashlib.sha256()
    try:
        with gzip.open(archive, "rb") as stream:
            while block := stream.read(_CHUNK):
                sha.update(block)
    except (OSError, EOFError) as exc:
        raise CodeIntegrityError(f"the code archive {where} is damaged ({exc})", where) from None
    if sha.hexdigest() != digest:
        raise CodeIntegrityError(
            f"the code archive {where} does not match its content address: it was changed in "
            "the store after it was stored; refusing to use it",
            where,
        )


def unpack_code(archive: Path, dest: Path, *, digest: str | None = None) -> None:
    """Extract the code ``archive`` into ``dest`` (created if needed), restoring file modes and
    symlinks. With ``digest``, the archive is verified first (see :func:`verify_archive`).
    RepoError, before anything unsafe is written, on a member that could escape."""
    if digest is not None:
        verify_archive(archive, digest, where=str(archive))
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
