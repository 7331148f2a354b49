"""A failed boot is noticed from the boot log its instance uploaded, not by the 20-minute start
timeout: the job fails with one line saying why, and the log's last lines join the job's log.
The box tier's scenario d does it with a real boot script on a real root filesystem."""

from __future__ import annotations

import time

import pytest

from dstack import state
from dstack.compute.aws.boot_watch import CHECK_EVERY, BootWatch, judge
from dstack.compute.base import StartFailure
from dstack.models import JobSpec, JobState, JobStatus
from dstack.services import monitor
from dstack.storage.base import Storage
from tests.fakeclock import FakeClock
from tests.records import put_job_state
from tests.services.test_monitor import Elsewhere, running  # noqa: F401 (a fixture)

PIP_FAILURE = """\
Shutdown scheduled for Mon 2026-12-07 23:40:00 UTC
dstack-boot 21:30:00.101 boot
dstack-boot 21:30:03.220 installing uv
WARNING: Retrying (Retry(total=4)) after connection broken by 'NewConnectionError'
ERROR: Could not find a version that satisfies the requirement uv==0.13.8
ERROR: No matching distribution found for uv==0.13.8
"""


def test_the_verdict_names_the_step_and_the_error() -> None:
    failure = judge(PIP_FAILURE, "calm-owl-1")
    assert failure.reason == (
        "the instance's boot failed while installing uv: ERROR: No matching distribution "
        "found for uv==0.13.8 (boot log: `dstack infra -v calm-owl-1`)"
    )
    assert (
        failure.log.splitlines()[-1]
        == "[boot] ERROR: No matching distribution found for uv==0.13.8"
    )
    assert len(failure.log.splitlines()) == len(PIP_FAILURE.splitlines())


def test_a_runner_that_died_at_once_is_told_apart() -> None:
    log = "dstack-boot 21:30:09.000 starting the runner\nModuleNotFoundError: No module named 'x'\n"
    assert judge(log, "r").reason.startswith("the runner ended as it started: ModuleNotFound")


@pytest.fixture
def submitted(running: tuple[Storage, JobSpec, JobState]) -> tuple[Storage, JobSpec, JobState]:  # noqa: F811
    """``test_monitor``'s job, back at ``submitted``: its instance still booting."""
    storage, spec, _ = running
    at = spec.submitted_at
    job = put_job_state(storage, spec, "Ada", JobState(status=JobStatus.SUBMITTED, updated_at=at))
    return storage, spec, job


def _upload_boot_log(storage: Storage, spec: JobSpec, text: str) -> None:
    storage.put(state.boot_log_key(spec.repo.repo_id, spec.run_name, spec.job_index), text.encode())


def test_the_watch_reads_the_log_once_it_is_there_and_not_too_often(
    submitted: tuple[Storage, JobSpec, JobState],
) -> None:
    storage, spec, job = submitted
    clock = FakeClock()
    watch = BootWatch(clock)
    assert watch.failure(storage, spec, job) is None  # still booting
    _upload_boot_log(storage, spec, PIP_FAILURE)
    assert watch.failure(storage, spec, job) is None  # looked a moment ago
    clock.sleep(CHECK_EVERY)
    failure = watch.failure(storage, spec, job)
    assert failure is not None and "installing uv" in failure.reason


def test_an_earlier_attempts_boot_log_is_not_taken_for_a_retrys(
    submitted: tuple[Storage, JobSpec, JobState],
) -> None:
    """The interrupted instance uploads its log as it powers off, after the retry was
    submitted (the box's scenario b): a retry never judges its boot by that log."""
    storage, spec, job = submitted
    retry = job.model_copy(update={"attempt": 2, "updated_at": time.time() - 5})
    _upload_boot_log(storage, spec, PIP_FAILURE)  # attempt 1's instance, after the retry
    assert BootWatch().failure(storage, spec, retry) is None
    assert BootWatch().failure(storage, spec, job) is not None


class FailedBoot(Elsewhere):
    """A compute whose instance's boot failed (AwsCompute reads it from the boot log)."""

    def start_failure(self, storage: Storage, spec: JobSpec, state: JobState) -> StartFailure:
        return judge(PIP_FAILURE, spec.run_name)


def test_the_monitor_fails_the_job_at_once_with_the_boot_logs_tail(
    submitted: tuple[Storage, JobSpec, JobState], monkeypatch: pytest.MonkeyPatch
) -> None:
    storage, spec, job = submitted
    clock = FakeClock()
    monkeypatch.setattr(monitor, "sleep", clock.sleep)
    monkeypatch.setattr(monitor, "monotonic", clock)
    run = state.read_run(storage, spec.repo.repo_id, spec.run_name)
    ended = monitor.refresh(storage, FailedBoot(), run, spec, job)
    assert ended.status is JobStatus.FAILED
    assert ended.reason is not None and ended.reason.startswith("the instance's boot failed")
    logs = state.logs_prefix(spec.repo.repo_id, spec.run_name, spec.job_index)
    text = b"".join(storage.get(i.key) for i in storage.list_objects(logs)).decode()
    assert "[boot] ERROR: No matching distribution found for uv==0.13.8" in text
    # and without a verdict from the compute, the same job waits for its start timeout
    fresh = put_job_state(
        storage, spec, "Ada", JobState(status=JobStatus.SUBMITTED, updated_at=time.time())
    )
    assert monitor.refresh(storage, Elsewhere(), run, spec, fresh).status is JobStatus.SUBMITTED
