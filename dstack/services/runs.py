"""Submitting, finding, listing, stopping and removing runs. No printing, no exits."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dstack import settings, state
from dstack.errors import (
    DamagedRecordError,
    DstackError,
    InvalidStateError,
    RunInterrupted,
    RunNotFoundError,
    TagExistsError,
)
from dstack.lifecycle import ABORT_REASON, Writer, move
from dstack.models import JobSpec, JobState, JobStatus, Owner, RunRecord, RunSummary, Tag
from dstack.services import apps, monitor, secrets
from dstack.services.context import Context
from dstack.services.names import allocate_run_name
from dstack.services.starts import start_jobs
from dstack.state import actions, pins, spend

if TYPE_CHECKING:  # the workflow files' models are loaded by `submit` only
    from dstack.spec.overrides import RunOverrides


#: ``submit``'s ``existing_tag`` when the caller has not looked the tag up
UNREAD: object = object()


@dataclass
class Submission:
    run: RunRecord
    jobs: list[JobSpec]
    warnings: list[str] = field(default_factory=list)
    code_uploaded: bool = False


@dataclass
class RunView:
    """A run with its jobs' specs and current states."""

    run: RunRecord
    jobs: list[JobSpec]
    states: list[JobState]

    @property
    def status(self) -> JobStatus:
        from dstack.models import run_status

        return run_status([s.status for s in self.states])


def submit(
    ctx: Context,
    workflow_name: str,
    *,
    args: list[str] | None = None,
    overrides: RunOverrides | None = None,
    tag: str | None = None,
    replace_tag: bool = False,
    existing_tag: Tag | object | None = UNREAD,
) -> Submission:
    """Validate everything, then write the run and start its jobs.

    Nothing is written to the store until the workflow, the code snapshot, the compute's
    checks and the deps have all passed (bad input leaves no trace). Deps are resolved to runs
    here and recorded on the run and its jobs. With ``tag``, the runner tags the run when it
    succeeds; a tag that exists already is refused unless ``replace_tag``
    (``existing_tag``: the tag as the caller just read it, None if absent, not read again).
    """
    from dstack.repo import store_code
    from dstack.services import deps as dep_resolver
    from dstack.services.prepare import prepare_run

    if tag is not None:
        state.validate_tag_name(tag)
    with prepare_run(ctx, workflow_name, args=args, overrides=overrides) as prepared:
        workflow, repo_id = prepared.workflow, prepared.repo.repo_id
        ctx.know_repo(repo_id)
        from_flags = overrides is not None and overrides.deps is not None
        where = "--dep" if from_flags else f"{workflow.source}: workflow {workflow.name!r}: deps"
        ctx.compute.check(prepared.draft)
        quotes = ctx.compute.quote(ctx.storage, prepared.draft, prepared.owner.display)
        apps.check_watched_runs(ctx.storage, repo_id, prepared.draft)  # tensorboard RUN…
        resolved = dep_resolver.resolve(ctx.storage, repo_id, workflow.deps, where=where)
        if tag is not None and not replace_tag:
            existing = (
                state.read_tag(ctx.storage, repo_id, tag)
                if existing_tag is UNREAD
                else existing_tag
            )
            if isinstance(existing, Tag):
                raise TagExistsError(
                    f"-t {tag}: the tag exists ({state.describe_tag(existing)}); confirm moving "
                    f"it in a terminal, or delete it first (`dstack tags delete {tag}`)"
                )
        progress = ctx.code_progress
        stored = store_code(
            ctx.storage, prepared.snapshot, cache_dir=settings.cache_dir(),
            on_start=progress.storing if progress else None,
            progress=progress.sent if progress else None,
        )  # fmt: skip
        if progress is not None:
            progress.done()
    run_name = allocate_run_name(ctx.storage)
    jobs = prepared.jobs(run_name)
    secret_names = secrets.givable_names(ctx.storage, repo_id)
    for job in jobs:
        job.deps = list(resolved)
        if job.job_index in quotes:  # what budgets count this run at (compute.quote)
            job.price_per_hour, job.max_duration = quotes[job.job_index]
        job.secrets = list(secret_names)  # pinned with the spec: no secret added later is given
    record = prepared.record(
        run_name, compute=ctx.compute.name, tag=tag, replace_tag=replace_tag, deps=resolved
    )
    warnings = prepared.warnings
    create_and_start(ctx, record, jobs)
    return Submission(run=record, jobs=jobs, warnings=warnings, code_uploaded=stored.tree_stored)


