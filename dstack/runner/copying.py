"""Copying files and folders cheaply: blocks shared where the filesystem can (a reflink on
btrfs or xfs, ``FICLONE``), a kernel-side copy elsewhere (``copy_file_range``/``sendfile``),
never a hard link — a job that rewrites a copied file in place must never reach the source."""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import subprocess
from pathlib import Path

from dstack.errors import RunnerError

_FICLONE = 0x40049409  # linux/fs.h: share the source's blocks (btrfs, xfs, …)

_CP_REFLINK: bool | None = None


def copy_tree(source: Path, target: Path) -> None:
    """Copy the folder ``source`` to ``target`` (which must not exist): modes and symlinks
    kept, blocks shared where the filesystem can, never a hard link."""
    global _CP_REFLINK
    if not source.exists():
        source.mkdir(parents=True)
    if _CP_REFLINK is not False and shutil.which("cp"):
        done = subprocess.run(
            ["cp", "-R", "-P", "--preserve=mode", "--reflink=auto", "--", str(source), str(target)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        if done.returncode == 0:
            _CP_REFLINK = True
            return
        shutil.rmtree(target, ignore_errors=True)
        if _CP_REFLINK:  # it worked before: a real failure, not a cp without --reflink
            raise RunnerError(f"cannot copy the code: {done.stderr.decode(errors='replace')}")
        _CP_REFLINK = False  # not GNU cp (macOS, busybox): copy in Python
    shutil.copytree(source, target, symlinks=True, copy_function=_clone_or_copy_keep_mode)


def _clone_or_copy_keep_mode(source: str, target: str) -> None:
    clone_or_copy(Path(source), Path(target))
    os.chmod(target, stat.S_IMODE(os.lstat(source).st_mode))


def clone_or_copy(source: Path, target: Path) -> None:
    with open(source, "rb") as src, open(target, "wb") as dst:
        try:
            fcntl.ioctl(dst.fileno(), _FICLONE, src.fileno())
            return
        except OSError:
            pass
    shutil.copyfile(source, target)  # copy_file_range/sendfile: no copy through Python
