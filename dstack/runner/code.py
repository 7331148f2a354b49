"""Placing a run's code in a job's folder, through a per-machine checkout of the code tree.

Under the checkout's lock, the checkout is brought to the job's tree (writing only what
differs, every downloaded object verified), then the job gets a folder of its own: the spare an
earlier job gave back (``dstack.runner.recycle``) or a copy (``cp --reflink=auto``), never the
checkout itself and never hard links. The two steps and their reasons: docs/design/job-folders.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dstack.errors import NotFoundError, RepoError, RunnerError
from dstack.models import JobSpec
from dstack.repo import codestore
from dstack.repo.tree import (
    CodeIntegrityError,
    Row,
    TreeEntry,
    decode_rows,
    decode_tree,
    entry_of,
    paused_gc,
)
from dstack.runner import checkout_locks as locks
from dstack.runner import recycle, treefs
from dstack.runner.copying import clone_or_copy, copy_tree
from dstack.state import code_digest
from dstack.storage.base import Storage

_STATE = "state.json"
_TREE = "tree.json.gz"
#: a placement writing this many files says so before it starts
_MANY = 1000


@dataclass
class CodeReport:
    """What placing the code did, for the job's log; and what :func:`give_back` needs."""

    files: int = 0
    size: int = 0
    changed: int = 0  # paths of the checkout written or removed
    downloaded_files: int = 0
    downloaded_bytes: int = 0
    phases: dict[str, float] = field(default_factory=dict)
    #: the checkout used (None for an earlier version's archive)
    checkout: Path | None = None
    #: what the job's folder was given, path by path (``dstack.runner.recycle``)
    handed: recycle.Handed | None = None
    #: the folder handed out (device, inode): the one given back must be that folder
    folder: tuple[int, int] | None = None

    def describe(self) -> str:
        from dstack.units import format_size

        total = sum(self.phases.values())
        parts = [f"{self.files} files, {format_size(self.size)}"]
        if self.changed:
            parts.append(f"{self.changed} changed")
        parts.append(f"{self.downloaded_files} downloaded ({format_size(self.downloaded_bytes)})")
        timings = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in self.phases.items())
        return f"code ready in {total:.2f} s ({'; '.join(parts)}; {timings})"


def place_code(
    storage: Storage,
    spec: JobSpec,
    repo_dir: Path,
    cache_dir: Path,
    *,
    notice: Callable[[str], None] | None = None,
) -> CodeReport:
    """Put the run's code, exactly, in ``repo_dir`` (made fresh). RunnerError / RepoError.

    ``notice`` is told, before they start, of the phases that take a while (a first run:
    thousands of files to download and write), so that a job's log is never silent for long."""
    say = notice or (lambda text: None)
    try:
        kind, digest = code_digest(spec.repo.code_key)
    except ValueError as exc:
        raise RunnerError(f"the run's code key is malformed: {exc}") from None
    if repo_dir.exists() or repo_dir.is_symlink():
        shutil.rmtree(repo_dir)
    repo_dir.parent.mkdir(parents=True, exist_ok=True)
    if kind == "archive":
        return _place_archive(storage, spec.repo.code_key, digest, repo_dir, cache_dir)
    base = cache_dir / "code" / "checkouts" / _store_digest(storage) / _safe(spec.repo.repo_id)
    report = CodeReport(checkout=base)
    start = time.monotonic()
    for last in (False, True):
        with locks.locked(base / "lock"), paused_gc():
            _add_phase(report, "wait", time.monotonic() - start, at_least=0.01)
            # no spare yet, but a job of this repo is giving its folder back: wait for it
            # (a rename) rather than copy every file now
            copy = last or not locks.returning(base)
            if _place(storage, spec.repo.code_key, digest, base, repo_dir, report, say, copy):
                st = os.stat(repo_dir)
                report.folder = (st.st_dev, st.st_ino)
                return report
        start = time.monotonic()
        locks.await_return(base)
    raise AssertionError("the second pass always places the code")


