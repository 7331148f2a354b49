"""What a cloud run spent: per node and attempt, its instance's start and end × its price.

A ``RunSpend`` is stored next to the run's infrastructure records (``keys.spend_key``), outside
the run's own prefix, so a job cannot rewrite what its run cost. The compute that destroys the
run's stack writes it, refined with what the cloud says of each instance (launch and
termination times, type, market, zone, spot price history); ``final`` says it was written once
every job had ended.

Until then (a run still running, or finished but not yet released), ``estimate`` derives the
same record from the store alone: each attempt's node from its runner's first heartbeat
(``started_at``) to its end (``finished_at``; the instance powers itself off then) or ``now``,
at the price quoted at submit. Local jobs cost nothing and have no node here.
"""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import Field

from dstack.errors import DstackError
from dstack.models import JobSpec, JobState, Model, RunRecord, dump
from dstack.state.jobs import list_attempts
from dstack.state.keys import INFRA_RECORDS_PREFIX, spend_key
from dstack.state.records import load_record
from dstack.state.runs import read_job_spec, read_job_state
from dstack.storage.base import Storage


class NodeSpend(Model):
    """One instance of one attempt of one job: how long it ran, and at what price."""

    job_index: int
    attempt: int = 1
    instance_id: str | None = None
    instance_type: str | None = None
    market: str | None = Field(default=None, description="spot or on-demand, when known")
    availability_zone: str | None = None
    price_per_hour: float = Field(description="USD per hour")
    price_source: str = Field(
        default="quoted",
        description="quoted (the price the plan recorded at submit), offer (the price of "
        "the offer a walk across offers created it on) or spot-history (the zone's spot "
        "prices over the instance's life, averaged by time)",
    )
    started_at: float = Field(description="the instance's launch, else the runner's start")
    ended_at: float | None = Field(default=None, description="None while it runs")
    start_from: str = Field(default="runner", description="launch (EC2) or runner")
    end_from: str | None = Field(
        default=None, description="ec2 (its termination), runner (its job's end), destroy"
    )

    def hours(self, now: float) -> float:
        end = self.ended_at if self.ended_at is not None else now
        return max(0.0, end - self.started_at) / 3600

    def cost(self, now: float) -> float:
        return self.price_per_hour * self.hours(now)


class RunSpend(Model):
    """What a cloud run spent, node by node."""

    repo_id: str
    run_name: str
    recorded_at: float
    final: bool = Field(default=False, description="every job had ended when it was written")
    owner: str = Field(default="", description="the run's owner, as `ps` shows it")
    submitted_at: float = 0.0
    removed: bool = Field(
        default=False, description="kept when the run was removed (`dstack rm`): what it spent"
    )
    active: bool = Field(
        default=False, description="a job was unfinished (an instance may be booting)"
    )
    nodes: list[NodeSpend] = Field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.active or any(node.ended_at is None for node in self.nodes)

    def total(self, now: float) -> float:
        """USD: every node's time × its price (a running node counts up to ``now``)."""
        return sum(node.cost(now) for node in self.nodes)


def write_spend(storage: Storage, spend: RunSpend) -> None:
    storage.put(spend_key(spend.repo_id, spend.run_name), dump(spend))


def read_spend(storage: Storage, repo_id: str, run_name: str) -> RunSpend | None:
    key = spend_key(repo_id, run_name)
    data = storage.get_or_none(key)
    return None if data is None else load_record(RunSpend, data, key)


def keep_on_removal(storage: Storage, run: RunRecord, now: float) -> None:
    """Before a cloud run is removed: what it spent stays in the store (its final record, else
    its estimate), so sums and budgets still count it; it is deleted with the rest otherwise."""
    if run.compute == "local":
        return
    found = spend_of(storage, run, now)
    if found is not None:
        write_spend(storage, found.model_copy(update={"removed": True}))


def cloud_runs(storage: Storage, repo_id: str) -> dict[str, bool]:
    """The repo's runs that have cloud infrastructure records, each with whether its spend is
    recorded: one listing, so `ps` knows which runs cost nothing without reading them. A
    removed run's spend is listed too (see ``removed_runs``)."""
    return {name: "spend.json" in kept for name, kept in _records(storage, repo_id).items()}


