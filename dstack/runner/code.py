"""Placing a run's code in a job's folder, through a per-machine checkout of the code tree.

For each store and repository this machine keeps one *checkout*: a folder holding exactly one
code tree (``dstack.repo.tree``), under ``<cache>/code/checkouts/<store>/<repo>/``, with the
tree's record beside it. A job's code is placed in two steps, holding the checkout's lock:

1. bring the checkout to the job's tree: nothing when it holds that tree already (no request,
   no byte read); otherwise the tree record is fetched and verified, the files that differ are
   removed, and the new contents are taken from the checkout itself when some path already
   holds them (a moved or reverted-in-place file) or downloaded and verified
   (``dstack.repo.codestore``); an object that does not match its address fails the job with
   one line, and is removed from the store with its tree so the next ``dstack run`` stores it
   anew;
2. give the job its own copy: the *spare* — a copy of the checkout made in the background
   while the previous job ran (:func:`refill_spare`) — brought to the job's tree by writing
   only the paths that differ, and renamed into place; or, when there is no spare (the first
   job, or two jobs at once), a copy of the checkout made there and then with
   ``cp --reflink=auto`` (``dstack.runner.copying``: blocks shared where the filesystem can, a
   plain copy elsewhere). Never hard links: a job that rewrites a file of its folder never
   reaches the checkout, and a spare is handed to one job only.

The checkout is marked incomplete while it changes; one found incomplete (a runner killed
mid-update) is rebuilt from scratch. Paths of a tree are checked before anything is written: no
absolute path, no ``..``, nothing under a symlink.

Whole-tree archives stored by earlier versions (``codes/<sha256>.tar.gz``) are downloaded into
``<cache>/codes/``, verified against their address at every use, and unpacked.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import posixpath
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dstack.errors import NotFoundError, RepoError, RunnerError
from dstack.models import JobSpec
from dstack.repo import codestore
from dstack.repo.tree import CodeIntegrityError, TreeEntry, decode_tree
from dstack.runner.copying import clone_or_copy as _clone_or_copy
from dstack.runner.copying import copy_tree
from dstack.state import code_digest
from dstack.storage.base import Storage

_STATE = "state.json"
_SPARE = "spare"
_TREE = "tree.json.gz"


@dataclass
class CodeReport:
    """What placing the code did, for the job's log."""

    files: int = 0
    size: int = 0
    changed: int = 0  # paths of the checkout written or removed
    downloaded_files: int = 0
    downloaded_bytes: int = 0
    phases: dict[str, float] = field(default_factory=dict)
    #: the checkout used, for :func:`refill_spare` (None for an earlier version's archive)
    checkout: Path | None = None

    def describe(self) -> str:
        from dstack.units import format_size

        total = sum(self.phases.values())
        parts = [f"{self.files} files, {format_size(self.size)}"]
        if self.changed:
            parts.append(f"{self.changed} changed")
        parts.append(f"{self.downloaded_files} downloaded ({format_size(self.downloaded_bytes)})")
        timings = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in self.phases.items())
        return f"code ready in {total:.2f} s ({'; '.join(parts)}; {timings})"


def place_code(storage: Storage, spec: JobSpec, repo_dir: Path, cache_dir: Path) -> CodeReport:
    """Put the run's code, exactly, in ``repo_dir`` (made fresh). RunnerError / RepoError."""
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
    report = CodeReport()
    with _locked(base / "lock"):
        start = time.monotonic()
        change = _update(storage, spec.repo.code_key, digest, base, report)
        report.phases["checkout"] = time.monotonic() - start
        start = time.monotonic()
        if _take_spare(base, digest, repo_dir, change):
            report.phases["spare"] = time.monotonic() - start
        else:
            copy_tree(base / "tree", repo_dir)
            report.phases["copy"] = time.monotonic() - start
    report.checkout = base
    return report


# ---- the checkout ---------------------------------------------------------------------------


#: how the checkout changed: (the tree it held, paths removed, entries added)
Change = tuple[str | None, list[str], list[TreeEntry]]


def _update(
    storage: Storage, key: str, digest: str, base: Path, report: CodeReport
) -> Change | None:
    """Bring the checkout to the tree ``digest``; how it changed (None: it held it already)."""
    tree_dir = base / "tree"
    current, counts = _read_state(base)
    if current == digest:
        report.files, report.size = counts
        return None
    try:
        _, data, entries = codestore.fetch_tree(storage, key)
    except CodeIntegrityError as exc:
        _refuse(storage, exc, key)
    for entry in entries:
        _check_path(entry.path)
    _count(entries, report)
    old: dict[str, TreeEntry] = {}
    if current is not None:
        old_data = (base / _TREE).read_bytes()
        old = {e.path: e for e in decode_tree(old_data, current, where=str(base / _TREE))}
    else:
        shutil.rmtree(tree_dir, ignore_errors=True)  # absent, or left incomplete
    removed, added = _diff(old, {e.path: e for e in entries})
    staging = base / "staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    _stage(storage, key, tree_dir, old, added, staging, report)
    _write_state(base, None, (0, 0))
    tree_dir.mkdir(parents=True, exist_ok=True)
    uses: dict[str, int] = {}
    for entry in added:
        uses[entry.digest] = uses.get(entry.digest, 0) + 1

    def place(entry: TreeEntry, target: Path) -> None:
        uses[entry.digest] -= 1
        if uses[entry.digest]:
            _clone_or_copy(staging / entry.digest, target)
        else:  # its last use: move it in
            os.replace(staging / entry.digest, target)

    report.changed = _apply(tree_dir, removed, added, place)
    shutil.rmtree(staging, ignore_errors=True)
    (base / _TREE).write_bytes(data)
    _write_state(base, digest, (report.files, report.size))
    return current, removed, added


