"""What each page shows, read from the store through the CLI's services. No HTTP here.

Nothing here writes: runs are read without the dead-runner check that `dstack ps` does (that
check records a state), so a page shows what the store says.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from dstack import state
from dstack.errors import StorageError
from dstack.models import Dependency, JobSpec, JobState, JobStatus, RunSummary, Tag
from dstack.services import artifacts as artifact_service
from dstack.services import runs as run_service
from dstack.services import spend as spend_service
from dstack.services.context import Context
from dstack.services.runs import RunView
from dstack.services.tags import tags_by_run
from dstack.state.spend import RunSpend
from dstack.storage.base import Storage

PAGE_SIZE = 50
_READERS = 8  # parallel record reads (S3 round trips)


@dataclass
class Filters:
    status: str = ""
    workflow: str = ""
    owner: str = ""

    def accepts(self, run: RunSummary) -> bool:
        if self.status == "active" and run.status.is_finished:
            return False
        if self.status not in ("", "active") and run.status.value != self.status:
            return False
        if self.workflow and run.workflow != self.workflow:
            return False
        return not self.owner or self.owner.lower() in run.owner.lower()


@dataclass
class RunRow:
    summary: RunSummary
    tags: list[str]
    attempts: int
    duration: float
    #: what it spent (None: nothing, a local run)
    spend: RunSpend | None = None


@dataclass
class RunsPage:
    repo_id: str
    rows: list[RunRow]
    page: int
    has_more: bool

    @property
    def any_active(self) -> bool:
        return any(not row.summary.status.is_finished for row in self.rows)


@dataclass
class RepoRow:
    repo_id: str
    latest: RunSummary | None
    active: int


@dataclass
class JobDetail:
    spec: JobSpec
    state: JobState
    attempts: list[JobState]


@dataclass
class RunDetail:
    view: RunView
    jobs: list[JobDetail]
    tags: list[str]
    artifacts: list[artifact_service.ArtifactFile]
    has_infra: bool
    deps: list[Dependency] = field(default_factory=list)
    artifacts_problem: str = ""
    spend: RunSpend | None = None

    @property
    def status(self) -> JobStatus:
        return self.view.status


def repo_context(ctx: Context, repo_id: str) -> Context:
    """The same store and compute, pointed at ``repo_id`` instead of the current folder."""
    return Context(
        storage=ctx.storage, compute=ctx.compute, repo_path=ctx.repo_path, _repo_id=repo_id
    )


def repos(ctx: Context) -> list[RepoRow]:
    ids = list(state.list_repos(ctx.storage))

    def row(repo_id: str) -> RepoRow:
        latest = state.list_runs(ctx.storage, repo_id, limit=1)
        active = state.list_active_runs(ctx.storage, repo_id)
        return RepoRow(repo_id, latest[0] if latest else None, len(active))

    with ThreadPoolExecutor(_READERS) as pool:
        return list(pool.map(row, ids))


def runs_page(ctx: Context, repo_id: str, filters: Filters, page: int = 1) -> RunsPage:
    """One page of a repo's runs, newest first; reads only as far as the page needs."""
    page = max(page, 1)
    skip = (page - 1) * PAGE_SIZE
    picked: list[RunSummary] = []
    has_more = False
    for run in _matching(ctx.storage, repo_id, filters):
        if skip:
            skip -= 1
            continue
        if len(picked) == PAGE_SIZE:
            has_more = True
            break
        picked.append(run)
    tagged = tags_by_run(ctx.storage, repo_id) if picked else {}
    costs = spend_service.costs_of(repo_context(ctx, repo_id), picked) if picked else {}
    now = time.time()

    def row(run: RunSummary) -> RunRow:
        first = state.read_job_state(ctx.storage, repo_id, run.run_name, 0)
        end = run.updated_at if run.status.is_finished else now
        return RunRow(
            run,
            tagged.get(run.run_name, []),
            first.attempt,
            max(end - run.submitted_at, 0),
            costs.get(run.run_name),
        )

    with ThreadPoolExecutor(_READERS) as pool:
        rows = list(pool.map(row, picked))
    return RunsPage(repo_id, rows, page, has_more)


def _matching(storage: Storage, repo_id: str, filters: Filters) -> Iterator[RunSummary]:
    return (run for run in state.iter_runs(storage, repo_id) if filters.accepts(run))


def run_detail(ctx: Context, repo_id: str, run_name: str) -> RunDetail:
    repo_ctx = repo_context(ctx, repo_id)
    view = run_service.get_run(repo_ctx, run_name, refresh=False)
    jobs = [
        JobDetail(spec, job_state, [*state.list_attempts(ctx.storage, spec), job_state])
        for spec, job_state in zip(view.jobs, view.states, strict=True)
    ]
    tagged = tags_by_run(ctx.storage, repo_id).get(run_name, [])
    problem = ""
    try:
        files = artifact_service.list_artifacts(repo_ctx, view)
    except (
        StorageError,
        UnicodeError,
    ) as exc:  # a name the store cannot list: say so, show the rest
        files, problem = [], f"The artifacts of {run_name} cannot be listed: {exc}"
    has_infra = bool(state.read_infra_records(ctx.storage, repo_id, run_name))
    return RunDetail(view, jobs, tagged, files, has_infra, deps=list(view.run.deps),
                     artifacts_problem=problem,
                     spend=spend_service.spend_of(repo_ctx, view.run))  # fmt: skip


def tags_of(storage: Storage, repo_id: str) -> list[Tag]:
    return state.list_tags(storage, repo_id)
