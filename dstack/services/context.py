"""What every service needs: the store, the compute, and the repo the user stands in."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from dstack.compute import cloud_compute, default_compute
from dstack.compute.base import Compute
from dstack.storage import default_storage
from dstack.storage.base import Storage


class CodeProgress(Protocol):
    """What the CLI shows while a snapshot is hashed and stored (a first run of a big repo)."""

    def hashing(self, files: int, size: int) -> None:
        """Called as files are hashed: files and bytes so far."""

    def storing(self, files: int, size: int) -> None:
        """Called once before sending: the new files and their bytes."""

    def sent(self, size: int) -> None:
        """Called with bytes just sent."""

    def done(self) -> None:
        """The code is stored."""


@dataclass
class Context:
    """The store and compute to use, and the repository folder commands refer to."""

    storage: Storage = field(default_factory=default_storage)
    compute: Compute = field(default_factory=default_compute)
    repo_path: Path = field(default_factory=Path.cwd)
    _repo_id: str | None = None
    warnings: list[str] = field(default_factory=list)
    _cloud: Compute | None = None
    #: progress of the code snapshot, shown by the CLI (None: nothing shown)
    code_progress: CodeProgress | None = None

    @property
    def repo_id(self) -> str:
        if self._repo_id is None:
            from dstack.repo import read_repo_id

            self._repo_id, warnings = read_repo_id(self.repo_path)
            self.warnings.extend(warnings)
        return self._repo_id

    def know_repo(self, repo_id: str) -> None:
        """``repo_id`` is what a snapshot of ``repo_path`` found (the id its run is recorded
        under): later ``repo_id`` reads need not ask git again."""
        if self._repo_id is None:
            self._repo_id = repo_id

    def use_repo(self, repo_id: str) -> None:
        """Refer to the repo ``repo_id`` (``github.com/OWNER/NAME``, ``local/NAME``) instead of
        the one the current folder is in: for commands run outside it."""
        from dstack.errors import DstackError

        parts = repo_id.strip("/").split("/")
        if not (len(parts) == 3 or (len(parts) == 2 and parts[0] == "local")) or not all(parts):
            raise DstackError(f"--repo {repo_id!r}: expected HOST/OWNER/NAME or local/NAME")
        self._repo_id = "/".join(parts)

    @property
    def cloud(self) -> Compute:
        """The cloud compute (for plans, pruning and bootstrap): ``compute`` when it is a
        cloud, otherwise the one the config file describes."""
        if self._cloud is None:
            self._cloud = cloud_compute(self.compute)
        return self._cloud
