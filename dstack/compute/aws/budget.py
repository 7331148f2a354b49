"""Budgets at submit: what a user's cloud runs of this month are counted at, and the check.

A run is counted at its worst case, recorded on its job specs at submit: each cloud job's
``price_per_hour`` × ``max_duration``. (What a run really spent, from its instances' start and
end times, is not recorded yet; the worst case never undercounts it.) The month is the calendar
month in UTC; the user is the run's owner as `ps` shows it. Counting reads every repo of the
store and the runs of each submitted since the month began (newest first, so it stops there),
and is done only when ``compute.budget.per_user_month`` is set.
"""

from __future__ import annotations

import datetime

from dstack import state
from dstack.compute.aws.choice import JobChoice, check_budget
from dstack.errors import DstackError
from dstack.storage.base import Storage
from dstack.store_config import AwsComputeConfig


def month_start(now: float) -> float:
    day = datetime.datetime.fromtimestamp(now, datetime.UTC)
    return day.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()


def counted_this_month(storage: Storage, owner: str, now: float) -> float:
    """USD: the worst cases of ``owner``'s cloud runs submitted this month."""
    since = month_start(now)
    total = 0.0
    for repo_id in list(state.list_repos(storage)):
        for run in state.iter_runs(storage, repo_id):
            if run.submitted_at < since:
                break
            if run.owner != owner:
                continue
            try:
                record = state.read_run(storage, repo_id, run.run_name)
                for index in range(record.job_count):
                    spec = state.read_job_spec(storage, repo_id, run.run_name, index)
                    if spec.price_per_hour is not None and spec.max_duration is not None:
                        total += spec.price_per_hour * spec.max_duration / 3600
            except DstackError:
                continue  # a damaged or half-removed run counts for nothing
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
