"""Budgets at submit: what a user's cloud runs of this month are counted at, and the check.

A run is counted at what it spent (``dstack.state.spend``): its recorded spend once its stack
was destroyed; while a job still runs, what its ended attempts spent plus its worst case,
``price_per_hour`` × ``max_duration`` as quoted on its spec at submit (it may run that long);
a finished run not yet released, at its runners' times. The month is the calendar month in
UTC; the user is the run's owner as `ps` shows it. Counting reads every repo of the store and
the runs of each submitted since the month began (newest first, so it stops there), and is
done only when ``compute.budget.per_user_month`` is set. A removed run counts at the spend
kept when it was removed.
"""

from __future__ import annotations

import datetime

from dstack import state
from dstack.compute.aws.choice import JobChoice, check_budget
from dstack.errors import DstackError
from dstack.models import RunRecord
from dstack.state import spend
from dstack.storage.base import Storage
from dstack.store_config import AwsComputeConfig


def month_start(now: float) -> float:
    day = datetime.datetime.fromtimestamp(now, datetime.UTC)
    return day.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()


def counted_this_month(storage: Storage, owner: str, now: float) -> float:
    """USD: what ``owner``'s cloud runs submitted this month spent, running ones at their
    worst case."""
    since = month_start(now)
    total = 0.0
    repos = sorted({*state.list_repos(storage), *spend.spending_repos(storage)})
    for repo_id in repos:
        for run in state.iter_runs(storage, repo_id):
            if run.submitted_at < since:
                break
            if run.owner != owner:
                continue
            try:
                total += run_counted_at(
                    storage, state.read_run(storage, repo_id, run.run_name), now
                )
            except DstackError:
                continue  # a damaged or half-removed run counts for nothing
        for run_name in spend.removed_runs(storage, repo_id):  # removed, and still spent
            try:
                kept = spend.read_spend(storage, repo_id, run_name)
            except DstackError:
                continue
            if kept is not None and kept.owner == owner and kept.submitted_at >= since:
                total += kept.total(now)
    return total


def run_counted_at(storage: Storage, run: RunRecord, now: float) -> float:
    """USD: what the run spent, each job still running counted at its worst case."""
    if run.compute == "local":
        return 0.0
    recorded = spend.read_spend(storage, run.repo_id, run.run_name)
    if recorded is not None and recorded.final:
        return recorded.total(now)
    found = spend.estimate(storage, run, now)
    total = sum(node.cost(now) for node in found.nodes if node.ended_at is not None)
    for index in range(run.job_count):
        job_state = state.read_job_state(storage, run.repo_id, run.run_name, index)
        if job_state.status.is_finished:
            continue
        spec = state.read_job_spec(storage, run.repo_id, run.run_name, index)
        if spec.price_per_hour is not None and spec.max_duration is not None:
            total += spec.price_per_hour * spec.max_duration / 3600
    return total


def enforce(
    config: AwsComputeConfig,
    storage: Storage,
    choices: list[JobChoice],
    owner: str,
    now: float,
) -> None:
    """ComputeError, with the arithmetic, when a budget does not allow these jobs."""
    budget = config.budget
    if budget is None:
        return
    spent = None
    if budget.per_user_month is not None:
        spent = counted_this_month(storage, owner, now)
    check_budget(config, choices, spent_this_month=spent)
