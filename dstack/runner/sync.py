"""Artifacts on their way to the store: changed files only, while the job runs and at the end.

A file is uploaded when its size or modification time differs from the last upload. The changed
files of a pass go to the store as one batch (``Storage.upload_tree``: a checkpoint folder of a
thousand small files must not take a thousand round trips in a row); the ones the store did not
confirm are sent again at the next pass, and the final pass retries until a deadline.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

from dstack import state
from dstack.errors import StorageError
from dstack.models import JobSpec
from dstack.runner import artifact_paths
from dstack.state import manifest
from dstack.state.filenames import from_key, to_key
from dstack.storage.base import Storage

#: files uploaded at once by a pass (each large one is also split in parts by the store)
UPLOAD_WORKERS = 16


Stamp = tuple[int, int]  # (size, modification time in ns) of a file as it was uploaded


class ArtifactSync:
    """``synced``: files already in the store as they are on disk (``restore_artifacts``)."""

    def __init__(
        self,
        storage: Storage,
        spec: JobSpec,
        job_dir: Path,
        interval: float,
        synced: dict[str, Stamp] | None = None,
        notice: Callable[[str], None] | None = None,
    ) -> None:
        self.storage = storage
        self.spec = spec
        self.job_dir = job_dir
        self.interval = interval
        self.prefix = state.artifacts_prefix(spec.repo.repo_id, spec.run_name, spec.job_index)
        self._synced: dict[str, Stamp] = dict(synced or {})
        self.notice = notice  # a line for the job's log
        self._reported: set[Path] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one pass at a time
        self._counters = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="artifact-sync", daemon=True)
        self.uploaded_files = 0

    def start(self) -> ArtifactSync:
        if self.spec.artifacts:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def changed_files(self) -> list[tuple[Path, str, tuple[int, int]]]:
        """(file, key, stamp) of every artifact file not yet uploaded as it is now."""
        result = []
        workdir = self.job_dir / self.spec.working_dir
        for artifact in self.spec.artifacts:
            root = artifact_paths.on_disk(workdir, artifact.path)
            saved_as = artifact_paths.stored_as(artifact.path)
            # links may lead anywhere inside the job's folder (or inside an artifact folder
            # that lives elsewhere, an absolute path), never out of it
            fence = self.job_dir if root.is_relative_to(self.job_dir) else root
            skipped: list[Path] = []
            for path in _walk(root, inside=fence, skipped=skipped):
                try:
                    st = path.stat()
                except OSError:
                    continue
                inside = path.relative_to(root).as_posix()
                # the key form: a name that is not UTF-8 is escaped (``state.filenames``)
                rel = saved_as if inside == "." else f"{saved_as}/{to_key(inside)}"
                stamp = (st.st_size, st.st_mtime_ns)
                if self._synced.get(rel) != stamp:
                    result.append((path, self.prefix + rel, stamp))
            for path in skipped:
                if path not in self._reported and self.notice is not None:
                    self._reported.add(path)
                    where = path.relative_to(workdir).as_posix()
                    target = os.readlink(path) if path.is_symlink() else path.resolve()
                    self.notice(
                        f"[dstack] artifact {where} links to {target}, outside the job's "
                        "folder: not saved"
                    )
        return result

    def sync_once(self) -> bool:
        """Upload every changed file. True when all uploads succeeded."""
        with self._lock:
            changed = self.changed_files()
            if not changed:
                return True
            stamps = {key: stamp for _, key, stamp in changed}

            def uploaded(key: str) -> None:
                with self._counters:
                    self._synced[key[len(self.prefix) :]] = stamps[key]
                    self.uploaded_files += 1

            pairs = [(path, key) for path, key, _ in changed]
            try:
                self.storage.upload_tree(pairs, workers=UPLOAD_WORKERS, on_uploaded=uploaded)
            except (StorageError, OSError):
                return False
            return True

    def write_manifest(self) -> None:
        """Record the size and SHA-256 of every artifact file saved (``state.manifest``), for
        consumers to verify; called once the last pass has saved everything."""
        workdir = self.job_dir / self.spec.working_dir
        with self._lock:
            saved = dict(self._synced)
        entries = {}
        for rel, (size, _) in saved.items():
            # an absolute artifact is saved as _absolute/<path> but read where the job wrote it
            absolute = rel.startswith(artifact_paths.ABSOLUTE_FOLDER + "/")
            name = from_key(rel)
            path = Path(name[len(artifact_paths.ABSOLUTE_FOLDER) :]) if absolute else workdir / name
            with contextlib.suppress(OSError):
                entries[rel] = (size, manifest.file_sha256(path))
        key = manifest.job_manifest_key(self.spec.repo.repo_id, self.spec.run_name,
                                        self.spec.job_index)  # fmt: skip
        manifest.write_manifest(self.storage, key, entries)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sync_once()


def restore_artifacts(storage: Storage, spec: JobSpec, repo_dir: Path) -> dict[str, Stamp]:
    """Put the artifacts earlier attempts of this job saved back at their paths (a new attempt
    resumes from them); return their stamps as restored, by path under the working directory,
    so that ``ArtifactSync`` does not send them back to where they came from."""
    prefix = state.artifacts_prefix(spec.repo.repo_id, spec.run_name, spec.job_index)
    workdir = repo_dir / spec.working_dir
    infos = list(storage.list_objects(prefix))
    items = [(info.key, workdir / from_key(info.key[len(prefix) :])) for info in infos]
    storage.download_tree(items, sizes={info.key: info.size for info in infos})
    restored: dict[str, Stamp] = {}
    for info, (_, path) in zip(infos, items, strict=True):
        with contextlib.suppress(OSError):
            st = path.stat()
            restored[info.key[len(prefix) :]] = (st.st_size, st.st_mtime_ns)
    return restored


def _walk(root: Path, inside: Path | None = None, skipped: list[Path] | None = None) -> list[Path]:
    """The files under ``root`` (or ``root`` itself). With ``inside``, a symbolic link (the
    root, a folder on the way, or a file) whose target is not under ``inside`` is left out
    and added to ``skipped``: a job cannot make the runner upload /etc/passwd or ~/.aws."""
    if inside is not None and not _within(root, inside):
        if root.is_file() or root.is_dir():
            (skipped if skipped is not None else []).append(root)
        return []
    if root.is_file():
        return [root]
    if not root.is_dir():
        return []
    files = []
    for folder, dirs, names in os.walk(root, followlinks=False):
        for name in dirs:  # links to folders are not walked into; outside ones are reported
            path = Path(folder) / name
            if inside is not None and path.is_symlink() and not _within(path, inside):
                (skipped if skipped is not None else []).append(path)
        for name in names:
            path = Path(folder) / name
            if inside is not None and path.is_symlink() and not _within(path, inside):
                (skipped if skipped is not None else []).append(path)
                continue
            if path.is_file():
                files.append(path)
    files.sort()
    return files


def _within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except (ValueError, OSError, RuntimeError):
        return False
    return True
