"""Data shared by every layer: runs, jobs, statuses, repository snapshots, owners.

These are nouns only. Reading and writing them to a store is ``dstack.state``'s business;
building them from a workflow file is ``dstack.spec`` and ``dstack.providers``'.
Timestamps are UNIX seconds (float) in UTC.
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Model(BaseModel):
    """Base of stored records: unknown fields are kept out, so records stay honest."""

    model_config = ConfigDict(extra="ignore", frozen=False)


class JobStatus(str, enum.Enum):
    """Lifecycle of a job.

    ``submitted → provisioning → [downloading] → running → [uploading] → done``, or
    ``failed`` (with a reason), ``stopping → stopped``, ``aborted``, ``interrupted``.
    """

    SUBMITTED = "submitted"
    PROVISIONING = "provisioning"
    DOWNLOADING = "downloading"
    RUNNING = "running"
    UPLOADING = "uploading"
    STOPPING = "stopping"
    DONE = "done"
    FAILED = "failed"
    STOPPED = "stopped"
    ABORTED = "aborted"
    INTERRUPTED = "interrupted"

    @property
    def is_finished(self) -> bool:
        return self in _FINISHED

    @property
    def is_active(self) -> bool:
        return not self.is_finished


_FINISHED = frozenset(
    {JobStatus.DONE, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.ABORTED, JobStatus.INTERRUPTED}
)

# When jobs of one run disagree, the run shows the "worst" finished status, or the least
# advanced active one. Order: most important first.
_RUN_STATUS_PRIORITY = [
    JobStatus.FAILED,
    JobStatus.INTERRUPTED,
    JobStatus.ABORTED,
    JobStatus.STOPPED,
    JobStatus.STOPPING,
    JobStatus.SUBMITTED,
    JobStatus.PROVISIONING,
    JobStatus.DOWNLOADING,
    JobStatus.RUNNING,
    JobStatus.UPLOADING,
    JobStatus.DONE,
]


def run_status(statuses: list[JobStatus]) -> JobStatus:
    """The status of a run made of jobs with these statuses."""
    if not statuses:
        return JobStatus.SUBMITTED
    active = [s for s in statuses if s.is_active]
    pool = active if active and not any(s is JobStatus.FAILED for s in statuses) else statuses
    return min(pool, key=_RUN_STATUS_PRIORITY.index)


class Owner(Model):
    """Who submitted a run: the git identity and the machine user."""

    git_name: str | None = None
    git_email: str | None = None
    user: str = "unknown"
    hostname: str = "unknown"

    @property
    def display(self) -> str:
        return self.git_name or self.user


class RepoSnapshot(Model):
    """The repository as it was on disk when a run was submitted."""

    repo_id: str = Field(description="`<host>/<owner>/<name>` from the remote, or `local/<folder>`")
    remote_url: str | None = None
    branch: str | None = None
    commit: str | None = None
    dirty: bool = False
    diff: str = ""
    code_key: str = Field(description="content address of the code archive in the store")
    code_size: int = 0

    @property
    def owner_and_name(self) -> tuple[str, str]:
        parts = self.repo_id.split("/")
        return (parts[-2] if len(parts) >= 2 else "", parts[-1])


class Resources(Model):
    """Compute a job needs, resolved to plain numbers."""

    cpu: int | None = None
    memory_mib: int | None = None
    gpu_count: int = 0
    gpu_name: str | None = None
    gpu_memory_mib: int | None = None
    shm_size_mib: int | None = None
    interruptible: bool = False
    local: bool = False


class Artifact(Model):
    """A path, relative to the job's working directory, saved to the store."""

    path: str
    mount: bool = False


class Dependency(Model):
    """Another run whose artifacts a job receives before it starts (resolved at submit)."""

    repo_id: str
    run_name: str
    tag: str | None = None
    workflow: str | None = None


class JobSpec(Model):
    """Everything the runner needs to run one job. Written once at submit, never changed."""

    run_name: str
    job_index: int = 0
    workflow: str
    provider: str
    repo: RepoSnapshot
    commands: list[str] = Field(default_factory=list)
    setup: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    working_dir: str = "."
    python: str | None = None
    requirements: str | None = None
    image: str | None = None
    artifacts: list[Artifact] = Field(default_factory=list)
    ports: int = 0
    resources: Resources = Field(default_factory=Resources)
    deps: list[Dependency] = Field(default_factory=list)
    submitted_at: float = 0.0

    @property
    def job_id(self) -> str:
        return f"{self.run_name}-{self.job_index}"


class JobState(Model):
    """The mutable record of a job: its status and what the runner knows about it."""

    status: JobStatus = JobStatus.SUBMITTED
    reason: str | None = Field(default=None, description="why it failed/stopped, for people")
    exit_code: int | None = None
    updated_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    hostname: str | None = None
    runner_pid: int | None = None
    runner_started: int | None = Field(default=None, description="runner start time, in ticks")
    process_group: int | None = None
    ports: list[int] = Field(default_factory=list)


class RunRecord(Model):
    """A run as submitted: written once, never overwritten (only-if-absent)."""

    run_name: str
    repo_id: str
    workflow: str
    provider: str
    submitted_at: float
    owner: Owner
    args: list[str] = Field(default_factory=list)
    tag: str | None = Field(default=None, description="tag to assign when the run succeeds")
    job_count: int = 1
    compute: str = "local"
    repo: RepoSnapshot
    deps: list[Dependency] = Field(default_factory=list)


class JobHead(Model):
    """The few fields of a job that listing commands show, decoded from its index key."""

    run_name: str
    job_index: int
    submitted_at: float
    workflow: str
    status: JobStatus
    updated_at: float
    owner: str
    exit_code: int | None = None


class RunSummary(Model):
    """A run as `dstack ps` shows it: its heads folded into one line."""

    run_name: str
    workflow: str
    submitted_at: float
    status: JobStatus
    owner: str
    updated_at: float
    exit_code: int | None = None
    job_count: int = 1
    tags: list[str] = Field(default_factory=list)


def dump(model: BaseModel) -> bytes:
    """Serialize a record for the store (compact JSON, UTF-8)."""
    return model.model_dump_json(exclude_none=False).encode()


def load(cls: type[Any], data: bytes) -> Any:
    return cls.model_validate_json(data)
