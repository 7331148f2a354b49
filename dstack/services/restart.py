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
from dstack.lifecycle import Writer, set_state
from dstack.models import JobSpec, JobState, JobStatus, RunRecord
from dstack.services.context import Context
from dstack.services.names import allocate_run_name
from dstack.services.runs import Submission, get_run, who


def restart(ctx: Context, run_name: str) -> Submission:
    """Submit a new run with RUN's recorded code, arguments, environment and deps.

    Refused, with nothing written, when the run's code or one of its deps is no longer in the
    store. The old run is left as it is (it may even still be running).
    """
    view = get_run(ctx, run_name, refresh=False)
    old = view.run
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
                       for job in view.jobs])  # fmt: skip
    new_name = allocate_run_name(ctx.storage)
    now = time.time()
    jobs = [_renamed(job, run_name, new_name, now) for job in view.jobs]
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
    state.create_run(ctx.storage, record, jobs)
    for job in jobs:
        try:
            ctx.compute.start(ctx.storage, job)
        except ComputeError as exc:
            failed = JobState(status=JobStatus.FAILED, reason=str(exc), updated_at=time.time())
            set_state(ctx.storage, job, owner.display, Writer.SUBMITTER, failed)
            raise
    return Submission(run=record, jobs=jobs)


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
