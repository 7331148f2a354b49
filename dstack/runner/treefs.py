"""Writing a code tree's paths into a folder, safely: the one place that decides where a
tree's path may land.

A tree comes from the state store, which other users of a shared bucket can write, so every
path is checked before anything is written (:func:`check_path`: no absolute path, no ``..``)
and no folder is ever entered through a symlink or a file (:func:`make_parents`). Folders are
made with mode 0755 whatever the umask, so that every job folder looks the same; files get
0644 or 0755 from the tree.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
from collections.abc import Callable
from pathlib import Path

from dstack.errors import RunnerError
from dstack.repo.tree import TreeEntry

FOLDER_MODE = 0o755


def file_mode(entry: TreeEntry) -> int:
    return 0o755 if entry.executable else 0o644


def check_path(path: str) -> None:
    """RunnerError unless ``path`` stays inside its folder (relative, normalised, no ``..``)."""
    norm = posixpath.normpath(path)
    if (
        not path
        or "\0" in path
        or path.startswith("/")
        or norm != path
        or norm == ".."
        or norm.startswith("../")
        or norm == "."
    ):
        raise RunnerError(f"refusing the code tree: the path {path!r} would leave its folder")


def make_parents(root: Path, rel: str, safe_dirs: set[str]) -> None:
    """Create the folders above ``rel``; refuse to go through a symlink or a file.
    ``safe_dirs`` holds the folders already checked (start it with ``{""}``)."""
    parts = rel.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        prefix = "/".join(parts[:depth])
        if prefix in safe_dirs:
            continue
        folder = root / prefix
        try:
            st = os.lstat(folder)
        except FileNotFoundError:
            folder.mkdir()
            os.chmod(folder, FOLDER_MODE)
        else:
            if not stat.S_ISDIR(st.st_mode):
                raise RunnerError(f"refusing the code tree: {prefix!r} is not a folder")
        safe_dirs.add(prefix)


def place(
    folder: Path, entry: TreeEntry, safe_dirs: set[str], write: Callable[[TreeEntry, Path], None]
) -> Path:
    """Write ``entry`` under ``folder``: a symlink, or a file through ``write`` then its mode.
    RunnerError if its path would leave the folder."""
    check_path(entry.path)
    target = folder / entry.path
    make_parents(folder, entry.path, safe_dirs)
    if entry.target is not None:
        os.symlink(entry.target, target)
    else:
        write(entry, target)
        os.chmod(target, file_mode(entry))
    return target


def apply(
    folder: Path,
    removed: list[str],
    added: list[TreeEntry],
    write: Callable[[TreeEntry, Path], None],
) -> int:
    """Remove ``removed`` (and the folders they leave empty), then write ``added``; return how
    many paths changed."""
    for path in sorted(removed, reverse=True):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(folder / path)
        prune_empty(folder, path)
    safe_dirs: set[str] = {""}
    for entry in sorted(added, key=lambda e: e.path):
        place(folder, entry, safe_dirs, write)
    return len(set(removed) | {entry.path for entry in added})


def prune_empty(root: Path, rel: str) -> None:
    """Remove the folders above ``rel`` that are left empty."""
    parent = posixpath.dirname(rel)
    while parent:
        try:
            os.rmdir(root / parent)
        except OSError:  # not empty (or gone)
            return
        parent = posixpath.dirname(parent)
