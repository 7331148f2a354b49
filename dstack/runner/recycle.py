"""Job folders used again: the code folder a finished job leaves becomes the next job's, once
every path in it has been checked against what the job was given.

Making thousands of files costs far more than checking them (on an ext4 disk without reflinks
about 0.5-1 ms per file made against a few µs per file checked), so a job's code folder is not
copied afresh from the machine's checkout each time. When a job has ended its folder is *given
back*:

1. only if no process uses anything in it any more (:func:`in_use`: a working folder, an open
   or mapped file, as ``/proc`` shows; a process a job left running keeps its folder to
   itself, and where there is no ``/proc`` no folder is used again);
2. each path is checked against the *record* made when the folder was handed out — the tree
   entry it holds and its ``lstat`` (size, mtime and ctime in nanoseconds, inode, mode), as
   git's index keeps them — and whatever the job added, changed, replaced, linked or re-moded
   is removed (:func:`clean`);
3. the folder is brought to the checkout's tree and kept as the *spare*, one per checkout, with
   its record (:func:`keep`).

The next job *takes* it (:func:`take`): when it holds the job's tree, it is renamed into place
and nothing is read; otherwise only the paths that differ are written, from the checkout.

Why ``lstat`` is enough: writing a file changes its mtime and ctime; ``chmod``, ``chown``, a
hard link, a rename and ``touch`` with an old time all change its ctime, which no process can
set back. Folders are kept only where the tree needs one, with mode 0755. A folder that cannot
be checked or cleaned (a job made part of it unreadable, a container left files of another
user) is not used again: the next job gets a fresh copy.

Jobs run as the user who runs dstack, so a job could write this machine's cache as that user
can: the check is for what a job leaves behind, not a defence against a job that sets out to
tamper with the cache.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from dstack.repo.tree import Row, TreeEntry
from dstack.runner import treefs
from dstack.runner.copying import clone_or_copy

SPARE = "spare"
_RECORD = "spare.json"
_FORMAT = 1
#: what an earlier version kept beside its spare
_EARLIER = ("spare.digest", "spare.json.gz", "spare.unusable")

Stat = tuple[int, int, int, int, int]  # size, mtime_ns, ctime_ns, inode, mode
#: path → (the entry the folder holds there, its lstat when it was written or last checked)
Record = dict[str, tuple[TreeEntry, Stat]]


class Change(NamedTuple):
    """How a checkout just changed: from the tree ``old`` (None: it held none), ``removed``
    paths, ``added`` entries (a changed path is in both); ``rows``: the new tree's."""

    old: str | None
    removed: list[str]
    added: list[TreeEntry]
    rows: dict[str, Row]


@dataclass
class Handed:
    """What a job's folder was given: a whole record, or a spare's record left in a file
    (read only when the folder is given back) with the changes made to the spare since."""

    record: Record | None = None
    path: Path | None = None
    removed: list[str] = field(default_factory=list)
    added: Record = field(default_factory=dict)

    def load(self) -> Record:
        """The record (the file, if any, is read and removed). OSError, ValueError."""
        if self.record is not None:
            record = dict(self.record)
        else:
            assert self.path is not None
            record = load(self.path)
            self.path.unlink()
        for path in self.removed:
            record.pop(path, None)
        record.update(self.added)
        return record


def stat_key(st: os.stat_result) -> Stat:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode)


def record_of(folder: Path, entries: dict[str, TreeEntry]) -> Record:
    """The record of a folder just copied from a checkout holding ``entries``."""
    base = os.path.join(os.fspath(folder), "")
    return {path: (entry, stat_key(os.lstat(base + path))) for path, entry in entries.items()}


def entries_of(record: Record) -> dict[str, TreeEntry]:
    return {path: entry for path, (entry, _) in record.items()}


