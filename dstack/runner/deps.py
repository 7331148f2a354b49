"""Putting a job's dependencies in place before it starts, through a machine cache.

Each dependency (resolved at submit: a finished run, or one upload of a tag) is a set of files
at paths relative to the working directory of the job that wrote them; they are placed at the
same paths relative to this job's working directory. On a clash the later file wins: a later
job of the same run, a later dep, and any dep over a file of the repo.

The content a dependency points at never changes (``state.ArtifactSource.identity``), so files
are downloaded once per machine into ``<cache>/artifacts/<store>/<identity>/`` and copied from
there into the job's folder: a second job that consumes the same tag downloads nothing. Copies
are reflinks where the filesystem can (instant, no extra space) and plain copies otherwise, never
hard links: a job may rewrite a dep's file in place (resuming a checkpoint), and that must not
change the cache. The executable bit is kept. The cache's locks, its record of use and its size
limit belong to ``dstack.runner.depcache``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from dstack import state
from dstack.errors import ConfigError, RunnerError, RunNotFoundError, StorageError
from dstack.models import Dependency, JobSpec
from dstack.runner import depcache
from dstack.runner.copying import clone_or_copy
from dstack.state import manifest
from dstack.state.filenames import from_key
from dstack.storage.base import Storage


@dataclass
class FetchReport:
    """What fetching a job's deps did."""

    files: int = 0
    size: int = 0
    downloaded_files: int = 0
    downloaded_bytes: int = 0
    pruned_entries: int = 0  # least recently used entries removed from the machine cache
    pruned_bytes: int = 0
    warning: str | None = None


def fetch_deps(storage: Storage, spec: JobSpec, workdir: Path, cache_dir: Path) -> FetchReport:
    """Place every dependency of ``spec`` under ``workdir``; download what the cache lacks."""
    store_cache = cache_dir / "artifacts" / _store_digest(storage)
    placed: dict[str, Path] = {}  # path in the job's folder -> cached file; the later wins
    sizes: dict[Path, tuple[str, int]] = {}  # cached file -> (key, size)
    roots: dict[Path, int] = {}  # cache entry -> its size in bytes
    checks: dict[Path, tuple[str, state.ArtifactSource, str]] = {}  # cached file -> its check
    for dep in spec.deps:
        found = 0
        for source in _sources(storage, dep):
            root = store_cache / source.identity
            for info in storage.list_objects(source.prefix):
                relative = info.key[len(source.prefix) :]  # the key form (``state.filenames``)
                file = root / from_key(relative)
                placed[from_key(relative)] = file
                if file not in sizes:
                    roots[root] = roots.get(root, 0) + info.size
                sizes[file] = (info.key, info.size)
                checks[file] = (relative, source, f"dependency {dep.describe()}")
                found += 1
        if not found and dep.run_name is None:
            raise RunnerError(f"dependency {dep.describe()}: its files are gone from the store")
    report = FetchReport(files=len(placed), size=sum(sizes[p][1] for p in placed.values()))
    counter = _Counter()
    with contextlib.ExitStack() as locks:
        if any(not _cached(path, size) for path, (_, size) in sizes.items()):
            for root in sorted(roots):  # another job on this machine may be fetching them too
                locks.enter_context(depcache.locked(root, shared=False))
        missing = [(key, path) for path, (key, size) in sizes.items() if not _cached(path, size)]
        listed = {key: size for key, size in sizes.values()}
        storage.download_tree(missing, progress=counter, sizes=listed)
        _verify(storage, [(path, checks[path]) for _, path in missing])
        for root, size in roots.items():
            depcache.mark_used(cache_dir / "artifacts", root, size)
    with contextlib.ExitStack() as locks:
        for root in sorted(roots):  # no pruning elsewhere while the files are copied out
            locks.enter_context(depcache.locked(root, shared=True))
        for relative, cached in placed.items():
            _place(cached, workdir, relative)
    report.downloaded_files = len(missing)
    report.downloaded_bytes = counter.total
    _prune(cache_dir / "artifacts", set(roots), report)
    return report


def _verify(
    storage: Storage, downloaded: list[tuple[Path, tuple[str, state.ArtifactSource, str]]]
) -> None:
    """Check each downloaded file against its producer's checksums (``state.manifest``); a
    file that does not match is removed from the cache and the job stops with one line."""
    manifests: dict[str, dict[str, manifest.Entry] | None] = {}
    for path, (relative, source, what) in downloaded:
        if source.manifest_key is None:
            continue
        if source.manifest_key not in manifests:
            manifests[source.manifest_key] = manifest.read_manifest(storage, source.manifest_key)
        recorded = manifests[source.manifest_key]
        if recorded is None:
            continue  # saved before checksums were recorded, or still running
        try:
            manifest.verify_file(path, relative, recorded, what)
        except StorageError:
            path.unlink(missing_ok=True)
            raise


def _prune(root: Path, keep: set[Path], report: FetchReport) -> None:
    """Keep the machine cache under its limit; a failure here never fails the job."""
    try:
        removed = depcache.prune(root, keep=keep, limit=depcache.max_size())
    except ConfigError as exc:
        report.warning = f"{exc}: the cache was not pruned"
        return
    except OSError as exc:
        report.warning = f"the dependency cache could not be pruned: {exc}"
        return
    report.pruned_entries = len(removed)
    report.pruned_bytes = sum(entry.size for entry in removed)


def _sources(storage: Storage, dep: Dependency) -> list[state.ArtifactSource]:
    try:
        return state.dependency_sources(storage, dep)
    except RunNotFoundError:
        raise RunnerError(
            f"dependency {dep.describe()}: run {dep.run_name} of {dep.repo_id} no longer exists"
        ) from None


def _cached(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False


def _place(cached: Path, workdir: Path, relative: str) -> None:
    target = workdir / relative
    root = workdir.resolve()
    if root not in target.resolve().parents:
        raise RunnerError(f"dependency file {relative!r} would land outside the working directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    clone_or_copy(cached, target)
    mode = 0o755 if os.stat(cached).st_mode & stat.S_IXUSR else 0o644
    os.chmod(target, mode)


def _store_digest(storage: Storage) -> str:
    """Run names are unique per store, not per machine: keep each store's cache apart."""
    description = json.dumps(storage.config().model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(description.encode()).hexdigest()[:16]


class _Counter:
    """A progress callback that sums the bytes downloaded, from many threads."""

    def __init__(self) -> None:
        self.total = 0
        self._lock = threading.Lock()

    def __call__(self, n: int) -> None:
        with self._lock:
            self.total += n
