"""Data shared by every layer: runs, jobs, statuses, repository snapshots, owners, tags.

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

    # defer_build: a model builds its validator when first used, so a command pays for the
    # models it uses, not for all of them at import (pydantic >= 2.14 makes that first build
    # thread-safe). The same holds for the workflow, overrides and config models.
    model_config = ConfigDict(extra="ignore", frozen=False, defer_build=True)


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
    code_key: str = Field(
        description="content address of the code tree in the store (or, for runs of earlier "
        "versions, of the code archive)"
    )
    code_size: int = Field(0, description="total size of the shipped files, in bytes")

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
    """What a job receives before it starts, resolved at submit from a workflow's deps: the
    artifacts of a finished run, or the files of a tag made from local folders."""

    repo_id: str
    run_name: str | None = Field(default=None, description="None for a tag of uploaded files")
    tag: str | None = Field(default=None, description="the tag it was found by, if any")
    workflow: str | None = Field(default=None, description="the producing run's workflow")
    upload_id: str | None = Field(default=None, description="an uploaded tag's files")

    def describe(self) -> str:
        """``:moons-data (run bold-bee-1)``, ``train (run calm-cat-2)``, with the repo when
        it is another one's."""
        what = f":{self.tag}" if self.tag else (self.workflow or "?")
        source = f"run {self.run_name}" if self.run_name else "uploaded files"
        return f"{what} ({source})"


class RetryPolicy(Model):
    """When a job that ended is started again as a new attempt of the same run."""

    on: list[str] = Field(
        default_factory=list, description="events: interruption, error, no-capacity"
    )
    exit_codes: list[int] | None = Field(
        default=None, description="with `error`: only these exit codes are retried"
    )
    limit: int = Field(default=3, description="attempts after the first, at most")
    duration: float | None = Field(
        default=None, description="seconds since submit after which no attempt starts"
    )


class AppSpec(Model):
    """A web app a job serves on one of its ports: the attached CLI prints its URL once the
    port answers (with the job's token, kept in a private record, when ``token_param``)."""

    name: str
    port_index: int = 0
    url_path: str = "/"
    token_param: str | None = Field(
        default=None, description="the URL query parameter carrying the job's token"
    )
    needs: list[str] = Field(
        default_factory=list, description="executables of which one must be on the machine"
    )


#: The value a bare name in a workflow's `env` list (``- HF_HOME``) stands for: that variable
#: of the machine the job runs on, if set there (the runner resolves it; no real value has NUL).
FROM_HOST = "\x00host"


class JobSpec(Model):
    """Everything the runner needs to run one job. Written once at submit, never changed."""

    run_name: str
    job_index: int = 0
    workflow: str
    provider: str
    repo: RepoSnapshot
    commands: list[str] = Field(default_factory=list)
    setup: list[str] = Field(default_factory=list)
    args: list[str] = Field(
        default_factory=list,
        description="the run's arguments, handed to the job's shell as data (DSTACK_RUN_ARGS)",
    )
    env: dict[str, str] = Field(default_factory=dict)
    working_dir: str = "."
    python: str | None = None
    requirements: str | None = None
    image: str | None = None
    artifacts: list[Artifact] = Field(default_factory=list)
    ports: int = 0
    resources: Resources = Field(default_factory=Resources)
    deps: list[Dependency] = Field(default_factory=list)
    retry: RetryPolicy | None = None
    spot_policy: str | None = Field(
        default=None, description="cloud: spot, on-demand or auto (None: as resources say)"
    )
    max_price: float | None = Field(default=None, description="cloud: USD per hour per node")
    max_duration: float | None = Field(
        default=None, description="cloud: seconds the instance may run (None: the config's)"
    )
    on_demand_after: int | None = Field(
        default=None, description="cloud: interruptions after which attempts go on-demand"
    )
    price_per_hour: float | None = Field(
        default=None, description="cloud: USD per hour of the offer it was quoted at submit"
    )
    submitted_at: float = 0.0
    packages: list[str] = Field(
        default_factory=list,
        description="pip requirements the provider adds (jupyterlab==4.2.5), cached with the env",
    )
    nodes: int | None = Field(
        default=None, description="torchrun: jobs forming one distributed group (index = rank)"
    )
    master_listens: bool = Field(
        default=False,
        description="torchrun: the master's command listens on MASTER_PORT (torchrun's TCP "
        "store), so the other nodes start once it does",
    )
    apps: list[AppSpec] = Field(default_factory=list)
    max_idle: float | None = Field(
        default=None, description="seconds nobody used the job after which it is stopped"
    )
    secrets: list[str] = Field(
        default_factory=list,
        description="the names of the repo's secrets at submit: the job gets these and no other",
    )
    watch_runs: list[str] = Field(
        default_factory=list,
        description="runs of the repo whose artifacts are mirrored into $RUNS_DIR while it runs",
    )

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
    attempt: int = Field(default=1, description="which attempt of the job this state is about")
    supervisor_pid: int | None = Field(default=None, description="local: restarts attempts")
    supervisor_started: int | None = None
    instance_id: str | None = Field(default=None, description="cloud: the runner's instance")
    start_requested_at: float | None = Field(
        default=None, description="cloud: when a reader asked the compute to start this attempt"
    )
    version: int = Field(
        default=0, description="how many states of the job were recorded, this one included"
    )
    log_chunks: int | None = Field(
        default=None, description="how many log chunks the job wrote (set when it finishes)"
    )


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
    replace_tag: bool = Field(default=False, description="move ``tag`` if it exists already")
    job_count: int = 1
    compute: str = "local"
    repo: RepoSnapshot
    deps: list[Dependency] = Field(default_factory=list)
    restarted_from: str | None = Field(
        default=None, description="the run whose code, arguments and deps this run re-ran"
    )


