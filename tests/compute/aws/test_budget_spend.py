"""The monthly budget counts what the user's runs of the month spent: a released run at its
recorded spend, a finished one at its runners' times, and a job still running at what its
ended attempts spent plus its worst case; other users, other months and local runs not."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from dstack import api, state
from dstack.compute.aws import budget
from dstack.compute.local import LocalCompute
from dstack.models import JobStatus, RepoSnapshot
from dstack.state import spend
from dstack.state.spend import NodeSpend, RunSpend
from dstack.storage.local import LocalStorage
from tests.cloud_spend_records import HOUR, cloud_run, ran

NOW = datetime.datetime(2026, 12, 7, 12, tzinfo=datetime.UTC).timestamp()
DAY = 24 * HOUR
OTHER_REPO = RepoSnapshot(repo_id="github.com/acme/other", code_key="codes/y.tar.gz")


def test_recorded_spend_and_running_worst_cases_are_counted(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    # released: its recorded spend ($2), not its worst case ($3.06 × 2h)
    released, spec = cloud_run(storage, "done-run-1", submitted_at=NOW - 3 * DAY)
    ran(storage, spec, NOW - 3 * DAY, NOW - 3 * DAY + HOUR)
    spend.write_spend(
        storage,
        RunSpend(
            repo_id=released.repo_id, run_name=released.run_name, recorded_at=NOW, final=True,
            nodes=[NodeSpend(job_index=0, price_per_hour=2.0, started_at=NOW - 3 * DAY,
                             ended_at=NOW - 3 * DAY + HOUR)],
        ),
    )  # fmt: skip
    # finished, not yet released (another repo): its runner's half hour at $1/h
    _, spec = cloud_run(storage, "half-run-1", submitted_at=NOW - DAY, price=1.0, repo=OTHER_REPO)
    ran(storage, spec, NOW - DAY, NOW - DAY + HOUR / 2)
    # running its second attempt: the first one's hour ($3.06) + the worst case ($6.12)
    _, spec = cloud_run(storage, "live-run-1", submitted_at=NOW - 2 * HOUR)
    first = ran(storage, spec, NOW - 2 * HOUR, NOW - HOUR, status=JobStatus.INTERRUPTED)
    state.record_attempt(storage, spec, first)
    ran(storage, spec, NOW - HOUR / 2, None, attempt=2)
    # not counted: another user, last month, a local run
    _, spec = cloud_run(storage, "bob-run-1", submitted_at=NOW - DAY, owner="bob")
    ran(storage, spec, NOW - DAY, NOW - DAY + HOUR)
    _, spec = cloud_run(storage, "old-run-1", submitted_at=NOW - 10 * DAY)
    ran(storage, spec, NOW - 10 * DAY, NOW - 9 * DAY)
    _, spec = cloud_run(storage, "local-run-1", submitted_at=NOW - DAY, compute="local")
    ran(storage, spec, NOW - DAY, NOW - DAY + HOUR)

    counted = budget.counted_this_month(storage, "ada", NOW)
    assert counted == pytest.approx(2.0 + 0.5 + 3.06 + 6.12)

    # removed (`dstack rm`): what it spent still counts
    ctx = api.Context(storage=storage, compute=LocalCompute(), repo_path=tmp_path)
    ctx.use_repo(OTHER_REPO.repo_id)
    api.remove(ctx, "half-run-1")
    assert state.list_runs(storage, OTHER_REPO.repo_id) == []
    assert budget.counted_this_month(storage, "ada", NOW) == pytest.approx(counted)