def _place(
    storage: Storage,
    key: str,
    digest: str,
    base: Path,
    repo_dir: Path,
    report: CodeReport,
    say: Callable[[str], None],
    copy: bool,
) -> bool:
    """Under the checkout's lock: bring the checkout to the tree, then give ``repo_dir`` the
    spare, or (``copy``) a copy of the checkout; False when there was no spare to take and no
    copy was wanted."""
    start = time.monotonic()
    change = _update(storage, key, digest, base, report, say)
    _add_phase(report, "checkout", time.monotonic() - start)
    start = time.monotonic()

    def wanted() -> dict[str, TreeEntry]:
        if change is None:
            return _entries(base, digest)
        return {path: entry_of(path, row) for path, row in change.rows.items()}

    report.handed = recycle.take(base, digest, wanted, repo_dir, change)
    if report.handed is not None:
        _add_phase(report, "spare", time.monotonic() - start)
        return True
    if not copy:
        return False
    if report.files >= _MANY:
        say(f"code: copying {report.files} files into the job's folder…")
    copy_tree(base / "tree", repo_dir)
    report.handed = recycle.Handed(record=recycle.record_of(repo_dir, wanted()))
    _add_phase(report, "copy", time.monotonic() - start)
    return True


def _add_phase(report: CodeReport, name: str, seconds: float, at_least: float = 0.0) -> None:
    if seconds >= at_least:
        report.phases[name] = report.phases.get(name, 0.0) + seconds


def give_back(report: CodeReport, repo_dir: Path) -> bool:
    """After the job: keep its folder as the checkout's spare (``dstack.runner.recycle``), or
    say it was not kept (False: the caller removes it). Best effort, never raises."""
    base, handed = report.checkout, report.handed
    if base is None or handed is None:
        return False
    try:
        st = os.lstat(repo_dir)
        if not stat.S_ISDIR(st.st_mode) or (st.st_dev, st.st_ino) != report.folder:
            return False  # moved away, or a folder above it swapped for a symlink or a mount
        with locks.giving_back(base):
            return _give_back(base, handed, repo_dir)
    except Exception:  # best effort: the folder is then removed, and the next job copies
        return False


def _give_back(base: Path, handed: recycle.Handed, repo_dir: Path) -> bool:
    if recycle.in_use(repo_dir) is not False:
        return False
    with paused_gc():
        record = handed.load()
        kept = recycle.clean(repo_dir, record)  # outside the lock: it may remove a lot
        digest, _ = _read_state(base)  # its entries read outside the lock, if they can be
        wanted = _entries(base, digest) if digest is not None else {}
    with locks.locked(base / "lock"), paused_gc():
        now, _ = _read_state(base)
        if now is None or recycle.in_use(repo_dir) is not False:  # asked again: late
            return False
        if now != digest:
            wanted = _entries(base, now)
        return recycle.keep(base, repo_dir, kept, now, wanted)


# ---- the checkout ---------------------------------------------------------------------------


def _update(
    storage: Storage,
    key: str,
    digest: str,
    base: Path,
    report: CodeReport,
    say: Callable[[str], None],
) -> recycle.Change | None:
    """Bring the checkout to the tree ``digest``; how it changed (None: it held that tree
    already, and nothing was read). Rows are compared as stored: entries are made, and paths
    checked, only for what is written."""
    tree_dir = base / "tree"
    current, counts = _read_state(base)
    if current == digest:
        report.files, report.size = counts
        return None
    try:
        _, data, rows = codestore.fetch_tree(storage, key)
    except CodeIntegrityError as exc:
        _refuse(storage, exc, key)
    old: dict[str, Row] = {}
    if current is not None:
        old = decode_rows((base / _TREE).read_bytes(), current, where=str(base / _TREE))
    else:
        shutil.rmtree(tree_dir, ignore_errors=True)  # absent, or left incomplete
    removed = [path for path, row in old.items() if rows.get(path) != row]
    added = [entry_of(path, row) for path, row in rows.items() if old.get(path) != row]
    for entry in added:
        treefs.check_path(entry.path)
    report.files = len(rows)
    report.size = sum(row[2] for row in rows.values() if row[0] != "l")  # type: ignore[misc]
    staging = base / "staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    _stage(storage, key, tree_dir, old, added, staging, report, say)
    _write_state(base, None, (0, 0))
    tree_dir.mkdir(parents=True, exist_ok=True)
    uses: dict[str, int] = {}
    for entry in added:
        uses[entry.digest] = uses.get(entry.digest, 0) + 1

    def write(entry: TreeEntry, target: Path) -> None:
        uses[entry.digest] -= 1
        if uses[entry.digest]:
            clone_or_copy(staging / entry.digest, target)
        else:  # its last use: move it in
            os.replace(staging / entry.digest, target)

    report.changed = treefs.apply(tree_dir, removed, added, write)
    shutil.rmtree(staging, ignore_errors=True)
    (base / _TREE).write_bytes(data)
    _write_state(base, digest, (report.files, report.size))
    return recycle.Change(current, removed, added, rows)


