"""What a run spent, from the store alone (``dstack.state.spend``): each attempt of each cloud
job from its runner's start to its end at the quoted price, a running one up to now; a local
run costs nothing; a final record, once written, is what is shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from dstack.models import JobStatus
from dstack.state import spend
from dstack.state.spend import NodeSpend, RunSpend
from dstack.storage.local import LocalStorage
from tests.cloud_spend_records import HOUR, cloud_run, ran

T0 = 1_790_000_000.0


def test_a_finished_run_costs_its_runners_time_at_its_quoted_price(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    run, spec = cloud_run(storage, "calm-cat-1", submitted_at=T0, price=3.06)
    ran(storage, spec, T0 + 60, T0 + 60 + 2 * HOUR)
    found = spend.spend_of(storage, run, now=T0 + 10 * HOUR)
    assert found is not None and not found.final and not found.running
    [node] = found.nodes
    assert (node.job_index, node.attempt, node.instance_id) == (0, 1, "i-0123456789abcdef0")
    assert (node.market, node.price_source, node.end_from) == ("on-demand", "quoted", "runner")
    assert found.total(T0 + 10 * HOUR) == pytest.approx(6.12)


def test_every_attempt_counts_and_a_running_one_counts_up_to_now(tmp_path: Path) -> None:
    from dstack import state

    storage = LocalStorage(tmp_path)
    run, spec = cloud_run(storage, "calm-cat-1", submitted_at=T0, price=1.0)
    first = ran(storage, spec, T0, T0 + HOUR, status=JobStatus.INTERRUPTED, instance_id="i-1")
    state.record_attempt(storage, spec, first)
    ran(storage, spec, T0 + 2 * HOUR, None, attempt=2, instance_id="i-2")
    found = spend.spend_of(storage, run, now=T0 + 2.5 * HOUR)
    assert found is not None and found.running
    assert [(n.attempt, n.instance_id, n.ended_at) for n in found.nodes] == [
        (1, "i-1", T0 + HOUR),
        (2, "i-2", None),
    ]
    assert found.total(T0 + 2.5 * HOUR) == pytest.approx(1.5)
    assert found.total(T0 + 3 * HOUR) == pytest.approx(2.0)  # still counting


def test_a_local_run_costs_nothing_and_a_job_that_never_started_nothing_yet(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    local, spec = cloud_run(storage, "calm-cat-1", submitted_at=T0, compute="local")
    ran(storage, spec, T0, T0 + HOUR)
    assert spend.spend_of(storage, local, now=T0 + HOUR) is None
    waiting, _ = cloud_run(storage, "calm-cat-2", submitted_at=T0)
    found = spend.spend_of(storage, waiting, now=T0 + HOUR)
    assert found is not None and found.nodes == [] and found.total(T0 + HOUR) == 0
    assert found.running  # its instance may be booting: `ps` shows $0.00+
    # one listing says which runs are cloud runs, and which have their spend recorded
    assert spend.cloud_runs(storage, waiting.repo_id) == {"calm-cat-2": False}


def test_the_final_record_is_what_counts_once_written(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    run, spec = cloud_run(storage, "calm-cat-1", submitted_at=T0, price=3.06)
    ran(storage, spec, T0 + 300, T0 + HOUR)
    recorded = RunSpend(
        repo_id=run.repo_id, run_name=run.run_name, recorded_at=T0 + 2 * HOUR, final=True,
        nodes=[NodeSpend(job_index=0, instance_id="i-0123456789abcdef0", price_per_hour=3.06,
                         started_at=T0 + 120, ended_at=T0 + HOUR + 60, start_from="launch",
                         end_from="ec2")],
    )  # fmt: skip
    spend.write_spend(storage, recorded)
    assert spend.cloud_runs(storage, run.repo_id) == {"calm-cat-1": True}
    found = spend.spend_of(storage, run, now=T0 + 5 * HOUR)
    assert found is not None and found.final and found.nodes == recorded.nodes
    assert (found.owner, found.submitted_at) == ("ada", T0)  # whose and when: the run's
    assert found.total(T0 + 5 * HOUR) == pytest.approx(3.06 * (HOUR - 60) / HOUR)
