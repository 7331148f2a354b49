"""Job folders used again: the code folder a finished job leaves becomes the next job's, once
every path in it has been checked against what the job was given.

A folder is given back only when no process uses it, is checked by ``lstat`` against the record
made when it was handed out (whatever the job added or changed is removed), and is never used
again when the check cannot vouch for it (mounts, extended attributes, another user's files).
Why this is enough, and what it does not defend against: docs/design/job-folders.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NamedTuple

from dstack.errors import RunnerError
from dstack.repo.statcache import StatKey, stat_key
from dstack.repo.tree import Row, TreeEntry
from dstack.runner import treefs
from dstack.runner.copying import clone_or_copy
from dstack.runner.removal import mount_points, remove_tree

SPARE = "spare"
_RECORD = "spare.json"
_FORMAT = 1
#: what an earlier version kept beside its spare
_EARLIER = ("spare.digest", "spare.json.gz", "spare.unusable")

#: path → (the entry the folder holds there, its lstat when it was written or last checked,
#: keyed as the stat cache keys a working tree's files)
Record = dict[str, tuple[TreeEntry, StatKey]]


class Change(NamedTuple):
    """How a checkout just changed: from the tree ``old`` (None: it held none), ``removed``
    paths, ``added`` entries (a changed path is in both); ``rows``: the new tree's."""

    old: str | None
    removed: list[str]
    added: list[TreeEntry]
    rows: dict[str, Row]


@dataclass
class Handed:
    """What a job's folder was given: a whole record, or a spare's record — held open in
    ``file``, with no name left on disk, so that nothing the job does can reach it; read only
    when the folder is given back — with the changes made to the spare since."""

    record: Record | None = None
    file: BinaryIO | None = None
    removed: list[str] = field(default_factory=list)
    added: Record = field(default_factory=dict)

    def load(self) -> Record:
        """The record. OSError, ValueError (a damaged record), RunnerError (a bad path)."""
        if self.record is not None:
            record = dict(self.record)
        else:
            assert self.file is not None
            with self.file:
                self.file.seek(0)
                record = _decode(self.file.read())
        for path in self.removed:
            record.pop(path, None)
        record.update(self.added)
        return record


def record_of(folder: Path, entries: dict[str, TreeEntry]) -> Record:
    """The record of a folder just copied from a checkout holding ``entries``."""
    base = os.path.join(os.fspath(folder), "")
    return {path: (entry, stat_key(os.lstat(base + path))) for path, entry in entries.items()}


def clean(folder: Path, record: Record) -> Record:
    """Remove from ``folder`` every path that is not as ``record`` says (same ``lstat``), and
    every folder no recorded path is in; return the record of what is left.

    OSError when the folder cannot be checked or cleaned (the caller discards it)."""
    folders = {""}
    for path in record:
        parent = path.rpartition("/")[0]
        while parent not in folders:
            folders.add(parent)
            parent = parent.rpartition("/")[0]
    if mount_points(folder):
        raise OSError(f"a filesystem is mounted in {folder}")
    top = os.fspath(folder)
    top_st = os.lstat(top)
    _check_folder(top, top_st, top_st.st_dev)
    kept: Record = {}
    _scan(top, "", record, folders, kept, top_st.st_dev)
    return kept


#: extended attributes a job may have set on a folder, which its next user would inherit
#: (an ACL makes the files created there world-writable, for one); others (a security label
#: set by the system's policy) are not the job's doing
_JOB_XATTRS = ("user.", "trusted.", "system.posix_acl")


def _check_folder(path: str, st: os.stat_result, device: int) -> None:
    """OSError unless the folder is as dstack makes them: this user's, on the folder's own
    filesystem, without extended attributes a job could have set."""
    if st.st_dev != device or st.st_uid != os.geteuid():
        raise OSError(f"{path} is another user's, or another filesystem")
    if hasattr(os, "listxattr"):
        names = os.listxattr(path, follow_symlinks=False)
        if any(name.startswith(_JOB_XATTRS) for name in names):
            raise OSError(f"{path} has extended attributes")


def complete(folder: Path, kept: Record, wanted: dict[str, TreeEntry], source: Path) -> None:
    """Write into ``folder`` what ``wanted`` holds and ``kept`` lacks, from ``source`` (a folder
    holding ``wanted``), recording each in ``kept``."""
    safe: set[str] = {""}
    for path in sorted(path for path in wanted if path not in kept):
        entry = wanted[path]
        target = treefs.place(folder, entry, safe, _copier(source))
        kept[path] = (entry, stat_key(os.lstat(target)))


def _scan(
    path: str,
    prefix: str,
    record: Record,
    folders: set[str],
    kept: Record,
    device: int,
) -> None:
    with os.scandir(path) as listing:
        items = list(listing)
    for item in items:
        rel = prefix + item.name
        st = item.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            if rel in folders:
                _check_folder(item.path, st, device)
                if stat.S_IMODE(st.st_mode) != treefs.FOLDER_MODE:
                    os.chmod(item.path, treefs.FOLDER_MODE)
                _scan(item.path, rel + "/", record, folders, kept, device)
            else:
                remove_folder(item.path)
            continue
        have = record.get(rel)
        if have is not None and have[1] == stat_key(st):
            kept[rel] = have
        else:
            os.unlink(item.path)