def _entries(base: Path, digest: str) -> dict[str, TreeEntry]:
    """The entries of the tree the checkout holds (read from its record beside it)."""
    tree = base / _TREE
    return {e.path: e for e in decode_tree(tree.read_bytes(), digest, where=str(tree))}


def _stage(
    storage: Storage,
    key: str,
    tree_dir: Path,
    old: dict[str, Row],
    added: list[TreeEntry],
    staging: Path,
    report: CodeReport,
    say: Callable[[str], None],
) -> None:
    """Put every new content in ``staging/<digest>``: from the checkout where a path holds it,
    else downloaded and verified."""
    held = {row[1]: path for path, row in old.items() if row[0] != "l"}
    missing: dict[str, int] = {}
    for entry in added:
        if entry.target is not None or (staging / entry.digest).exists():
            continue
        if entry.digest in held:
            clone_or_copy(tree_dir / held[entry.digest], staging / entry.digest)
        else:
            missing[entry.digest] = entry.size
    if len(added) >= _MANY:
        from dstack.units import format_size

        size = format_size(sum(missing.values()))
        say(f"code: {len(added)} files to write, {len(missing)} to download ({size})…")
    try:
        codestore.fetch_blobs(storage, list(missing), staging)
    except CodeIntegrityError as exc:
        _refuse(storage, exc, key)
    report.downloaded_files = len(missing)
    report.downloaded_bytes = sum(missing.values())


def _refuse(storage: Storage, exc: CodeIntegrityError, tree_key: str) -> None:
    removed = codestore.discard(storage, list(dict.fromkeys([exc.key, tree_key])))
    then = (
        "it was removed from the store: run again and dstack stores the code anew"
        if removed
        else f"remove {exc.key} and {tree_key} from the store, then run again"
    )
    raise RunnerError(f"{exc}; {then}") from None


def _read_state(base: Path) -> tuple[str | None, tuple[int, int]]:
    """The digest of the tree the checkout holds (None if none, or if it was left incomplete),
    and its file count and size."""
    try:
        record = json.loads((base / _STATE).read_text())
        digest, counts = record["digest"], (int(record["files"]), int(record["size"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None, (0, 0)
    if not isinstance(digest, str) or not (base / _TREE).exists():
        return None, (0, 0)
    return digest, counts


def _write_state(base: Path, digest: str | None, counts: tuple[int, int]) -> None:
    tmp = base / f"{_STATE}.tmp"
    tmp.write_text(json.dumps({"digest": digest, "files": counts[0], "size": counts[1]}))
    os.replace(tmp, base / _STATE)


# ---- earlier versions' archives -------------------------------------------------------------


def _place_archive(
    storage: Storage, key: str, digest: str, repo_dir: Path, cache_dir: Path
) -> CodeReport:
    from dstack.repo.archive import unpack_code

    report = CodeReport()
    start = time.monotonic()
    cached = cache_dir / "codes" / digest
    if not cached.exists():
        try:
            storage.download_file(key, cached)
        except NotFoundError:
            raise RunnerError(f"the run's code archive {key} is missing") from None
        report.downloaded_files, report.downloaded_bytes = 1, cached.stat().st_size
    try:
        unpack_code(cached, repo_dir, digest=digest)
    except CodeIntegrityError as exc:
        cached.unlink(missing_ok=True)
        _refuse(storage, exc, key)
    except RepoError:
        raise
    report.phases["unpack"] = time.monotonic() - start
    return report


# ---- helpers --------------------------------------------------------------------------------


def _safe(repo_id: str) -> str:
    return repo_id.replace("/", "_")


def _store_digest(storage: Storage) -> str:
    """Keep each store's checkouts apart (two stores may hold the same repo id)."""
    description = json.dumps(storage.config().model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(description.encode()).hexdigest()[:16]