def _apply(
    folder: Path,
    removed: list[str],
    added: list[TreeEntry],
    place: Callable[[TreeEntry, Path], None],
) -> int:
    """Remove ``removed`` (and the folders they leave empty), then write ``added`` (files
    through ``place``, then their mode); return how many paths changed."""
    for path in sorted(removed, reverse=True):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(folder / path)
        _prune_empty(folder, path)
    safe_dirs: set[str] = {""}
    for entry in sorted(added, key=lambda e: e.path):
        target = folder / entry.path
        _make_parents(folder, entry.path, safe_dirs)
        if entry.target is not None:
            os.symlink(entry.target, target)
            continue
        place(entry, target)
        os.chmod(target, 0o755 if entry.executable else 0o644)
    return len(set(removed) | {entry.path for entry in added})


def _diff(
    old: dict[str, TreeEntry], new: dict[str, TreeEntry]
) -> tuple[list[str], list[TreeEntry]]:
    removed = [path for path, entry in old.items() if new.get(path) != entry]
    added = [entry for path, entry in new.items() if old.get(path) != entry]
    return removed, added


# ---- the spare: the next job's copy, made while this one runs -------------------------------


def refill_spare(base: Path) -> None:
    """Copy the checkout into a spare for the next job, unless there is one. Run after a job
    has started, in the background: it holds the checkout's lock while it copies, so a job
    that needs the checkout meanwhile waits for it, then takes the spare (never longer than
    copying itself). Best effort: a failure leaves no spare."""
    try:
        with _locked(base / "lock"):
            if _read_spare(base) is not None or (base / f"{_SPARE}.unusable").exists():
                return
            digest, _ = _read_state(base)
            if digest is None:
                return
            tmp = base / "spare.tmp"
            for folder in (tmp, base / _SPARE):
                shutil.rmtree(folder, ignore_errors=True)
            copy_tree(base / "tree", tmp)
            shutil.copyfile(base / _TREE, base / f"{_SPARE}.json.gz")
            os.rename(tmp, base / _SPARE)
            (base / f"{_SPARE}.digest").write_text(digest)
    except (OSError, RunnerError):
        return


def _take_spare(base: Path, digest: str, repo_dir: Path, change: Change | None) -> bool:
    """Bring the spare (if any) to the checkout's tree ``digest`` and move it to
    ``repo_dir``; False when there is no spare to take. ``change`` is how the checkout just
    changed: when the spare was a copy of the checkout before it, the same change applies."""
    spare_digest = _read_spare(base)
    if spare_digest is None:
        return False
    (base / f"{_SPARE}.digest").unlink()  # taken: never handed out twice, even half-updated
    spare = base / _SPARE
    if spare_digest != digest and change is not None and change[0] == spare_digest:
        checkout = base / "tree"
        _apply(spare, change[1], change[2], lambda e, t: _clone_or_copy(checkout / e.path, t))
    elif spare_digest != digest:
        tree = base / _TREE
        old_data = (base / f"{_SPARE}.json.gz").read_bytes()
        old = {e.path: e for e in decode_tree(old_data, spare_digest, where="spare")}
        new = {e.path: e for e in decode_tree(tree.read_bytes(), digest, where=str(tree))}
        removed, added = _diff(old, new)
        checkout = base / "tree"
        _apply(spare, removed, added, lambda e, target: _clone_or_copy(checkout / e.path, target))
    try:
        os.rename(spare, repo_dir)
    except OSError:  # the work folder is on another filesystem: no spares here
        shutil.rmtree(spare, ignore_errors=True)
        (base / f"{_SPARE}.unusable").touch()
        return False
    return True


def _read_spare(base: Path) -> str | None:
    try:
        digest = (base / f"{_SPARE}.digest").read_text().strip()
    except OSError:
        return None
    return digest if (base / _SPARE).is_dir() else None


def _stage(
    storage: Storage,
    key: str,
    tree_dir: Path,
    old: dict[str, TreeEntry],
    added: list[TreeEntry],
    staging: Path,
    report: CodeReport,
) -> None:
    """Put every new content in ``staging/<digest>``: from the checkout where a path holds it,
    else downloaded and verified."""
    held = {e.digest: e.path for e in old.values() if e.target is None}
    missing: dict[str, int] = {}
    for entry in added:
        if entry.target is not None or (staging / entry.digest).exists():
            continue
        if entry.digest in held:
            _clone_or_copy(tree_dir / held[entry.digest], staging / entry.digest)
        else:
            missing[entry.digest] = entry.size
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


def _count(entries: list[TreeEntry], report: CodeReport) -> None:
    report.files = len(entries)
    report.size = sum(e.size for e in entries)


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


def _check_path(path: str) -> None:
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


def _make_parents(root: Path, rel: str, safe_dirs: set[str]) -> None:
    """Create the folders above ``rel``; refuse to go through a symlink or a file."""
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
        else:
            if not stat.S_ISDIR(st.st_mode):
                raise RunnerError(f"refusing the code tree: {prefix!r} is not a folder")
        safe_dirs.add(prefix)


def _prune_empty(root: Path, rel: str) -> None:
    parent = posixpath.dirname(rel)
    while parent:
        try:
            os.rmdir(root / parent)
        except OSError:  # not empty (or gone)
            return
        parent = posixpath.dirname(parent)


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


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _safe(repo_id: str) -> str:
    return repo_id.replace("/", "_")


def _store_digest(storage: Storage) -> str:
    """Keep each store's checkouts apart (two stores may hold the same repo id)."""
    description = json.dumps(storage.config().model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(description.encode()).hexdigest()[:16]
