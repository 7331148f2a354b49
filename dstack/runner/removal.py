"""Removing what jobs leave: ``rm -rf`` that never loses what is not the job's.

A job's folder may hold what the job did to it: folders nested thousands deep, folders made
unreadable or read-only, symlinks to anywhere, and — for a job running as root — a filesystem
mounted inside (a dataset bind-mounted into the workspace and never unmounted). :func:`remove_tree`
removes it all without recursion, opens up folders the job closed, removes symlinks without
following them, and never enters a mount point: whatever is mounted there stays, and is
reported. :func:`mount_points` tells which paths under a folder are mount points.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

_OWNER_ALL = 0o700


def mount_points(folder: Path | str) -> set[str]:
    """The mount points at or under ``folder`` (resolved paths), from ``/proc/self/mountinfo``;
    empty where there is none to read (mounts on another device are still caught by their
    device number)."""
    top = os.path.realpath(folder)
    inside = top.rstrip("/") + "/"
    found: set[str] = set()
    try:
        with open("/proc/self/mountinfo", "rb") as info:
            for line in info:
                fields = line.split()
                if len(fields) > 4:
                    point = _unescape(fields[4])
                    if point == top or point.startswith(inside):
                        found.add(point)
    except OSError:
        pass
    return found


def _unescape(field: bytes) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (``\\040``)."""
    raw = field.decode("latin-1")
    if "\\" in raw:
        raw = raw.encode("latin-1").decode("unicode_escape")
    return os.fsdecode(raw.encode("latin-1"))


def remove_tree(folder: Path | str) -> list[str]:
    """Remove ``folder`` and everything under it; return the paths left (mount points and
    anything that could not be removed, with the folders above them), empty when all is gone.

    It works through folder descriptors (``unlinkat``), one folder open at a time, so no path
    is ever longer than a name and no depth is too deep."""
    top = os.fspath(folder) if os.path.islink(folder) else os.path.realpath(folder)
    try:
        st = os.lstat(top)
    except FileNotFoundError:
        return []
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(top)
        return []
    mounts = mount_points(top)
    if top in mounts:
        return [top]
    left: list[str] = []
    try:
        _open_up(top, st.st_mode)
        fd = os.open(top, _FOLDER)
    except OSError:
        return [top]
    path = top
    try:
        #: (the folder's name in its parent, its subfolders still to enter), top to here
        frames = [("", _empty(fd, path, st.st_dev, mounts, left))]
        while frames:
            name, pending = frames[-1]
            if pending:
                sub = pending.pop()
                try:
                    child = os.open(sub, _FOLDER, dir_fd=fd)
                except OSError:
                    left.append(f"{path}/{sub}")
                    continue
                os.close(fd)
                fd, path = child, f"{path}/{sub}"
                frames.append((sub, _empty(fd, path, st.st_dev, mounts, left)))
                continue
            frames.pop()
            if not frames:
                break
            parent = os.open("..", _FOLDER, dir_fd=fd)
            os.close(fd)
            fd, path = parent, path[: -len(name) - 1]
            try:
                os.rmdir(name, dir_fd=fd)
            except OSError:
                left.append(f"{path}/{name}")
    finally:
        os.close(fd)
    try:
        os.rmdir(top)
    except OSError:
        left.append(top)
    return left


_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def _open_up(path: str, mode: int, dir_fd: int | None = None) -> None:
    """Give the owner read, write and search rights on a folder a job closed."""
    if stat.S_IMODE(mode) & _OWNER_ALL != _OWNER_ALL:
        os.chmod(path, stat.S_IMODE(mode) | _OWNER_ALL, dir_fd=dir_fd)


def _empty(fd: int, path: str, device: int, mounts: set[str], left: list[str]) -> list[str]:
    """Remove every non-folder entry of the open folder ``fd`` (at ``path``); return the names
    of its subfolders to enter (never a mount point, never another filesystem)."""
    subfolders = []
    with os.scandir(fd) as listing:
        items = list(listing)
    for item in items:
        try:
            st = item.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode):
            where = f"{path}/{item.name}"
            if where in mounts or st.st_dev != device:
                left.append(where)  # another filesystem: never entered
                continue
            try:
                _open_up(item.name, st.st_mode, dir_fd=fd)
            except OSError:
                left.append(where)
                continue
            subfolders.append(item.name)
            continue
        try:
            os.unlink(item.name, dir_fd=fd)
        except FileNotFoundError:
            pass
        except OSError:
            left.append(f"{path}/{item.name}")
    return subfolders
