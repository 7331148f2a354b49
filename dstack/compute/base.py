"""The compute seam: ``Compute``, where jobs run (this machine, or AWS through Pulumi).

Services talk to this interface only; ``dstack.compute.open_compute`` picks the implementation
from the store config, so no service names a cloud.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dstack.errors import ComputeError
from dstack.models import JobSpec, JobState, RunRecord
from dstack.storage.base import Storage


@dataclass(frozen=True)
class StartFailure:
    """A runner that will never start: one line saying why, and what the user should see of
    how it went (for the job's log)."""

    reason: str
    log: str = ""


@dataclass
class PlannedJob:
    job_index: int
    workflow: str
    instance_type: str
    instance: str
    spot: bool
    price_per_hour: float
    #: what the job asked for, sizes shown in MiB too (binary units: 64GB is 65,536 MiB)
    request: str = ""
    #: the market of the offer it starts on (spot or on-demand), and that offer's zone
    market: str = ""
    availability_zone: str | None = None
    #: ``live`` (the cloud's price APIs) or ``catalog`` (the shipped list prices)
    price_source: str = ""
    spot_policy: str = ""
    #: every offer, in the order tried: {instance_type, market, availability_zone, price_per_hour}
    offers: list[dict[str, Any]] = field(default_factory=list)
    #: how long the instance may live, in hours, and the most it can cost in that time
    max_duration_hours: float = 0.0
    max_cost: float = 0.0
    #: the instance type's GPUs (all of them are paid for, whatever the job asked)
    gpu_count: int = 0
    gpu_name: str | None = None
    vcpus: int = 0
    memory_mib: int = 0
    #: the GPUs the job asked for
    requested_gpus: int = 0


@dataclass
class RunPlan:
    """What a cloud run would create, rendered offline (``Compute.plan``)."""

    workflow: str
    run_name: str
    stack: str
    project: str
    backend_url: str
    region: str
    jobs: list[PlannedJob]
    #: rendered resources, each with ``component``, ``as_dict()`` and the rest the CLI shows
    resources: list[Any]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: the run's worst case in USD (price × nodes × max_duration), and its arithmetic
    max_cost: float = 0.0
    cost: str = ""

    @property
    def cloud_resources(self) -> list[Any]:
        return [r for r in self.resources if not r.component]

    def as_dict(self) -> dict[str, Any]:
        return {
            "workflow": self.workflow,
            "run": self.run_name,
            "stack": self.stack,
            "project": self.project,
            "backend_url": self.backend_url,
            "region": self.region,
            "jobs": [job.__dict__ for job in self.jobs],
            "max_cost": round(self.max_cost, 4),
            "resources": [r.as_dict() for r in self.resources],
            "notes": self.notes,
        }


class Compute(ABC):
    """Where jobs run. A Compute starts runners; it never talks to a runner directly — the
    runner reads its JobSpec from the store and writes its state, logs and artifacts back."""

    name: str = "abstract"
    #: whether this compute creates infrastructure that costs money until released (a cloud)
    is_cloud: bool = False
    #: how long a job may stay ``submitted`` with no runner before it is recorded as failed
    #: (a cloud instance takes minutes to boot and install dstack)
    start_timeout: float = 30.0
    #: where a compute that takes long to start says what it is doing, one line at a time
    #: (the CLI points it at the terminal; services never print)
    reporter: Callable[[str], None] | None = None

    @abstractmethod
    def check(self, jobs: list[JobSpec]) -> None:
        """Raise ``ComputeError`` if these jobs cannot run here (no GPU, no python X.Y, no Docker
        engine…). Called at submit, before anything is written. Fast and side-effect free."""

    def quote(
        self, storage: Storage, jobs: list[JobSpec], owner: str
    ) -> dict[int, tuple[float, float]]:
        """After ``check``, at submit: refuse (``ComputeError``, before anything is written)
        jobs whose worst-case cost a budget does not allow, and return, per job index, the
        price per hour and the seconds it was quoted for (recorded on its spec). A compute
        that costs nothing returns ``{}``."""
        return {}

    @abstractmethod
    def start(self, storage: Storage, run: RunRecord, jobs: list[JobSpec]) -> None:
        """Start the runners of ``jobs`` of ``run`` against ``storage`` and return without
        waiting for them: every job of the run at submit, the job of a next attempt at a
        retry. One call per run, whatever the compute starts per job (a process here) or per
        run (a cloud stack holding every job).

        The jobs' specs and ``submitted`` states are already in the store. Raises
        ``ComputeError`` if the runners could not be started (nothing is left running for
        the jobs it names, ``ComputeError.job_indices``; all of ``jobs`` when None).
        """

    @abstractmethod
    def is_alive(self, state: JobState) -> bool | None:
        """Whether the runner that owns ``state`` is still alive: True, False, or None when this
        compute cannot tell (then the heartbeat decides). Fast; never blocks on the network."""

    def start_failure(
        self, storage: Storage, spec: JobSpec, state: JobState
    ) -> StartFailure | None:
        """Why the runner of a ``submitted`` job will never start, when the compute can tell
        before ``start_timeout`` (a cloud instance whose boot failed), else None. Cheap enough
        to ask at every look at the job (it may answer from a cache)."""
        return None

    @abstractmethod
    def kill(self, state: JobState) -> None:
        """Stop the job's processes at once, without saving anything (``dstack stop -x``).
        Idempotent; a job that is already gone is not an error."""

    def release(self, storage: Storage, run: RunRecord) -> bool:
        """Free what a finished run still holds once its final states and artifacts are in the
        store (a cloud run's stack: its security group, role, and instance if it lingers).

        Called by whoever sees the run finished: an attached `dstack run`, `dstack stop`,
        `dstack prune`. Idempotent; blocking (minutes on a cloud); returns whether anything
        was released. Raises ``ComputeError`` if it could not be (then it is left for
        `dstack prune`). Nothing to do by default.
        """
        return False

    # Capabilities that only a cloud has; services call them without knowing which cloud.

    def plan(
        self,
        storage: Storage,
        run: RunRecord,
        jobs: list[JobSpec],
        *,
        wheel_key: str | None = None,
    ) -> RunPlan:
        """What starting ``jobs`` would create, rendered offline: nothing is written to the
        store and no cloud API is called. ``wheel_key`` pins the stored wheel's key (tests).
        Raises ``ComputeError`` for a compute that creates nothing."""
        raise ComputeError(f"{self.name} compute creates no infrastructure: nothing to plan")

    def prune(self, storage: Storage, *, dry_run: bool = False) -> Any:
        """Find what finished or deleted runs left behind and destroy it (unless ``dry_run``);
        a report of what was found and done. Blocking; idempotent."""
        raise ComputeError(f"{self.name} compute leaves nothing behind to prune")

    def configure(self, storage: Storage, *, kms_key_id: str | None = None) -> Any:
        """Create or adopt what every run of this compute shares (a cloud's bootstrap stack);
        its outputs, to be saved in the config file. Blocking; idempotent."""
        raise ComputeError(f"{self.name} compute needs no set-up")