def clean(folder: Path, record: Record, wanted: dict[str, TreeEntry] | None = None) -> Record:
    """Remove from ``folder`` every path that is not as ``record`` says (same entry, same
    ``lstat``) or that ``wanted`` does not want there, and every folder nothing wanted is in;
    return the record of what is left. ``wanted`` None: what the record holds.

    OSError when the folder cannot be checked or cleaned (the caller discards it)."""
    want = entries_of(record) if wanted is None else wanted
    folders = {""}
    for path in want:
        parent = path.rpartition("/")[0]
        while parent not in folders:
            folders.add(parent)
            parent = parent.rpartition("/")[0]
    kept: Record = {}
    _scan(os.fspath(folder), "", record, want, folders, kept)
    return kept


def complete(folder: Path, kept: Record, wanted: dict[str, TreeEntry], source: Path) -> set[str]:
    """Write into ``folder`` what ``wanted`` holds and ``kept`` lacks, from ``source`` (a folder
    holding ``wanted``), recording each in ``kept``; return the paths written."""
    safe: set[str] = {""}
    written = {path for path in wanted if path not in kept}
    for path in sorted(written):
        entry = wanted[path]
        target = treefs.place(folder, entry, safe, _copier(source))
        kept[path] = (entry, stat_key(os.lstat(target)))
    return written


def _scan(
    path: str,
    prefix: str,
    record: Record,
    wanted: dict[str, TreeEntry],
    folders: set[str],
    kept: Record,
) -> None:
    with os.scandir(path) as listing:
        items = list(listing)
    for item in items:
        rel = prefix + item.name
        st = item.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            if rel in folders:
                if stat.S_IMODE(st.st_mode) != treefs.FOLDER_MODE:
                    os.chmod(item.path, treefs.FOLDER_MODE)
                _scan(item.path, rel + "/", record, wanted, folders, kept)
            else:
                remove_folder(item.path)
            continue
        have = record.get(rel)
        if have is not None and have[1] == stat_key(st) and wanted.get(rel) == have[0]:
            kept[rel] = have
        else:
            os.unlink(item.path)


def remove_folder(path: str) -> None:
    """``rm -rf``, opening up folders a job made unreadable or unwritable; OSError if even
    then something cannot be removed."""
    try:
        shutil.rmtree(path)
        return
    except OSError:
        pass
    os.chmod(path, 0o700)
    for folder, subfolders, _ in os.walk(path):
        for name in subfolders:
            sub = os.path.join(folder, name)
            if not os.path.islink(sub):
                os.chmod(sub, 0o700)
    shutil.rmtree(path)


def in_use(folder: Path) -> bool | None:
    """Whether a process still uses something under ``folder`` — its working folder or root,
    an open file, a mapped file — as ``/proc`` shows it (processes of other users, which
    cannot be seen, cannot write there either); None where there is no ``/proc`` to tell."""
    if not os.path.isdir("/proc/self/fd"):
        return None
    top = os.fspath(folder)
    inside = top + "/"

    def under(target: str) -> bool:
        return target == top or target.startswith(inside)

    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        proc = f"/proc/{pid}"
        try:
            if under(os.readlink(f"{proc}/cwd")) or under(os.readlink(f"{proc}/root")):
                return True
            for fd in os.listdir(f"{proc}/fd"):
                if under(os.readlink(f"{proc}/fd/{fd}")):
                    return True
            with open(f"{proc}/maps") as maps:
                if any(inside in line or line.rstrip().endswith(top) for line in maps):
                    return True
        except OSError:  # gone meanwhile, or another user's
            continue
    return False


# ---- the spare ------------------------------------------------------------------------------