def removed_runs(storage: Storage, repo_id: str) -> list[str]:
    """The repo's removed cloud runs whose spend was kept: nothing else of them is left."""
    return [name for name, kept in _records(storage, repo_id).items() if kept == {"spend.json"}]


def spending_repos(storage: Storage) -> Iterator[str]:
    """Every repo with cloud runs' records, removed runs' kept spend included (a repo whose
    runs were all removed has nothing left under ``repos/``). A skip scan, as
    ``state.repos.list_repos``: one list request per repo."""
    after: str | None = None
    while True:
        info = next(iter(storage.list_objects(INFRA_RECORDS_PREFIX, after=after)), None)
        if info is None:
            return
        segments = info.key[len(INFRA_RECORDS_PREFIX) :].split("/")
        if len(segments) < 3:  # not a record of a run: step over it alone
            after = info.key
            continue
        repo_id = "/".join(segments[:-2])
        yield repo_id
        after = f"{INFRA_RECORDS_PREFIX}{repo_id}0"  # past every key under ".../<repo>/"


def _records(storage: Storage, repo_id: str) -> dict[str, set[str]]:
    prefix = f"{INFRA_RECORDS_PREFIX}{repo_id}/"
    found: dict[str, set[str]] = {}
    for info in storage.list_objects(prefix):
        run_name, _, name = info.key[len(prefix) :].partition("/")
        if run_name and name and "/" not in name:
            found.setdefault(run_name, set()).add(name)
    return found


def spend_of(storage: Storage, run: RunRecord, now: float) -> RunSpend | None:
    """The run's spend: its final record, else an ``estimate``; None for a run that ran no
    cloud instance (a local run costs nothing)."""
    if run.compute == "local":
        return None
    recorded = read_spend(storage, run.repo_id, run.run_name)
    if recorded is not None and recorded.final:  # whose and when: as the run says
        return recorded.model_copy(
            update={"owner": run.owner.display, "submitted_at": run.submitted_at}
        )
    return estimate(storage, run, now)


def estimate(storage: Storage, run: RunRecord, now: float) -> RunSpend:
    """The run's spend from the store alone: each attempt of each cloud job whose runner
    started, from that start to its end (or ``now``), at the price quoted at submit."""
    nodes: list[NodeSpend] = []
    active = False
    for index in range(run.job_count):
        try:
            spec = read_job_spec(storage, run.repo_id, run.run_name, index)
            current = read_job_state(storage, run.repo_id, run.run_name, index)
            ended = list_attempts(storage, spec)
        except DstackError:
            continue  # a damaged or half-removed job counts for nothing
        if spec.resources.local:
            continue
        active = active or current.status.is_active
        for job_state in _attempts(ended, current):
            node = node_of(spec, job_state)
            if node is not None:
                nodes.append(node)
    return RunSpend(
        repo_id=run.repo_id, run_name=run.run_name, recorded_at=now, final=False, nodes=nodes,
        owner=run.owner.display, submitted_at=run.submitted_at, active=active,
    )  # fmt: skip


def node_of(spec: JobSpec, job_state: JobState) -> NodeSpend | None:
    """The node of one attempt, as its runner recorded it; None if its runner never started
    or no price was quoted."""
    if job_state.started_at is None or spec.price_per_hour is None:
        return None
    ended_at = job_state.finished_at
    if ended_at is None and job_state.status.is_finished:
        ended_at = job_state.updated_at or job_state.started_at
    return NodeSpend(
        job_index=spec.job_index,
        attempt=job_state.attempt,
        instance_id=job_state.instance_id,
        market=_market(spec),
        price_per_hour=spec.price_per_hour,
        started_at=job_state.started_at,
        ended_at=ended_at,
        end_from="runner" if ended_at is not None else None,
    )


def _attempts(ended: list[JobState], current: JobState) -> Iterator[JobState]:
    seen = set()
    for job_state in [*ended, current]:
        if job_state.attempt not in seen:
            seen.add(job_state.attempt)
            yield job_state


def _market(spec: JobSpec) -> str | None:
    policy = spec.spot_policy or ("spot" if spec.resources.interruptible else "on-demand")
    return policy if policy in ("spot", "on-demand") else None  # auto: the cloud says which