def create_and_start(ctx: Context, record: RunRecord, jobs: list[JobSpec]) -> None:
    """Write the run and its pinned specs, then start its jobs (a failed start fails them, or
    starts their next attempt: ``retry: no-capacity``). A Ctrl+C once the run is written is
    ``RunInterrupted``: whoever submitted it decides its fate."""
    digests = state.create_run(ctx.storage, record, jobs)
    try:
        pins.remember(ctx.storage, record.repo_id, record.run_name, digests)  # later attempts
        start_jobs(ctx.storage, ctx.compute, record, jobs, Writer.SUBMITTER)
    except KeyboardInterrupt as exc:
        raise RunInterrupted(record.run_name) from exc


def view_of(ctx: Context, submission: Submission) -> RunView:
    """The run just submitted, as written (its record and specs are not read again), with
    its jobs' current states."""
    run = submission.run
    states = [
        state.read_job_state(ctx.storage, run.repo_id, run.run_name, job.job_index)
        for job in submission.jobs
    ]
    return RunView(run=run, jobs=submission.jobs, states=states)


def read_run_record(ctx: Context, run_name: str) -> RunRecord:
    """The run's record; ``RunNotFoundError`` saying who removed it and when, if someone did."""
    try:
        return state.read_run(ctx.storage, ctx.repo_id, run_name)
    except RunNotFoundError as exc:
        removal = actions.read_removal(ctx.storage, ctx.repo_id, run_name)
        if removal is None:
            guess = _closest_run_name(ctx, run_name)
            if guess is None:
                raise
            raise RunNotFoundError(f"{exc}; did you mean {guess}?") from None
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(removal.at or 0))
        raise RunNotFoundError(f"run {run_name} was removed by {removal.who} at {when}") from None


def _closest_run_name(ctx: Context, run_name: str) -> str | None:
    """The name among the repo's newest 500 runs that ``run_name`` most likely mistypes."""
    import difflib

    names = [run.run_name for run in state.list_runs(ctx.storage, ctx.repo_id, limit=500)]
    found = difflib.get_close_matches(run_name, names, n=1, cutoff=0.75)
    return found[0] if found else None


def get_run(ctx: Context, run_name: str, *, refresh: bool = True) -> RunView:
    """A run with its jobs, each state checked for a dead runner when ``refresh``."""
    run = read_run_record(ctx, run_name)
    jobs = [
        state.read_job_spec(ctx.storage, run.repo_id, run.run_name, i) for i in range(run.job_count)
    ]
    states = [
        state.read_job_state(ctx.storage, run.repo_id, run.run_name, i)
        for i in range(run.job_count)
    ]
    if refresh:
        states = [
            monitor.refresh(ctx.storage, ctx.compute, run, job, st)
            for job, st in zip(jobs, states, strict=True)
        ]
    return RunView(run=run, jobs=jobs, states=states)


def attempts_of(ctx: Context, view: RunView) -> list[JobState]:
    """The attempts of the run's first job: the ended ones kept by ``retry``, then the current."""
    return [*state.list_attempts(ctx.storage, view.jobs[0]), view.states[0]]


def list_runs(
    ctx: Context, *, all_runs: bool = False, limit: int | None = None
) -> list[RunSummary]:
    """Runs of the current repo, newest first.

    Without ``all_runs``: the unfinished runs plus the most recent one. Unfinished runs are
    checked for a dead runner (and recorded as such) before they are shown.
    """
    if all_runs:
        return state.list_runs(ctx.storage, ctx.repo_id, limit=limit)
    active = state.list_active_runs(ctx.storage, ctx.repo_id)
    refreshed = []
    for summary in active:
        view = get_run(ctx, summary.run_name)
        if view.status.is_finished:
            summary = summary.model_copy(update={"status": view.status})
        refreshed.append(summary)
    latest = state.list_runs(ctx.storage, ctx.repo_id, limit=1)
    names = {r.run_name for r in refreshed}
    runs = refreshed + [r for r in latest if r.run_name not in names]
    runs.sort(key=lambda r: r.submitted_at, reverse=True)
    return runs[:limit] if limit else runs