def remove_folder(path: str) -> None:
    """``rm -rf`` (``dstack.runner.removal``); OSError if something could not be removed."""
    left = remove_tree(path)
    if left:
        raise OSError(f"could not remove {left[0]}")


def in_use(folder: Path) -> bool | None:
    """Whether a process still uses something under ``folder`` — its working folder or root,
    an open file, a mapped file — as ``/proc`` shows it, thread by thread for a process whose
    main thread has ended; None where there is no ``/proc`` to tell. Processes of other users,
    which cannot be seen, cannot write there either (unless dstack runs as root, which sees
    them all). Paths are compared resolved: ``/proc`` shows them so."""
    if not os.path.isdir("/proc/self/fd"):
        return None
    top = os.path.realpath(folder)
    inside = top.rstrip("/") + "/"
    me = os.getuid()

    def under(target: str) -> bool:
        return target == top or target.startswith(inside)

    def uses(proc: str) -> bool:
        if under(os.readlink(f"{proc}/cwd")) or under(os.readlink(f"{proc}/root")):
            return True
        for fd in os.listdir(f"{proc}/fd"):
            with contextlib.suppress(OSError):  # closed meanwhile
                if under(os.readlink(f"{proc}/fd/{fd}")):
                    return True
        with open(f"{proc}/maps") as maps:
            return any(inside in line or line.rstrip().endswith(top) for line in maps)

    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if uses(f"/proc/{pid}"):
                return True
        except OSError:  # gone meanwhile, another user's, or its main thread has ended
            try:
                if os.stat(f"/proc/{pid}").st_uid != me:
                    continue
                tasks = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tasks:
                if tid == pid:
                    continue
                try:
                    if uses(f"/proc/{pid}/task/{tid}"):
                        return True
                except OSError:
                    continue
    return False


# ---- the spare ------------------------------------------------------------------------------


def take(
    base: Path,
    digest: str,
    wanted: Callable[[], dict[str, TreeEntry]],
    dest: Path,
    change: Change | None = None,
) -> Handed | None:
    """Hand the spare of the checkout at ``base`` (which holds the tree ``digest``; ``wanted``
    gives its entries; ``change`` is how it just changed, if it did) to a job: brought to the
    tree and renamed to ``dest``; None when there is no usable spare. Called holding the
    checkout's lock.

    When the spare holds the tree already it is renamed and nothing is read: its record is
    kept open and its name removed. When it holds the tree the checkout just left, the
    checkout's change is made to it too. Otherwise its record is read and compared with the
    tree.

    The spare is not checked again here: it was checked when it was given back, when no
    process used it any more, and it has been in the cache since."""
    spare, spare_record = base / SPARE, base / _RECORD
    try:
        record_file = open(spare_record, "rb")  # noqa: SIM115 (kept open: see Handed)
    except OSError:
        if spare.exists():  # left without its record (a runner was killed, or an earlier
            remove_tree(spare)  # version's spare): unusable
            for name in _EARLIER:
                (base / name).unlink(missing_ok=True)
        return None
    try:
        spare_record.unlink()  # taken: a spare is handed to one job only
        head = record_file.readline(200).decode(errors="replace").split()
        if len(head) != 2 or head[0] != str(_FORMAT) or not spare.is_dir():
            raise ValueError("not a spare record")
        if head[1] == digest:
            handed = Handed(file=record_file)
        elif change is not None and head[1] == change.old:
            treefs.apply(spare, change.removed, change.added, _copier(base / "tree"))
            added = {e.path: (e, stat_key(os.lstat(spare / e.path))) for e in change.added}
            handed = Handed(file=record_file, removed=change.removed, added=added)
        else:
            record_file.seek(0)
            record = _decode(record_file.read())
            record_file.close()
            _bring(spare, record, wanted(), base / "tree")
            handed = Handed(record=record)
        os.chmod(spare, treefs.FOLDER_MODE)
        os.rename(spare, dest)
    except (OSError, ValueError, KeyError, TypeError, IndexError, RunnerError):
        record_file.close()
        remove_tree(spare)
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
        remove_tree(spare)
    try:
        _bring(folder, kept, wanted, base / "tree")
        os.chmod(folder, treefs.FOLDER_MODE)
        os.rename(folder, spare)
    except OSError:
        return False
    tmp = base / f"{_RECORD}.tmp"
    try:
        tmp.write_text(f"{_FORMAT} {digest}\n" + _encode(kept))
        os.replace(tmp, spare_record)
    except OSError:
        remove_tree(spare)
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


def _decode(data: bytes) -> Record:
    """The record of a spare's record file (see :func:`keep`). ValueError if damaged,
    RunnerError if a path would leave its folder."""
    rows = json.loads(data.split(b"\n", 1)[1])
    record: Record = {}
    for row in rows:
        if row[1] == "l":
            entry, key = TreeEntry(row[0], target=row[2]), row[3:]
        else:
            entry, key = TreeEntry(row[0], row[2], int(row[3]), row[1] == "x"), row[4:]
        treefs.check_path(entry.path)
        record[row[0]] = (entry, (key[0], key[1], key[2], key[3], key[4]))
    return record


def _encode(record: Record) -> str:
    return json.dumps([[*entry.as_row(), *key] for entry, key in record.values()])
