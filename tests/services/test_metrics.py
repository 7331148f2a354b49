"""``services.metrics``: a run's points in the order written (job, attempt, line), the
``after`` a poller passes, last values, and a run that is not there. The chunks are put in the
store here as a runner writes them (``state.write_metric_chunk``, the call
``runner.metrics.MetricsShipper`` makes; the shipper itself is tested in
tests/runner/test_metrics.py, the whole journey in tests/e2e/test_metrics.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dstack import state
from dstack.errors import RunNotFoundError
from dstack.models import JobSpec, Owner, RunRecord
from dstack.services.context import Context
from dstack.services.metrics import MetricPoint, last_values, read_run_metrics
from dstack.state import StoredPoint, actions
from dstack.storage.local import LocalStorage
from tests.records import REPO


def two_job_run(storage: LocalStorage) -> list[JobSpec]:
    run = RunRecord(
        run_name="calm-cat-1", repo_id=REPO.repo_id, workflow="train", provider="bash",
        submitted_at=1000.0, owner=Owner(user="ada"), job_count=2, repo=REPO,
    )  # fmt: skip
    specs = [
        JobSpec(
            run_name="calm-cat-1",
            job_index=i,
            workflow="train",
            provider="bash",
            repo=REPO,
            submitted_at=1000.0,
        )
        for i in range(2)
    ]
    state.create_run(storage, run, specs)
    return specs


def point(step: int | None, **values: float) -> StoredPoint:
    return StoredPoint(at=2000.0 + (step or 0), step=step, values=values)


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    context = Context(storage=LocalStorage(tmp_path / "store"), repo_path=tmp_path)
    context.use_repo(REPO.repo_id)
    return context


def test_points_come_in_the_order_written_and_after_skips_the_first_n(ctx: Context) -> None:
    first, second = two_job_run(ctx.storage)  # type: ignore[arg-type]
    # written out of order on purpose: the order comes from the keys, not from the writes
    state.write_metric_chunk(ctx.storage, second, 1, 0, [point(1, acc=0.5)])
    state.write_metric_chunk(ctx.storage, first, 2, 0, [point(3, loss=0.3)])
    state.write_metric_chunk(ctx.storage, first, 1, 1, [point(2, loss=0.4)])
    state.write_metric_chunk(ctx.storage, first, 1, 0, [point(0, loss=0.6), point(1, loss=0.5)])
    every = read_run_metrics(ctx, "calm-cat-1")
    assert [(p.job, p.attempt, p.step) for p in every] == [
        (0, 1, 0), (0, 1, 1), (0, 1, 2), (0, 2, 3), (1, 1, 1),
    ]  # fmt: skip
    assert every[0] == MetricPoint(job=0, attempt=1, at=2000.0, step=0, values={"loss": 0.6})
    for after in range(7):
        assert read_run_metrics(ctx, "calm-cat-1", after=after) == every[after:]
    assert last_values(every) == {"loss": (3, 0.3), "acc": (1, 0.5)}


def test_a_damaged_line_is_left_out_and_the_rest_is_read(ctx: Context) -> None:
    [first, _] = two_job_run(ctx.storage)  # type: ignore[arg-type]
    key = state.write_metric_chunk(ctx.storage, first, 1, 0, [point(1, a=1), point(2, a=2)])
    ctx.storage.put(key, ctx.storage.get(key).replace(b'"step":1', b'"step":"x"'))
    assert [p.step for p in read_run_metrics(ctx, "calm-cat-1")] == [2]
    ctx.storage.put(state.metrics_prefix(REPO.repo_id, "calm-cat-1", 0) + "notes.txt", b"hi")
    assert [p.step for p in read_run_metrics(ctx, "calm-cat-1")] == [2]
    data = state.encode_points([point(1, a=1), point(2, a=2), point(3, a=3)])
    ctx.storage.put(key, data.replace(b'"step":2', b'"step":2,,'))  # line 2 is not JSON
    assert [p.step for p in read_run_metrics(ctx, "calm-cat-1")] == [1, 3]


def test_a_run_with_no_metrics_has_none_and_an_unknown_run_is_an_error(ctx: Context) -> None:
    two_job_run(ctx.storage)  # type: ignore[arg-type]
    assert read_run_metrics(ctx, "calm-cat-1") == []
    assert last_values([]) == {}
    with pytest.raises(RunNotFoundError, match="no run named 'nope'"):
        read_run_metrics(ctx, "nope")


def test_a_removed_run_says_who_removed_it(ctx: Context) -> None:
    [first, _] = two_job_run(ctx.storage)  # type: ignore[arg-type]
    state.write_metric_chunk(ctx.storage, first, 1, 0, [point(1, a=1)])
    run = state.read_run(ctx.storage, REPO.repo_id, "calm-cat-1")
    state.delete_run(ctx.storage, run)  # what `dstack rm` does (services.runs.remove)
    actions.record_removal(ctx.storage, REPO.repo_id, "calm-cat-1", Owner(git_name="Ada"))
    with pytest.raises(
        RunNotFoundError, match=r"run calm-cat-1 was removed by Ada \(unknown@unknown\) at "
    ):
        read_run_metrics(ctx, "calm-cat-1")
    assert not list(ctx.storage.list_objects(state.metrics_prefix(REPO.repo_id, "calm-cat-1", 0)))
