"""The stat cache of a working tree: which files need hashing again, as git's index knows.

For each shipped file the cache keeps what ``lstat`` said when it was last hashed — size,
mtime and ctime in nanoseconds, inode, mode — and its sha256. A file whose ``lstat`` still
says the same is not read again; any difference (an edit, a ``touch``, a ``chmod``, a file
replaced by another) makes it hashed again.

Racy files: a file modified within the timestamp granularity of the moment the cache is
written could be modified again later without its mtime changing. Like git, the cache treats
every entry whose mtime is not older than the write minus ``RACY_WINDOW_NS`` as racily clean
and does not keep its digest, so it is hashed on the next run too.

One cache per repository root, under the machine's cache folder (``code/stat/``), written
owner-only and atomically. A cache that cannot be read is ignored (every file is hashed).
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
        self.repo_root = repo_root
        self._old: dict[str, list[object]] = self._load()
        self._new: dict[str, list[object]] = {}
        self.hashed_files = 0
        self.hashed_bytes = 0
        self._changed = False

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
        return files if isinstance(files, dict) else {}

    def digest(self, rel: str, st: os.stat_result, progress: HashProgress | None = None) -> str:
        """The sha256 of the file ``rel`` whose ``lstat`` is ``st``: from the cache when the
        stat matches, else read and hashed (and remembered)."""
        cached = self._old.get(rel)
        key = stat_key(st)
        if (
            cached is not None
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
        self._changed = True
        digest = file_digest(os.path.join(self.repo_root, rel))
        self.hashed_files += 1
        self.hashed_bytes += st.st_size
        if progress is not None:
            progress(self.hashed_files, self.hashed_bytes)
        self._new[rel] = [*key, digest]
        return digest

    def save(self) -> None:
        """Write the entries looked up since the cache was read (files gone are dropped);
        racily clean ones without their digest. Best effort: a failure only costs hashing."""
        # racy entries were hashed again: changed; files gone: fewer entries
        if self.path is None or not (self._changed or len(self._new) != len(self._old)):
            return
        now = time.time_ns()
        files: dict[str, list[object]] = {}
        for rel, entry in self._new.items():
            mtime = entry[1]
            racy = isinstance(mtime, int) and mtime >= now - RACY_WINDOW_NS
            files[rel] = [*entry[:5], ""] if racy else entry
        record = {"format": FORMAT, "root": os.fsdecode(self.repo_root), "files": files}
        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".stat-")
            with open(fd, "w") as f:  # dumps: json.dump writes piece by piece, 5 times slower
                f.write(json.dumps(record, separators=(",", ":")))
            os.replace(tmp, self.path)
        except OSError:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
