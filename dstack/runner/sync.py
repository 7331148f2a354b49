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
from pathlib import Path

from dstack import state
from dstack.errors import StorageError
from dstack.models import JobSpec
from dstack.runner import artifact_paths
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
    ) -> None:
        self.storage = storage
        self.spec = spec
        self.job_dir = job_dir
        self.interval = interval
        self.prefix = state.artifacts_prefix(spec.repo.repo_id, spec.run_name, spec.job_index)
        self._synced: dict[str, Stamp] = dict(synced or {})
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one pass at a time
        self._counters = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="artifact-sync", daemon=True)
        self.uploaded_files = 0
        self.uploaded_bytes = 0

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
            for path in _walk(root):
                try:
                    st = path.stat()
                except OSError:
                    continue
                inside = path.relative_to(root).as_posix()
                rel = saved_as if inside == "." else f"{saved_as}/{inside}"
                stamp = (st.st_size, st.st_mtime_ns)
                if self._synced.get(rel) != stamp:
                    result.append((path, self.prefix + rel, stamp))
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
                    self.uploaded_bytes += stamps[key][0]

            pairs = [(path, key) for path, key, _ in changed]
            try:
                self.storage.upload_tree(pairs, workers=UPLOAD_WORKERS, on_uploaded=uploaded)
            except (StorageError, OSError):
                return False
            return True

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
    items = [(info.key, workdir / info.key[len(prefix) :]) for info in infos]
    storage.download_tree(items, sizes={info.key: info.size for info in infos})
    restored: dict[str, Stamp] = {}
    for info, (_, path) in zip(infos, items, strict=True):
        with contextlib.suppress(OSError):
            st = path.stat()
            restored[info.key[len(prefix) :]] = (st.st_size, st.st_mtime_ns)
    return restored


def _walk(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    if not root.is_dir():
        return []
    files = []
    for folder, _dirs, names in os.walk(root, followlinks=False):
        for name in names:
            path = Path(folder) / name
            if path.is_file():
                files.append(path)
    files.sort()
    return files