def take(
    base: Path,
    digest: str,
    wanted: Callable[[], dict[str, TreeEntry]],
    dest: Path,
    record_path: Path,
    change: Change | None = None,
) -> Handed | None:
    """Hand the spare of the checkout at ``base`` (which holds the tree ``digest``; ``wanted``
    gives its entries; ``change`` is how it just changed, if it did) to a job: brought to the
    tree and renamed to ``dest``; None when there is no usable spare. Called holding the
    checkout's lock.

    When the spare holds the tree already it is renamed and nothing is read: its record is
    moved to ``record_path``. When it holds the tree the checkout just left, the checkout's
    change is made to it too. Otherwise its record is read and compared with the tree.

    The spare is not checked again here: it was checked when it was given back, when no
    process used it any more, and it has been in the cache since."""
    spare, spare_record = base / SPARE, base / _RECORD
    try:
        with open(spare_record, "rb") as f:
            head = f.readline(200).decode(errors="replace").split()
        os.rename(spare_record, record_path)  # taken: handed to one job only
    except OSError:
        if spare.exists():  # left without its record (a runner was killed, or an earlier
            shutil.rmtree(spare, ignore_errors=True)  # version's spare): unusable
            for name in _EARLIER:
                (base / name).unlink(missing_ok=True)
        return None
    try:
        if len(head) != 2 or head[0] != str(_FORMAT) or not spare.is_dir():
            raise ValueError("not a spare record")
        if head[1] == digest:
            handed = Handed(path=record_path)
        elif change is not None and head[1] == change.old:
            treefs.apply(spare, change.removed, change.added, _copier(base / "tree"))
            added = {e.path: (e, stat_key(os.lstat(spare / e.path))) for e in change.added}
            handed = Handed(path=record_path, removed=change.removed, added=added)
        else:
            record = load(record_path)
            record_path.unlink()
            _bring(spare, record, wanted(), base / "tree")
            handed = Handed(record=record)
        os.rename(spare, dest)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        shutil.rmtree(spare, ignore_errors=True)
        record_path.unlink(missing_ok=True)
        return None
    return handed


def _copier(source: Path) -> Callable[[TreeEntry, Path], None]:
    return lambda entry, target: clone_or_copy(source / entry.path, target)


def keep(base: Path, folder: Path, kept: Record, digest: str, wanted: dict[str, TreeEntry]) -> bool:
    """Make ``folder`` (already :func:`clean`, ``kept`` its record: updated here) the spare of
    the checkout at ``base``, which holds ``wanted`` (the tree ``digest``), unless there is a
    spare already; False when it was not kept. Called holding the checkout's lock."""
    spare, spare_record = base / SPARE, base / _RECORD
    if spare_record.exists():
        return False
    if spare.exists():
        shutil.rmtree(spare, ignore_errors=True)
    try:
        _bring(folder, kept, wanted, base / "tree")
        os.rename(folder, spare)
    except OSError:
        return False
    tmp = base / f"{_RECORD}.tmp"
    try:
        tmp.write_text(f"{_FORMAT} {digest}\n" + _encode(kept))
        os.replace(tmp, spare_record)
    except OSError:
        shutil.rmtree(spare, ignore_errors=True)
        return False
    return True


def _bring(folder: Path, record: Record, wanted: dict[str, TreeEntry], source: Path) -> None:
    """Turn ``folder``, which holds ``record`` exactly, into ``wanted`` (from ``source``),
    writing only what differs; ``record`` is updated."""
    for path, (entry, _) in list(record.items()):
        if wanted.get(path) != entry:
            os.unlink(folder / path)
            del record[path]
            treefs.prune_empty(folder, path)
    complete(folder, record, wanted, source)


def load(path: Path) -> Record:
    """The record in the file ``path`` (a spare's, see :func:`take`). ValueError if damaged."""
    with open(path, "rb") as f:
        f.readline()
        rows = json.loads(f.read())
    record: Record = {}
    for row in rows:
        if row[1] == "l":
            entry, key = TreeEntry(row[0], target=row[2]), row[3:]
        else:
            entry, key = TreeEntry(row[0], row[2], int(row[3]), row[1] == "x"), row[4:]
        record[row[0]] = (entry, (key[0], key[1], key[2], key[3], key[4]))
    return record


def _encode(record: Record) -> str:
    return json.dumps([[*entry.as_row(), *key] for entry, key in record.values()])
