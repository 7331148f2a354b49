"""``dstack.backoff``: the one retry schedule, run on a fake clock (no real waiting), and the
runner's store writes that use it."""

from __future__ import annotations

from pathlib import Path

import pytest

from dstack import backoff, state
from dstack.errors import StorageError
from dstack.models import JobSpec, JobStatus
from dstack.runner.agent import Agent
from dstack.runner.logs import LogSink
from dstack.storage.local import LocalStorage
from tests.fakeclock import FakeClock
from tests.records import one_job_run


def failing(times: int, error: BaseException, result: str = "ok"):  # type: ignore[no-untyped-def]
    calls = []

    def fn() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise error
        return result

    return fn, calls


def test_waits_double_up_to_the_largest() -> None:
    clock = FakeClock()
    fn, calls = failing(6, StorageError("down"))
    result = backoff.retry_until(
        fn, retry_on=backoff.errors_of(StorageError), deadline=100, first_wait=0.2,
        max_wait=1.0, sleep=clock.sleep, clock=clock,
    )  # fmt: skip
    assert result == "ok" and len(calls) == 7
    assert clock.waits == pytest.approx([0.2, 0.4, 0.8, 1.0, 1.0, 1.0])


def test_the_last_error_is_raised_at_the_deadline() -> None:
    clock = FakeClock()
    fn, calls = failing(1000, StorageError("down"))
    with pytest.raises(StorageError, match="down"):
        backoff.retry_until(
            fn, retry_on=backoff.errors_of(StorageError), deadline=3.0, first_wait=1.0,
            max_wait=10.0, sleep=clock.sleep, clock=clock,
        )  # fmt: skip
    # 1 + 2 = 3: the last wait is cut so the last attempt starts at the deadline
    assert clock.waits == pytest.approx([1.0, 2.0])
    assert len(calls) == 3


def test_other_errors_are_raised_at_once() -> None:
    clock = FakeClock()
    fn, calls = failing(5, ValueError("bad input"))
    with pytest.raises(ValueError):
        backoff.retry_until(
            fn, retry_on=backoff.errors_of(StorageError), deadline=100, first_wait=0.1,
            max_wait=1.0, sleep=clock.sleep, clock=clock,
        )  # fmt: skip
    assert len(calls) == 1 and clock.waits == []


def test_jittered_waits_stay_under_the_schedule() -> None:
    clock = FakeClock()
    fn, _ = failing(8, StorageError("down"))
    backoff.retry_until(
        fn, retry_on=backoff.errors_of(StorageError), deadline=100, first_wait=0.1,
        max_wait=5.0, jitter=True, sleep=clock.sleep, clock=clock,
    )  # fmt: skip
    ceilings = [min(5.0, 0.1 * 2**n) for n in range(8)]
    assert all(0 <= wait <= ceiling for wait, ceiling in zip(clock.waits, ceilings, strict=True))


class FlakyStorage(LocalStorage):
    """A local store whose next ``fail`` puts raise, as a store that is briefly unreachable."""

    fail = 0

    def put(self, key: str, data: bytes, *, if_absent: bool = False, private: bool = False) -> None:
        if self.fail:
            self.fail -= 1
            raise StorageError("the store is unreachable")
        super().put(key, data, if_absent=if_absent, private=private)


def _agent(tmp_path: Path) -> tuple[Agent, FlakyStorage, JobSpec]:
    storage = FlakyStorage(tmp_path / "store")
    spec = one_job_run(storage)
    agent = Agent(storage, spec, work_root=tmp_path / "work", cache_dir=tmp_path / "cache")
    return agent, storage, spec


def test_a_state_write_is_retried_while_the_store_fails(tmp_path: Path) -> None:
    agent, storage, spec = _agent(tmp_path)
    waits: list[float] = []
    agent.sleep = waits.append
    storage.fail = 3
    assert agent._set(JobStatus.PROVISIONING)
    assert waits == pytest.approx([0.2, 0.4, 0.8])
    after = state.read_job_state(storage, spec.repo.repo_id, spec.run_name, 0)
    assert after.status is JobStatus.PROVISIONING


def test_the_last_log_upload_is_retried(tmp_path: Path) -> None:
    _, storage, spec = _agent(tmp_path)
    sink = LogSink(storage, spec).start()
    waits: list[float] = []
    sink.sleep = waits.append
    sink.line("the last line")
    storage.fail = 2
    assert sink.close(deadline=60)
    assert waits == pytest.approx([0.2, 0.4])
    assert b"the last line" in b"".join(
        storage.get(item.key)
        for item in storage.list_objects(state.logs_prefix(spec.repo.repo_id, spec.run_name, 0))
    )
