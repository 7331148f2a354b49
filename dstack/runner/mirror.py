"""Keeping a local copy of other runs' artifacts while a job runs (``tensorboard``).

The runs named by the job (``JobSpec.watch_runs``, runs of the same repo) are copied under
``$RUNS_DIR/<run>/`` — ``$RUNS_DIR/<run>/<i>/`` for job ``i`` of a multi-job run — once before
the job's commands start, then again every few seconds, so a run that is still training shows
its new event files. A file is downloaded when it is new or its size changed (event files only
grow); nothing is ever deleted. A run that does not exist fails the job before it starts.
"""

from __future__ import annotations

import threading
from pathlib import Path

from dstack import state
from dstack.errors import RunnerError, RunNotFoundError, StorageError
from dstack.models import JobSpec
from dstack.state.filenames import from_key
from dstack.storage.base import Storage


class RunsMirror:
    def __init__(self, storage: Storage, spec: JobSpec, target: Path, interval: float) -> None:
        self.storage = storage
        self.spec = spec
        self.target = target
        self.interval = interval
        self._sources: list[tuple[str, Path]] = []  # (artifacts prefix, local folder)
        self._sizes: dict[Path, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="runs-mirror", daemon=True)
        self.files = 0

    def start(self) -> RunsMirror:
        """Find the runs (RunnerError if one is missing), copy them once, then keep copying."""
        repo_id = self.spec.repo.repo_id
        for run_name in self.spec.watch_runs:
            try:
                run = state.read_run(self.storage, repo_id, run_name)
            except RunNotFoundError:
                raise RunnerError(f"no run {run_name!r} in {repo_id} to show") from None
            for index in range(run.job_count):
                folder = self.target / run_name
                if run.job_count > 1:
                    folder = folder / str(index)
                self._sources.append((state.artifacts_prefix(repo_id, run_name, index), folder))
        self.target.mkdir(parents=True, exist_ok=True)
        self.sync_once()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def sync_once(self) -> int:
        """Download what is new or has grown; how many files."""
        items: list[tuple[str, Path]] = []
        sizes: dict[Path, int] = {}
        listed: dict[str, int] = {}
        for prefix, folder in self._sources:
            for info in self.storage.list_objects(prefix):
                path = folder / from_key(info.key[len(prefix) :])
                if self._sizes.get(path) != info.size:
                    items.append((info.key, path))
                    sizes[path] = info.size
                    listed[info.key] = info.size
        self.storage.download_tree(items, sizes=listed)
        self._sizes.update(sizes)  # only once they have landed: a failed pass is retried
        self.files += len(items)
        return len(items)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sync_once()
            except (StorageError, OSError):
                continue  # the next pass tries again