def stop(ctx: Context, run_name: str, *, abort: bool = False, wait: float = 60.0) -> RunView:
    """Ask every unfinished job of the run to stop; with ``abort``, kill them at once.

    A graceful stop waits (up to ``wait`` seconds) for the runner to save artifacts and
    record ``stopped``. A job whose runner is gone is recorded as stopped directly.
    """
    view = get_run(ctx, run_name)
    owner = view.run.owner.display
    for job, job_state in zip(view.jobs, view.states, strict=True):
        if job_state.status.is_finished:
            continue
        state.request_stop(ctx.storage, job, abort=abort, by=who(ctx))
        if abort:
            ctx.compute.kill(job_state)
            now = time.time()
            aborted = {"status": JobStatus.ABORTED, "reason": ABORT_REASON,
                       "updated_at": now, "finished_at": now}  # fmt: skip
            move(ctx.storage, job, owner, Writer.STOPPER, _updated(aborted))
        elif ctx.compute.is_cloud:
            # an instance still booting has nothing to save: the job ends now (if its runner
            # has not started meanwhile), so its stack can go at once instead of in minutes
            move(ctx.storage, job, owner, Writer.STOPPER, _unstarted_ended)
    if abort:
        return get_run(ctx, run_name, refresh=False)
    deadline = time.monotonic() + wait
    while True:
        view = get_run(ctx, run_name)
        if all(s.status.is_finished for s in view.states) or time.monotonic() > deadline:
            return view
        time.sleep(ctx.storage.poll_interval)


#: why a cloud job stopped before its runner started is recorded as aborted
UNSTARTED_REASON = "stopped before its runner started (nothing to save)"


def _unstarted_ended(current: JobState) -> JobState | None:
    """``current`` recorded as ended, if no runner has taken it yet; else None (the runner
    stops it and saves what it made)."""
    if current.status is not JobStatus.SUBMITTED or current.runner_pid or current.instance_id:
        return None
    if current.supervisor_pid:
        return None
    now = time.time()
    return current.model_copy(update={"status": JobStatus.ABORTED, "reason": UNSTARTED_REASON,
                                      "updated_at": now, "finished_at": now})  # fmt: skip


def _updated(fields: dict[str, object]) -> Callable[[JobState], JobState]:
    return lambda current: current.model_copy(update=fields)


def remove(ctx: Context, run_name: str, *, tagged: dict[str, list[str]] | None = None) -> None:
    """Delete a finished run with its logs and artifacts. A run that a tag points at is
    refused, naming the tags (``tagged``: ``state.tags_by_run``, if the caller has it)."""
    try:
        view = get_run(ctx, run_name)
    except DamagedRecordError:
        refuse_if_tagged(
            run_name, state.tags_by_run(ctx.storage, ctx.repo_id) if tagged is None else tagged
        )
        state.delete_damaged_run(ctx.storage, ctx.repo_id, run_name)
        actions.record_removal(ctx.storage, ctx.repo_id, run_name, who(ctx))
        return
    if not view.status.is_finished:
        raise InvalidStateError(
            f"run {run_name} is {view.status.value}: stop it first (`dstack stop {run_name}`)"
        )
    refuse_if_tagged(
        run_name, state.tags_by_run(ctx.storage, view.run.repo_id) if tagged is None else tagged
    )
    spend.keep_on_removal(ctx.storage, view.run, time.time())
    state.delete_run(ctx.storage, view.run)
    actions.record_removal(ctx.storage, view.run.repo_id, run_name, who(ctx))


def who(ctx: Context) -> Owner:
    """The user acting through ``ctx``: their git identity in the repo, and this machine's."""
    from dstack.repo import find_repo_root, read_owner

    try:
        return read_owner(find_repo_root(ctx.repo_path))
    except DstackError:
        return read_owner(ctx.repo_path)


def refuse_if_tagged(run_name: str, tagged: dict[str, list[str]]) -> None:
    """``InvalidStateError`` naming the tags that point at the run, if any."""
    if names := tagged.get(run_name):
        raise InvalidStateError(
            f"run {run_name} is tagged {', '.join(names)}: the tag points at its artifacts; "
            f"delete the tag first (`dstack tags delete {names[0]}`)"
        )


def runs_left_under_local_id(ctx: Context) -> str | None:
    """When this repo now has a remote but runs were made before it had one, under
    ``local/<folder>``: that id (they do not show under the new one), else None."""
    from dstack.repo import find_repo_root
    from dstack.repo.remote import local_repo_id

    old = local_repo_id(find_repo_root(ctx.repo_path))
    if ctx.repo_id == old:
        return None
    return old if state.list_runs(ctx.storage, old, limit=1) else None
