"""What every service needs: the store, the compute, and the repo the user stands in."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dstack import settings
from dstack.backends.base import Compute, Storage


@dataclass
class Context:
    """The store and compute to use, and the repository folder commands refer to."""

    storage: Storage = field(default_factory=settings.default_storage)
    compute: Compute = field(default_factory=lambda: default_compute())
    repo_path: Path = field(default_factory=Path.cwd)
    _repo_id: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def repo_id(self) -> str:
        if self._repo_id is None:
            from dstack.repo import read_repo_id

            self._repo_id, warnings = read_repo_id(self.repo_path)
            self.warnings.extend(warnings)
        return self._repo_id


def default_compute() -> Compute:
    """AWS when the config file's ``compute`` section says ``type: aws`` (written by
    `dstack config --backend aws`), this machine otherwise."""
    config = settings.load_config()
    section = config.get("compute")
    if isinstance(section, dict) and section.get("type") == "aws":
        from dstack.backends.aws.config import AwsComputeConfig
        from dstack.backends.aws_compute import AwsCompute

        return AwsCompute(AwsComputeConfig.from_config(config))
    from dstack.backends.local_compute import LocalCompute

    return LocalCompute()
