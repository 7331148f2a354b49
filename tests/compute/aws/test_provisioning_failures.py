"""Provisioning errors classified (capacity, quota, permission, other) and the ``no-capacity``
retry event: a run's stack whose ``up`` fails for lack of capacity is provisioned again when
the workflow asks, and the class is in the one error line otherwise. The engine is
``FakeAutomation`` (the real engine's errors are driven in ``tests/engine``); the store and
EC2 are moto."""

from __future__ import annotations

from typing import Any

import pytest

from dstack import api, state
from dstack.compute.aws import plan
from dstack.compute.aws.failures import FailureClass, ProvisioningError, classify
from dstack.errors import ComputeError
from dstack.models import JobStatus
from tests.compute.aws.doubles import EngineError, FakeAutomation
from tests.compute.aws.test_aws_compute import setup, wheel  # noqa: F401 (fixtures)

#: how terraform-provider-aws reports a failed RunInstances through the engine
NO_CAPACITY = (
    "aws:ec2/instance:Instance (lively-yak-1-job-0): creating EC2 Instance: operation error "
    "EC2: RunInstances, https response error StatusCode: 500, RequestID: 1-2-3, api error "
    "InsufficientInstanceCapacity: We currently do not have sufficient g4dn.xlarge capacity "
    "in the Availability Zone you requested (us-east-1a)."
)
WORKFLOWS = """\
workflows:
  - name: patient
    commands: [echo hi]
    resources: {gpu: 1, interruptible: true}
    max_price: 0.6     # one offer: g4dn.xlarge spot (walking offers: test_offer_walk.py)
    retry: {on: [no-capacity], limit: 2}
  - name: impatient
    commands: [echo hi]
    resources: {gpu: 1, interruptible: true}
    max_price: 0.6
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (NO_CAPACITY, (FailureClass.CAPACITY, "InsufficientInstanceCapacity")),
        ("api error SpotMaxPriceTooLow: your price is too low", (FailureClass.CAPACITY, "SpotMaxPriceTooLow")),
        ("api error MaxSpotInstanceCountExceeded: max spot", (FailureClass.CAPACITY, "MaxSpotInstanceCountExceeded")),
        ("api error Unsupported: not in this zone", (FailureClass.CAPACITY, "Unsupported")),
        ("api error VcpuLimitExceeded: You have requested more vCPU", (FailureClass.QUOTA, "VcpuLimitExceeded")),
        ("api error InstanceLimitExceeded: limit", (FailureClass.QUOTA, "InstanceLimitExceeded")),
        ("api error UnauthorizedOperation: You are not authorized", (FailureClass.PERMISSION, "UnauthorizedOperation")),
        ("User: arn:aws:iam::1:user/a is not authorized to perform: iam:CreateRole", (FailureClass.PERMISSION, None)),
        ("AccessDenied: denied", (FailureClass.PERMISSION, "AccessDenied")),
        ("creating stack x failed: the engine crashed", (FailureClass.OTHER, None)),
    ],
)  # fmt: skip
def test_errors_are_classified_by_their_aws_code(text: str, expected: tuple[Any, Any]) -> None:
    assert classify(text) == expected


def test_a_client_errors_code_decides() -> None:
    from botocore.exceptions import ClientError

    error = ClientError({"Error": {"Code": "VcpuLimitExceeded", "Message": "m"}}, "RunInstances")
    assert classify(error) == (FailureClass.QUOTA, "VcpuLimitExceeded")


def test_no_capacity_is_provisioned_again_when_the_workflow_asks(
    setup: Any,  # noqa: F811 (the fixture imported above)
    automation: FakeAutomation,
    repo_factory: Any,
) -> None:
    ctx, storage, _, _ = setup
    ctx.repo_path = repo_factory({".dstack/workflows.yaml": WORKFLOWS})
    automation.fail("up", EngineError(NO_CAPACITY))
    submission = api.submit(ctx, "patient")
    run = submission.run
    # the failed stack was destroyed, then created again for attempt 2
    assert automation.calls(run.run_name).count("up") == 2
    assert "destroy" in automation.calls(run.run_name)
    now = state.read_job_state(storage, run.repo_id, run.run_name, 0)
    assert (now.status, now.attempt) == (JobStatus.SUBMITTED, 2)
    [first] = state.list_attempts(storage, submission.jobs[0])
    assert first.status is JobStatus.FAILED
    assert (first.reason or "").startswith("no capacity (capacity, InsufficientInstanceCapacity)")


def test_without_retry_the_class_is_in_the_one_error_line(
    setup: Any,  # noqa: F811 (the fixture imported above)
    automation: FakeAutomation,
    repo_factory: Any,
) -> None:
    ctx, storage, _, _ = setup
    ctx.repo_path = repo_factory({".dstack/workflows.yaml": WORKFLOWS})
    automation.fail("up", EngineError(NO_CAPACITY))
    with pytest.raises(ProvisioningError) as caught:
        api.submit(ctx, "impatient")
    line = str(caught.value)
    assert "\n" not in line
    assert line.startswith("no capacity (capacity, InsufficientInstanceCapacity): creating stack")
    [run] = state.list_runs(storage, ctx.repo_id)
    now = state.read_job_state(storage, ctx.repo_id, run.run_name, 0)
    assert (now.status, now.attempt, now.reason) == (JobStatus.FAILED, 1, line)
    assert automation.calls(run.run_name).count("up") == 1


def test_a_permission_error_is_not_retried(
    setup: Any,  # noqa: F811 (the fixture imported above)
    automation: FakeAutomation,
    repo_factory: Any,
) -> None:
    ctx = setup[0]
    ctx.repo_path = repo_factory({".dstack/workflows.yaml": WORKFLOWS})
    automation.fail("up", EngineError("api error UnauthorizedOperation: You are not authorized"))
    with pytest.raises(ComputeError, match=r"^provisioning failed \(permission, Unauthorized"):
        api.submit(ctx, "patient")


def test_a_multi_node_run_is_provisioned_once_without_reading_it_back(
    setup: Any,  # noqa: F811 (the fixture imported above)
    automation: FakeAutomation,
    repo_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The seam starts a run's jobs in one call: AWS renders one stack for every node from
    the specs it is given, instead of reading the run and every spec again per job."""
    from dstack.compute.aws import compute as aws_compute

    ctx = setup[0]
    ctx.repo_path = repo_factory({
        ".dstack/workflows.yaml": (
            "workflows:\n  - name: ddp\n    provider: torchrun\n    file: train.py\n"
            "    nodes: 3\n    resources: {gpu: 1}\n"
        ),
        "train.py": "print('hi')\n",
    })  # fmt: skip
    reads: list[str] = []
    for name in ("read_run", "read_job_spec", "read_job_state"):
        real = getattr(state, name)
        monkeypatch.setattr(
            aws_compute.state, name,
            lambda *a, _real=real, _name=name, **k: reads.append(_name) or _real(*a, **k),
        )  # fmt: skip
    submission = api.submit(ctx, "ddp")
    assert submission.run.job_count == 3
    assert automation.calls(submission.run.run_name).count("up") == 1
    assert reads == []
    rendering = plan.render(
        automation.programs[submission.run.run_name], project="dstack", stack="x"
    )
    instances = [r for r in rendering.cloud_resources if r.type == "aws:ec2/instance:Instance"]
    assert len(instances) == 3
