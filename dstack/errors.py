"""The one exception root of dstack and the tree under it.

Every error a user can cause or meet derives from :class:`DstackError`; the CLI's single
error boundary prints its message as one line and exits non-zero. Lower-level errors (OSError,
botocore, yaml) are mapped to these once, where they happen, and chained with ``from exc``.

    DstackError
    ├── ConfigError              settings, ~/.dstack/config.yaml, environment overrides
    ├── SpecError                .dstack/workflows.yaml: syntax, schema, unknown workflow
    ├── RepoError                not a git repo, no commits, snapshot over its size limit
    ├── StorageError             the state store failed (I/O, permissions, network)
    │   ├── NotFoundError        a key that does not exist
    │   ├── DamagedRecordError   a record that is not what it should be (truncated, not JSON)
    │   └── AlreadyExistsError   an only-if-absent write lost the race
    ├── ComputeError             compute cannot take the job (no GPU, no docker, no python X.Y)
    ├── RunNotFoundError         a run name that is not in the store
    ├── TagNotFoundError         a tag name that is not in the store
    ├── TagExistsError           creating a tag whose name is taken (replacing is explicit)
    ├── InvalidStateError        the run is not in a state that allows the operation
    ├── RunnerError              the runner could not prepare or start a job
    └── TamperedError            a job's spec is not the one its submitter pinned

``RunInterrupted`` is not a DstackError but a KeyboardInterrupt: Ctrl+C during a submit after
the run was written, naming the run so that the CLI can stop it (or ask) instead of leaving it.
"""

from __future__ import annotations


class DstackError(Exception):
    """Root of every error dstack raises on purpose. ``str(err)`` is the line shown to users."""

    exit_code = 1


class ConfigError(DstackError):
    """The configuration (file or environment) is invalid or incomplete."""


class SpecError(DstackError):
    """A workflow file is malformed, or asks for something that does not exist."""


class RepoError(DstackError):
    """The repository cannot be snapshotted."""


class StorageError(DstackError):
    """The state store failed."""


class NotFoundError(StorageError):
    """A key that does not exist in the state store."""

    def __init__(self, key: str) -> None:
        super().__init__(f"not found in the state store: {key}")
        self.key = key


class DamagedRecordError(StorageError):
    """A record of the store is unreadable (truncated, replaced by something else): commands
    report it in one line and go on; ``rm`` and ``tags delete`` can remove it."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


class AlreadyExistsError(StorageError):
    """An only-if-absent write found the key already present."""

    def __init__(self, key: str) -> None:
        super().__init__(f"already exists in the state store: {key}")
        self.key = key


class ComputeError(DstackError):
    """The compute backend cannot run the job as asked.

    ``job_indices``: the jobs it concerns, when a start failed for some jobs of a run only
    (None: all of them)."""

    job_indices: list[int] | None = None


class RunNotFoundError(DstackError):
    """No run of that name in this repository."""


class TagNotFoundError(DstackError):
    """No tag of that name in this repository."""


class TagExistsError(DstackError):
    """A tag of that name exists; replacing it must be asked for."""


class InvalidStateError(DstackError):
    """The run is not in a state that allows the operation."""


class RunnerError(DstackError):
    """The runner could not prepare or start the job."""


class TamperedError(DstackError):
    """A record the runner trusts is not what its submitter wrote (its digest differs from the
    one pinned by the launcher)."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl+C during a submit once the run was written: the run goes on unless its caller
    stops it (``run_name`` says which)."""

    def __init__(self, run_name: str) -> None:
        super().__init__(run_name)
        self.run_name = run_name
