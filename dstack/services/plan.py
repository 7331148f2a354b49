"""`dstack run --plan`: what a run would create on a cloud, rendered offline. No printing, no
exits.

The run is prepared exactly as ``submit`` prepares it (``prepare_run``: the workflow validated,
the overrides applied, the repository snapshotted with its digest computed, nothing uploaded),
then handed to the cloud compute's ``plan``, which chooses each job's instance type and renders
the run stack without calling a cloud API. Nothing is written to the store and no credentials
are needed. What is only known at submit is shown as such: the run's name, and the values noted
in ``RunPlan.notes``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dstack.compute.base import RunPlan
from dstack.errors import ComputeError
from dstack.services.context import Context

if TYPE_CHECKING:
    from dstack.spec.overrides import RunOverrides

#: the name a planned run is shown under (the real one is allocated at submit)
PLAN_RUN_NAME = "planned-run-1"


def plan_run(
    ctx: Context,
    workflow_name: str,
    *,
    args: list[str] | None = None,
    overrides: RunOverrides | None = None,
    tag: str | None = None,
    wheel_key: str | None = None,
    submitted_at: float | None = None,
) -> RunPlan:
    """The run stack ``submit`` would create for this workflow, rendered offline by the cloud
    compute (``ctx.cloud``). ``wheel_key`` and ``submitted_at`` pin values that change between
    calls (tests)."""
    from dstack.services.prepare import prepare_run

    with prepare_run(
        ctx, workflow_name, args=args, overrides=overrides, submitted_at=submitted_at
    ) as prepared:
        jobs = prepared.jobs(PLAN_RUN_NAME)
    cloud = [job for job in jobs if not job.resources.local]
    if not cloud:
        raise ComputeError(
            f"workflow '{prepared.workflow.name}' runs on this machine (resources.local): "
            "there is nothing to plan on AWS"
        )
    compute = ctx.cloud
    run = prepared.record(PLAN_RUN_NAME, compute=compute.name, tag=tag)
    plan = compute.plan(ctx.storage, run, cloud, wheel_key=wheel_key)
    if prepared.workflow.deps:
        plan.notes.append("deps are resolved at submit: their artifacts become read-only grants")
    plan.notes.append(f"the run's name is chosen at submit; {PLAN_RUN_NAME} stands in for it")
    plan.warnings = prepared.warnings
    return plan
