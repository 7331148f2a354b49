"""Re-running a past run: ``restart`` submits a new run made of exactly what RUN ran.

A restart is a new run, never another attempt of the old one: a finished run's record, log,
artifacts and tag are evidence of what happened (tags and deps point at them), and attempts
belong to one submission's retry policy. The new run takes the old run's recorded job specs —
its code tree (``repo.code_key``), arguments, environment, resources, artifacts and resolved
deps — whatever the working tree holds now. Only the name, the submission time and the owner
(who restarts it) are new; ``${{ run.name }}``, which the provider wrote into the commands, is
the new name. No printing, no exits.
"""

from __future__ import annotations

import re
import time

from dstack import state
from dstack.errors import ComputeError, DstackError
from dstack.models import JobSpec, RunRecord
from dstack.services.context import Context
from dstack.services.names import allocate_run_name
from dstack.services.runs import Submission, create_and_start, get_run, who
from dstack.state import pins


def restart(ctx: Context, run_name: str) -> Submission:
    """Submit a new run with RUN's recorded code, arguments, environment and deps.

    Refused, with nothing written, when the run's code or one of its deps is no longer in the
    store. The old run is left as it is (it may even still be running).
    """
    view = get_run(ctx, run_name, refresh=False)
    old = view.run
    recorded = _pinned_jobs(ctx, old, view.jobs)
    if not ctx.storage.exists(old.repo.code_key):
        raise DstackError(
            f"run {run_name}: its code ({old.repo.code_key}) is no longer in the store, so it "
            "cannot be restarted; run the workflow again with `dstack run`"
        )
    for dep in old.deps:
        if dep.run_name is not None and not _run_exists(ctx, dep.repo_id, dep.run_name):
            raise DstackError(
                f"run {run_name}: its dep {dep.run_name} ({dep.repo_id}) was removed, so it "
                "cannot be restarted with the same inputs"
            )
    ctx.compute.check([_renamed(job, run_name, "validating-run-0", job.submitted_at)
                       for job in recorded])  # fmt: skip
    new_name = allocate_run_name(ctx.storage)
    now = time.time()
    jobs = [_renamed(job, run_name, new_name, now) for job in recorded]
    owner = who(ctx)
    record = RunRecord(
        run_name=new_name,
        repo_id=old.repo_id,
        workflow=old.workflow,
        provider=old.provider,
        submitted_at=now,
        owner=owner,
        args=list(old.args),
        job_count=old.job_count,
        compute=ctx.compute.name,
        repo=old.repo,
        deps=list(old.deps),
        restarted_from=run_name,
    )
    create_and_start(ctx, record, jobs)
    return Submission(run=record, jobs=jobs)


def _pinned_jobs(ctx: Context, run: RunRecord, jobs: list[JobSpec]) -> list[JobSpec]:
    """The run's specs as its submitter wrote them: checked against their pins when this
    machine submitted the run (a spec rewritten in the store since is refused), as found
    otherwise (the restarting user then submits what the store holds, as `ps RUN` shows it)."""
    if pins.recall(ctx.storage, run.repo_id, run.run_name, 0) is None:
        return jobs
    try:
        specs, _ = pins.pinned_run_specs(
            ctx.storage, run.repo_id, run.run_name, run.job_count, jobs
        )
    except ComputeError as exc:
        raise DstackError(f"run {run.run_name} cannot be restarted: {exc}") from None
    return specs


def _run_exists(ctx: Context, repo_id: str, run_name: str) -> bool:
    return ctx.storage.exists(state.run_key(repo_id, run_name))


def _renamed(job: JobSpec, old_name: str, new_name: str, submitted_at: float) -> JobSpec:
    """``job`` under ``new_name``: the old name where ``${{ run.name }}`` put it (whole words
    of the commands, setup and environment values) becomes the new one."""
    word = re.compile(rf"(?<![\w-]){re.escape(old_name)}(?![\w-])")

    def swap(text: str) -> str:
        return word.sub(new_name, text)

    return job.model_copy(
        update={
            "run_name": new_name,
            "submitted_at": submitted_at,
            "commands": [swap(c) for c in job.commands],
            "setup": [swap(c) for c in job.setup],
            "env": {key: swap(value) for key, value in job.env.items()},
        },
        deep=True,
    )
