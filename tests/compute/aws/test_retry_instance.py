"""A retried job's next instance: the previous one is gone before the stack is updated.

The stack update of a later attempt is refreshed first; the provider's read drops an instance
only once EC2 reports it ``terminated``. A reader starts the attempt as soon as the runner
recorded it, while the interrupted instance still powers off: the update must wait for it (the
box tier's scenario b showed an update that changed nothing, and no second instance)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dstack import api, lifecycle, state
from dstack.compute.aws.compute import AwsCompute
from dstack.compute.aws.config import AwsComputeConfig
from dstack.compute.aws.ec2 import Ec2
from dstack.compute.aws.wheel import Wheel, build_wheel
from dstack.models import JobStatus
from dstack.services import starts
from dstack.storage.s3.storage import S3Storage
from tests.compute.aws.doubles import FakeAutomation
from tests.moto_server import MotoServer

RESUMABLE = """\
workflows:
  - name: resumable
    provider: bash
    commands:
      - echo hi
    retry: {on: [interruption], limit: 1}
    resources:
      interruptible: true
"""


@pytest.fixture(scope="module")
def wheel() -> Wheel:
    return build_wheel()


def _launch(ec2: Any) -> str:
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    launched = ec2.run_instances(ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1)
    return str(launched["Instances"][0]["InstanceId"])


@pytest.mark.slow  # builds the wheel; the first instance powers off on a 2 s timer
def test_a_retry_updates_the_stack_once_the_interrupted_instance_is_terminated(
    moto_server: MotoServer, bucket: str, automation: FakeAutomation, wheel: Wheel,
    repo_factory: Any, dstack_home: Path,
) -> None:  # fmt: skip
    """The first instance powers itself off a moment after its runner recorded attempt 2
    (as the boot script does after uploading its log): the reader that starts attempt 2
    updates the stack only once EC2 reports the first instance terminated."""
    repo = repo_factory({".dstack/workflows.yaml": RESUMABLE})
    storage = S3Storage(bucket, endpoint_url=moto_server.endpoint_url, retry_deadline=5)
    ec2 = moto_server.client("ec2")
    ec2.describe_vpcs()  # moto builds its EC2 region on the first call
    compute = AwsCompute(
        AwsComputeConfig(region="us-east-1"), driver_factory=automation.driver,
        ec2=Ec2("us-east-1", endpoint_url=moto_server.endpoint_url), wheel=wheel,
    )  # fmt: skip
    ctx = api.Context(storage=storage, compute=compute, repo_path=repo)
    launched: list[str] = []
    seen_at_up: list[dict[str, str]] = []

    def up(stack: str, program: Any) -> None:
        described = ec2.describe_instances(InstanceIds=launched)["Reservations"] if launched else []
        seen_at_up.append({
            i["InstanceId"]: i["State"]["Name"] for r in described for i in r["Instances"]
        })  # fmt: skip
        launched.append(_launch(ec2))

    automation.on_up = up
    submission = api.submit(ctx, "resumable")
    run = submission.run
    spec = state.read_job_spec(storage, run.repo_id, run.run_name, 0)
    first = launched[0]

    # the runner on the first instance: running, then interrupted by a spot notice; it
    # records attempt 2 and its instance powers off a moment later
    running = state.read_job_state(storage, run.repo_id, run.run_name, 0).model_copy(
        update={"status": JobStatus.RUNNING, "instance_id": first, "runner_pid": 1234}
    )
    lifecycle.set_state(storage, spec, run.owner.display, lifecycle.Writer.RUNNER, running)
    ended = running.model_copy(
        update={"status": JobStatus.INTERRUPTED, "finished_at": time.time(), "runner_pid": None}
    )
    following = lifecycle.conclude(storage, spec, run.owner.display, ended, lifecycle.Writer.RUNNER)
    assert (following.status, following.attempt) == (JobStatus.SUBMITTED, 2)
    power_off = threading.Timer(2.0, lambda: ec2.terminate_instances(InstanceIds=[first]))
    power_off.start()
    try:
        after = starts.start_next_attempt(storage, compute, run, spec, following)
    finally:
        power_off.join()
    assert automation.calls(run.run_name).count("up") == 2, automation.calls(run.run_name)
    assert seen_at_up[1] == {first: "terminated"}, seen_at_up
    assert after.status is JobStatus.SUBMITTED and after.attempt == 2, after


class InstanceStates:
    """A double of ``Ec2`` for ``await_gone``: EC2's instance states on a fake clock (the moto
    test above runs the real ``Ec2`` against moto's EC2). An instance asked to terminate
    reports ``shutting-down``, then ``terminated`` ``lag`` seconds later."""

    def __init__(self, states: dict[str, str], lag: float) -> None:
        self.now = 0.0
        self.states = states
        self.lag = lag
        self.terminated_at: dict[str, float] = {}

    def instance_states(self, ids: list[str]) -> dict[str, str]:
        for instance_id, at in self.terminated_at.items():
            self.states[instance_id] = (
                "terminated" if self.now >= at + self.lag else "shutting-down"
            )
        return {i: self.states[i] for i in ids if i in self.states}

    def terminate(self, ids: Any) -> list[str]:
        for instance_id in ids:
            self.terminated_at.setdefault(instance_id, self.now)
        return list(ids)

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_an_instance_still_up_after_the_grace_is_terminated_and_awaited() -> None:
    from dstack.compute.aws import previous

    ec2 = InstanceStates({"i-1": "running", "i-2": "terminated"}, lag=30)
    said: list[str] = []
    previous.await_gone(
        ec2, ["i-1", "i-2", "i-unknown"], say=said.append, grace=60, timeout=600, poll=2,  # type: ignore[arg-type]
        sleep=ec2.sleep, monotonic=lambda: ec2.now,
    )  # fmt: skip
    assert ec2.terminated_at == {"i-1": 60}
    assert 90 <= ec2.now <= 94
    assert said == ["Waiting for the previous instance i-1 to end"]


def test_an_instance_that_never_terminates_fails_the_start_in_one_line() -> None:
    from dstack.compute.aws import previous
    from dstack.errors import ComputeError

    ec2 = InstanceStates({"i-1": "running"}, lag=10_000)
    with pytest.raises(ComputeError) as raised:
        previous.await_gone(
            ec2, ["i-1"], grace=60, timeout=600, poll=2,  # type: ignore[arg-type]
            sleep=ec2.sleep, monotonic=lambda: ec2.now,
        )  # fmt: skip
    assert "i-1 (shutting-down)" in str(raised.value)
    assert "\n" not in str(raised.value)
