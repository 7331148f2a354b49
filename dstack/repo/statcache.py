"""The stat cache of a working tree: which files need hashing again, as git's index knows.

For each shipped file the cache keeps what ``lstat`` said when it was last hashed — size,
mtime and ctime in nanoseconds, inode, mode — and its sha256. A file whose ``lstat`` still
says the same is not read again; any difference (an edit, a ``touch``, a ``chmod``, a file
replaced by another) makes it hashed again.

Racy files: a file modified within the timestamp granularity of the moment the cache is
written could be modified again later without its mtime changing. Like git, the cache treats
every entry whose mtime is not older than the write minus ``RACY_WINDOW_NS`` as racily clean
and does not keep its digest, so it is hashed on the next run too.

One cache per repository root, under the machine's cache folder (``code/stat/``), owner-only:
the entries of a run that changed are appended to a journal beside it (``<name>.log``), and
the cache is written whole, atomically, only when the journal outgrows an eighth of it — so
that editing one file of 30,000 writes one line, not the whole cache. A cache that cannot be
read is ignored (every file is hashed); every entry, from the cache or its journal, is checked
against the file's stat before it is trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from dstack.repo.tree import file_digest

#: entries modified this close to the cache's write are hashed again on the next run
#: (coarse kernel clocks tick every few milliseconds; some filesystems keep whole seconds)
RACY_WINDOW_NS = 2_000_000_000
FORMAT = 1

StatKey = tuple[int, int, int, int, int]  # size, mtime_ns, ctime_ns, inode, mode
HashProgress = Callable[[int, int], None]
"""Called with (files hashed so far, bytes hashed so far)."""


def stat_key(st: os.stat_result) -> StatKey:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode)


class StatCache:
    """The cache of one repository root; :meth:`digest` hashes only what changed."""

    def __init__(self, cache_root: Path | None, repo_root: Path) -> None:
        name = hashlib.sha256(os.fsencode(repo_root)).hexdigest()[:32]
        #: None: no cache kept (every file hashed)
        self.path = cache_root / "code" / "stat" / f"{name}.json" if cache_root else None
        self._journal = self.path.with_suffix(".log") if self.path else Path(os.devnull)
        self._journal_lines = 0
        self.repo_root = repo_root
        self._old: dict[str, list[object]] = self._load()
        self._new: dict[str, list[object]] = {}
        self.hashed_files = 0
        self.hashed_bytes = 0

    def _load(self) -> dict[str, list[object]]:
        if self.path is None:
            return {}
        try:
            record = json.loads(self.path.read_bytes())
        except (OSError, ValueError):
            return {}
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            return {}
        if record.get("root") != os.fsdecode(self.repo_root):
            return {}
        files = record.get("files")
        if not isinstance(files, dict):
            return {}
        try:
            with open(self._journal, "rb") as journal:
                for line in journal:
                    self._journal_lines += 1
                    _replay(files, line)
        except OSError:
            pass
        return files

    def digest(self, rel: str, st: os.stat_result, progress: HashProgress | None = None) -> str:
        """The sha256 of the file ``rel`` whose ``lstat`` is ``st``: from the cache when the
        stat matches, else read and hashed (and remembered)."""
        cached = self._old.get(rel)
        key = stat_key(st)
        if (
            cached is not None
            and len(cached) == 6
            and cached[1] == key[1]  # the mtime: the most likely to differ
            and cached[0] == key[0]
            and cached[2] == key[2]
            and cached[3] == key[3]
            and cached[4] == key[4]
            and isinstance(cached[5], str)
            and cached[5]
        ):
            self._new[rel] = cached
            return cached[5]
        digest = file_digest(os.path.join(self.repo_root, rel))
        self.hashed_files += 1
        self.hashed_bytes += st.st_size
        if progress is not None:
            progress(self.hashed_files, self.hashed_bytes)
        self._new[rel] = [*key, digest]
        return digest

    def save(self) -> None:
        """Write the entries looked up since the cache was read (files gone are dropped);
        racily clean ones without their digest. What changed is appended to a journal beside
        the cache, so that a run costs what changed; the cache is written whole when the
        journal grows past an eighth of it. Best effort: a failure only costs hashing."""
        if self.path is None:
            return
        changed = [rel for rel, entry in self._new.items() if self._old.get(rel) is not entry]
        gone = self._old.keys() - self._new.keys()
        if not changed and not gone:
            return
        now = time.time_ns()

        def kept(entry: list[object]) -> list[object]:
            mtime = entry[1]
            racy = isinstance(mtime, int) and mtime >= now - RACY_WINDOW_NS
            return [*entry[:5], ""] if racy else entry

        lines = self._journal_lines + len(changed) + len(gone)
        if self._old and lines <= max(256, len(self._new) // 8):
            text = "".join(json.dumps([rel, *kept(self._new[rel])]) + "\n" for rel in changed)
            text += "".join(json.dumps([rel]) + "\n" for rel in gone)
            try:
                fd = os.open(self._journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                with open(fd, "w") as journal:
                    journal.write(text)
                return
            except OSError:
                pass  # write it whole
        files = {rel: kept(entry) for rel, entry in self._new.items()}
        record = {"format": FORMAT, "root": os.fsdecode(self.repo_root), "files": files}
        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".stat-")
            with open(fd, "w") as f:  # dumps: json.dump writes piece by piece, 5 times slower
                f.write(json.dumps(record, separators=(",", ":")))
            os.replace(tmp, self.path)
            self._journal.unlink(missing_ok=True)
        except OSError:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)


def _replay(files: dict[str, list[object]], line: bytes) -> None:
    """Apply one journal line: ``[path, size, mtime, ctime, inode, mode, sha256]`` (looked
    up) or ``[path]`` (gone). A damaged line (a write cut short) is skipped: every entry is
    checked against the file's stat before it is trusted, so a skipped or stale one only
    costs hashing that file again."""
    try:
        row = json.loads(line)
    except ValueError:
        return
    if isinstance(row, list) and len(row) == 7 and isinstance(row[0], str):
        files[row[0]] = row[1:]
    elif isinstance(row, list) and len(row) == 1 and isinstance(row[0], str):
        files.pop(row[0], None)