class Tag(Model):
    """A name for artifacts that other workflows can depend on: a finished run's, or files
    uploaded from someone's machine. Lives under its repo; see ``dstack.state`` for keys."""

    name: str
    repo_id: str
    run_name: str | None = Field(default=None, description="the tagged run; None if uploaded")
    workflow: str | None = None
    job_count: int = Field(default=1, description="jobs of the tagged run")
    upload_id: str | None = Field(default=None, description="where uploaded files live")
    owner: Owner
    created_at: float
    artifacts: list[str] = Field(default_factory=list, description="top-level artifact paths")
    files: int = 0
    size: int = Field(default=0, description="bytes, all files")

    def as_dependency(self) -> Dependency:
        return Dependency(
            repo_id=self.repo_id,
            run_name=self.run_name,
            tag=self.name,
            workflow=self.workflow,
            upload_id=self.upload_id,
        )


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


class InfraRecord(Model):
    """One step of a run's cloud infrastructure: the plan shown before anything was created
    (``plan``), the result of creating it (``up``) or of destroying it (``destroy``). Written
    by the compute that drives the stack, shown by `dstack infra RUN`."""

    kind: str = Field(description="plan, up or destroy")
    stack: str
    project: str = "dstack"
    backend_url: str | None = Field(default=None, description="where the stack's state lives")
    at: float
    ok: bool = True
    by: str | None = Field(default=None, description="user@host that did it")
    summary: dict[str, int] = Field(default_factory=dict, description="changes by operation")
    resources: list[dict[str, Any]] = Field(
        default_factory=list, description="plan: every resource, its type, name and inputs"
    )
    diff: str = Field(default="", description="the engine's own text of the preview or update")
    offers: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="plan: by job index, the offer (type, market, zone, price) its instance is "
        "tried on",
    )
    outputs: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None


class StackRecord(Model):
    """Which run a cloud stack belongs to: written before the stack is created and deleted
    once it is destroyed, so `dstack prune` can find every stack, even of deleted runs."""

    stack: str
    repo_id: str
    run_name: str
    created_at: float
    backend_url: str
    region: str | None = None


class SecretRecord(Model):
    """A secret of a repo: injected into every job of the repo as the variable ``name`` and
    masked in its logs. Stored privately, never copied into a job or run record."""

    name: str
    value: str
    updated_at: float
    owner: str = "unknown"


class Rendezvous(Model):
    """Where the master (job 0) of a multi-node run listens, for the other nodes."""

    master_addr: str
    master_port: int
    master_hostname: str
    attempt: int = 1
    at: float


def dump(model: BaseModel) -> bytes:
    """Serialize a record for the store (compact JSON, UTF-8)."""
    return model.model_dump_json(exclude_none=False).encode()


def load(cls: type[Any], data: bytes) -> Any:
    return cls.model_validate_json(data)
