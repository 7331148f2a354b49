"""A cloud run's infrastructure: its records, releasing it, and pruning leftovers.

No printing, no exits. ``show`` reads what `dstack infra RUN` prints: the plan recorded before
anything was created, the outputs of ``up``, the destroy result, the instances' boot logs.
``release`` destroys a finished run's stack (the compute decides whether it has one).
``prune`` finds what finished or deleted runs left on the cloud and destroys it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dstack import state
from dstack.models import InfraRecord, RunRecord
from dstack.services.context import Context


@dataclass
class InfraView:
    run: RunRecord
    records: list[InfraRecord]
    #: the stack still exists as far as the store knows (not yet destroyed)
    stack_live: bool
    boot_logs: dict[int, str] = field(default_factory=dict)

    def record(self, kind: str) -> InfraRecord | None:
        return next((r for r in self.records if r.kind == kind), None)


def show(ctx: Context, run_name: str) -> InfraView:
    run = state.read_run(ctx.storage, ctx.repo_id, run_name)
    records = state.read_infra_records(ctx.storage, run.repo_id, run.run_name)
    logs = {}
    for index in range(run.job_count):
        data = ctx.storage.get_or_none(state.boot_log_key(run.repo_id, run.run_name, index))
        if data is not None:
            logs[index] = data.decode(errors="replace")
    live = state.read_stack_record(ctx.storage, run.run_name) is not None
    return InfraView(run=run, records=records, stack_live=live, boot_logs=logs)


def release(ctx: Context, run_name: str) -> bool:
    """Destroy the run's stack if the run is finished; whether anything was released."""
    from dstack.services.runs import get_run

    if not ctx.compute.is_cloud:
        return False  # this compute never holds anything after a run (local)
    view = get_run(ctx, run_name)
    if not view.status.is_finished:
        return False
    return ctx.compute.release(ctx.storage, view.run)


def prune(ctx: Context, *, dry_run: bool = False) -> Any:
    """Destroy what finished or deleted runs left on the cloud (the cloud compute's report)."""
    return ctx.cloud.prune(ctx.storage, dry_run=dry_run)
