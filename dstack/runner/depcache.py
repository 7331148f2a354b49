"""The machine's cache of dependency files: its entries, their locks, their use, and pruning.

An entry is ``<cache>/artifacts/<store>/<identity>/`` (the identity is a path of its own), the
files of one dependency content that never changes (``dstack.runner.deps``).

- ``<identity>.lock`` beside it: a job downloading into the entry holds it exclusively, a job
  copying out of it holds it shared, and pruning takes it exclusively without waiting, so an
  entry in use is never removed;
- ``<cache>/artifacts/.entries/<digest>``: the entry's path and size, rewritten at every use,
  so that its modification time is the entry's last use and pruning reads one small folder,
  not the cache's every file.

After a job has placed its dependencies the cache is pruned to ``DSTACK_CACHE_MAX_SIZE``
(default 20GB): least recently used entries first, never the ones the job just used.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dstack.errors import ConfigError

MAX_SIZE_ENV = "DSTACK_CACHE_MAX_SIZE"
DEFAULT_MAX_SIZE = 20 * 1024**3
_INDEX = ".entries"


@dataclass(frozen=True)
class Entry:
    path: Path
    size: int
    last_used: float


def max_size() -> int:
    """The cache's size limit in bytes (``DSTACK_CACHE_MAX_SIZE``: ``500MB``, ``20GB``…)."""
    raw = os.environ.get(MAX_SIZE_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_SIZE
    from dstack.units import parse_size_bytes

    try:
        return parse_size_bytes(raw)
    except ValueError as exc:
        raise ConfigError(f"{MAX_SIZE_ENV}: {exc}") from None


@contextlib.contextmanager
def locked(entry: Path, *, shared: bool) -> Iterator[None]:
    """Hold ``entry``'s lock, shared (reading) or exclusive (writing), waiting for it."""
    lock = _lock_path(entry)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def mark_used(root: Path, entry: Path, size: int) -> None:
    """Record that ``entry`` of the cache at ``root`` (``<cache>/artifacts``), ``size`` bytes,
    was just used."""
    index = index_path(root, entry)
    index.parent.mkdir(parents=True, exist_ok=True)
    tmp = index.with_suffix(".tmp")
    tmp.write_text(json.dumps({"path": str(entry), "size": size}))
    os.replace(tmp, index)


def entries(root: Path) -> list[Entry]:
    """Every recorded entry of the cache at ``root``, least recently used first."""
    found: list[Entry] = []
    try:
        indexes = list((root / _INDEX).iterdir())
    except OSError:
        return []
    for index in indexes:
        try:
            record = json.loads(index.read_text())
            found.append(Entry(Path(record["path"]), int(record["size"]), index.stat().st_mtime))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being written, or not ours
    return sorted(found, key=lambda entry: entry.last_used)


def prune(root: Path, *, keep: set[Path], limit: int) -> list[Entry]:
    """Remove least recently used entries until the cache holds at most ``limit`` bytes, except
    those in ``keep`` and those in use; return what was removed."""
    listed = entries(root)
    total = sum(entry.size for entry in listed)
    removed: list[Entry] = []
    for entry in listed:
        if total <= limit:
            break
        if entry.path in keep or not _remove_unless_in_use(root, entry.path):
            continue
        total -= entry.size
        removed.append(entry)
    return removed


def _remove_unless_in_use(root: Path, path: Path) -> bool:
    if root.resolve() not in path.resolve().parents:
        index_path(root, path).unlink(missing_ok=True)  # a record that is not of this cache
        return False
    with open(_lock_path(path), "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        try:
            index_path(root, path).unlink(missing_ok=True)
            shutil.rmtree(path, ignore_errors=True)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    return True


def _lock_path(entry: Path) -> Path:
    return entry.parent / f"{entry.name}.lock"


def index_path(root: Path, entry: Path) -> Path:
    digest = hashlib.sha256(str(entry).encode()).hexdigest()[:32]
    return root / _INDEX / digest
