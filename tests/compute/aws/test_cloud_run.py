"""The cloud side end to end, without EC2: ``dstack run`` on AWS compute with a moto server as
the state store and as EC2, the Automation API replaced by ``FakeAutomation``, and each instance
replaced by ``InstanceStandIn`` (see ``cloud_harness``): the runner starts the way the user
data starts it, from the wheel the CLI stored in the bucket, with the instance's environment."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dstack import api, state
from dstack.compute.aws.compute import AwsCompute
from dstack.compute.aws.config import AwsComputeConfig
from dstack.compute.aws.ec2 import Ec2
from dstack.compute.aws.wheel import Wheel, build_wheel
from dstack.models import JobStatus
from dstack.runner.__main__ import STORE_LOST_EXIT
from dstack.services import infra
from dstack.storage.s3.storage import S3Storage
from tests.compute.aws.cloud_harness import FakeImds, InstanceStandIn, allowed, s3_requests
from tests.compute.aws.doubles import FakeAutomation
from tests.fault_proxy import FaultProxy
from tests.moto_server import MotoServer, start_moto

pytestmark = pytest.mark.slow  # runners in subprocesses, waiting on clocks

WORKFLOWS = """\
workflows:
  - name: train
    provider: bash
    commands:
      - echo "hello from the instance ($AWS_REGION, ports ${PORT_0:-none})"
      - mkdir -p out && echo 42 > out/answer.txt
    artifacts:
      - path: out
    resources:
      interruptible: true
  - name: long
    provider: bash
    commands:
      - mkdir -p out && echo partial > out/partial.txt
      - echo started
      - sleep 60
    artifacts:
      - path: out
"""


@pytest.fixture(scope="module")
def wheel() -> Wheel:
    return build_wheel()


@pytest.fixture(scope="module")
def wheel_dir(wheel: Wheel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stored wheel, installed offline the way the user data installs it (no deps)."""
    folder = tmp_path_factory.mktemp("wheel")
    path = folder / wheel.filename
    path.write_bytes(wheel.data)
    target = folder / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         "--disable-pip-version-check", "--target", str(target), str(path)],
        check=True, capture_output=True,
    )  # fmt: skip
    return target


@pytest.fixture
def imds() -> Iterator[FakeImds]:
    server = FakeImds()
    yield server
    server.close()


def make_context(
    storage: S3Storage, moto: MotoServer, automation: FakeAutomation, repo: Path, wheel: Wheel,
    **config: Any,
) -> api.Context:  # fmt: skip
    # moto builds its EC2 region on the first call, which can outlast Ec2's short read
    # timeout on a loaded machine: made here, with boto3's default timeout
    moto.client("ec2").describe_vpcs()
    compute = AwsCompute(
        AwsComputeConfig(region="us-east-1", **config),
        driver_factory=automation.driver,
        ec2=Ec2("us-east-1", endpoint_url=moto.endpoint_url),
        wheel=wheel,
    )
    return api.Context(storage=storage, compute=compute, repo_path=repo)


def wait_finished(storage: S3Storage, run: str, repo_id: str, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        job = state.read_job_state(storage, repo_id, run, 0)
        if job.status.is_finished:
            return job
        assert time.monotonic() < deadline, f"run {run} stayed {job.status.value}"
        time.sleep(0.1)


def output_of(ctx: api.Context, run: str) -> str:
    view = api.get_run(ctx, run, refresh=False)
    return b"".join(
        e.data for e in api.follow(ctx, view, attach=False) if isinstance(e, api.Output)
    ).decode()


def test_a_run_on_aws_end_to_end(
    moto_server: MotoServer, bucket: str, automation: FakeAutomation, imds: FakeImds,
    wheel: Wheel, wheel_dir: Path, repo_factory: Any, tmp_path: Path,
) -> None:  # fmt: skip
    repo = repo_factory({".dstack/workflows.yaml": WORKFLOWS})
    direct = S3Storage(bucket, endpoint_url=moto_server.endpoint_url, retry_deadline=5)
    with FaultProxy(moto_server.endpoint_url) as proxy:
        # everything the CLI and the runner send goes through the proxy's log
        storage = S3Storage(bucket, endpoint_url=proxy.url, retry_deadline=5)
        ctx = make_context(storage, moto_server, automation, repo, wheel)
        stand_in = InstanceStandIn(moto_server.client("ec2"), imds, wheel_dir, tmp_path)
        stand_in.outputs = automation.outputs
        marks: dict[str, int] = {}

        def boot(stack: str, program: Any) -> None:
            marks["runner_from"] = len(proxy.log)
            stand_in.on_up(stack, program)

        automation.on_up = boot
        try:
            submission = api.submit(ctx, "train")
            run = submission.run.run_name
            final = wait_finished(direct, run, submission.run.repo_id)
            codes = stand_in.wait()
            runner_log = [proxy.log[i] for i in range(marks["runner_from"], len(proxy.log))]
        finally:
            stand_in.kill()

        assert codes == [0], stand_in.runners[0].stdout.read()  # type: ignore[union-attr]
        assert final.status is JobStatus.DONE
        assert final.instance_id == automation.outputs["instance_ids"]["0"]
        assert imds.tokens_issued >= 1 and imds.unauthorized == 0  # IMDSv2 only
        assert "hello from the instance (us-east-1, ports none)" in output_of(ctx, run)
        key = state.artifacts_prefix(submission.run.repo_id, run, 0) + "out/answer.txt"
        assert direct.get(key) == b"42\n"

        # the plan was recorded before the stack was created, then the outputs of `up`
        plan, up = state.read_infra_records(direct, submission.run.repo_id, run)
        assert (plan.kind, plan.ok, up.kind, up.ok) == ("plan", True, "up", True)
        assert plan.at <= up.at and plan.summary == {"create": 5}
        types = {r["type"] for r in plan.resources}
        assert {"aws:ec2/instance:Instance", "aws:ec2/securityGroup:SecurityGroup",
                "aws:iam/role:Role", "aws:iam/rolePolicy:RolePolicy"} <= types  # fmt: skip
        assert up.outputs["instance_ids"] == automation.outputs["instance_ids"]
        assert direct.exists(wheel.key)  # the CLI stored its wheel for the instance
        assert state.read_stack_record(direct, run) is not None

        # every S3 request the runner made is one its run's own policy allows
        policy = json.loads(
            next(r for r in plan.resources if r["type"].endswith(":RolePolicy"))["inputs"]["policy"]
        )
        requests = s3_requests(runner_log, bucket)
        assert requests, "the runner made no request through the proxy"
        refused = [r for r in requests if not allowed(policy, bucket, *r)]
        assert refused == []
        # ...and the policy is not a blank cheque: another run's records are out of reach
        assert not allowed(
            policy,
            bucket,
            "s3:GetObject",
            f"repos/{submission.run.repo_id}/runs/other-run-1/run.json",
            None,
        )

        # once finished, releasing destroys the stack and records it
        assert infra.release(ctx, run) is True
        assert automation.calls(run) == ["open", "preview", "up", "open", "destroy", "remove"]
        records = state.read_infra_records(direct, submission.run.repo_id, run)
        assert [r.kind for r in records] == ["plan", "up", "destroy"] and records[-1].ok
        assert state.read_stack_record(direct, run) is None
        assert infra.release(ctx, run) is False  # idempotent: nothing left


def test_spot_interruption_saves_artifacts_and_records_interrupted(
    moto_server: MotoServer, bucket: str, automation: FakeAutomation, imds: FakeImds,
    wheel: Wheel, wheel_dir: Path, repo_factory: Any, tmp_path: Path,
) -> None:  # fmt: skip
    repo = repo_factory({".dstack/workflows.yaml": WORKFLOWS})
    storage = S3Storage(bucket, endpoint_url=moto_server.endpoint_url, retry_deadline=5)
    ctx = make_context(storage, moto_server, automation, repo, wheel)
    stand_in = InstanceStandIn(moto_server.client("ec2"), imds, wheel_dir, tmp_path)
    automation.on_up = stand_in.on_up
    try:
        submission = api.submit(ctx, "long")
        run, repo_id = submission.run.run_name, submission.run.repo_id
        deadline = time.monotonic() + 60
        while "started" not in output_of(ctx, run):
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.1)
        imds.notice = {"action": "terminate", "time": "2026-11-27T10:00:00Z"}
        noticed = time.monotonic()
        final = wait_finished(storage, run, repo_id, timeout=30)
        codes = stand_in.wait(30)
    finally:
        stand_in.kill()
    assert time.monotonic() - noticed < 15  # well within AWS's two minutes
    assert final.status is JobStatus.INTERRUPTED, final
    assert "spot instance was reclaimed" in (final.reason or "")
    assert codes == [1]
    key = state.artifacts_prefix(repo_id, run, 0) + "out/partial.txt"
    assert storage.get(key) == b"partial\n"


def test_maximum_duration_stops_the_job_gracefully(
    moto_server: MotoServer, bucket: str, automation: FakeAutomation, imds: FakeImds,
    wheel: Wheel, wheel_dir: Path, repo_factory: Any, tmp_path: Path,
) -> None:  # fmt: skip
    repo = repo_factory({".dstack/workflows.yaml": WORKFLOWS})
    storage = S3Storage(bucket, endpoint_url=moto_server.endpoint_url, retry_deadline=5)
    ctx = make_context(storage, moto_server, automation, repo, wheel, max_duration_hours=2 / 3600)
    stand_in = InstanceStandIn(moto_server.client("ec2"), imds, wheel_dir, tmp_path)
    automation.on_up = stand_in.on_up
    try:
        submission = api.submit(ctx, "long")
        final = wait_finished(storage, submission.run.run_name, submission.run.repo_id, 45)
    finally:
        stand_in.kill()
    assert "--max-duration 2 " in stand_in.user_data[0]
    assert final.status is JobStatus.STOPPED and "maximum duration" in (final.reason or "")
    key = state.artifacts_prefix(submission.run.repo_id, submission.run.run_name, 0)
    assert storage.get(key + "out/partial.txt") == b"partial\n"


def test_runner_gives_up_when_the_store_is_gone(
    automation: FakeAutomation, imds: FakeImds, wheel: Wheel, wheel_dir: Path,
    repo_factory: Any, tmp_path: Path, aws_test_env: None,
) -> None:  # fmt: skip
    """A store that stops answering: the runner exits (the boot script then powers off)."""
    moto = start_moto()  # this test's own server, stopped halfway
    try:
        client = moto.client()
        client.create_bucket(Bucket="doomed")
        repo = repo_factory({".dstack/workflows.yaml": WORKFLOWS})
        storage = S3Storage("doomed", endpoint_url=moto.endpoint_url, retry_deadline=2)
        ctx = make_context(storage, moto, automation, repo, wheel, store_timeout_minutes=3 / 60)
        stand_in = InstanceStandIn(
            moto.client("ec2"), imds, wheel_dir, tmp_path,
            extra_env={"DSTACK_S3_RETRY_DEADLINE": "0.5"},
        )  # fmt: skip
        automation.on_up = stand_in.on_up
        submission = api.submit(ctx, "long")
        deadline = time.monotonic() + 60
        while "started" not in output_of(ctx, submission.run.run_name):
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.1)
    finally:
        moto.stop()
    try:
        lost = time.monotonic()
        codes = stand_in.wait(30)
    finally:
        stand_in.kill()
    assert codes == [STORE_LOST_EXIT]
    assert time.monotonic() - lost < 20
    output = stand_in.runners[0].stdout.read().decode()  # type: ignore[union-attr]
    assert "the store is unreachable" in output


def test_the_runner_runs_the_wheels_code(wheel_dir: Path) -> None:
    """The stand-in really runs the stored wheel, not this checkout."""
    result = subprocess.run(
        [sys.executable, "-c", "import dstack, dstack.runner.cloud; print(dstack.__file__)"],
        env={"PYTHONPATH": str(wheel_dir), "PATH": "/usr/bin:/bin"},
        cwd=wheel_dir, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert result.stdout.strip().startswith(str(wheel_dir))


RESUMABLE = """\
workflows:
  - name: resumable
    provider: bash
    commands:
      - |
        if [ -e out/partial.txt ]; then echo "resumed from $(cat out/partial.txt)"; exit 0; fi
        mkdir -p out && echo partial > out/partial.txt
        echo started
        sleep 60
    artifacts:
      - path: out
    retry: {on: [interruption], limit: 1}
    resources:
      interruptible: true
"""


def test_an_interrupted_spot_run_with_retry_boots_a_second_instance(
    moto_server: MotoServer, bucket: str, automation: FakeAutomation, imds: FakeImds,
    wheel: Wheel, wheel_dir: Path, repo_factory: Any, tmp_path: Path, dstack_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """`retry: interruption` on AWS: the runner records the next attempt and its instance
    powers off; `dstack ps RUN` (any reader of the run) provisions it: a second `up`, a second
    instance, and the run ends done with 2 attempts, resumed from its artifacts."""
    from tests.cli.test_config import InProcess

    repo = repo_factory({".dstack/workflows.yaml": RESUMABLE})
    storage = S3Storage(bucket, endpoint_url=moto_server.endpoint_url, retry_deadline=5)
    ctx = make_context(storage, moto_server, automation, repo, wheel)
    stand_in = InstanceStandIn(moto_server.client("ec2"), imds, wheel_dir, tmp_path)

    def boot(stack: str, program: Any) -> None:
        imds.notice = None  # a new instance has no interruption notice
        stand_in.on_up(stack, program)

    automation.on_up = boot
    monkeypatch.setattr(api, "Context", lambda **_: ctx)  # `dstack ps` on this store/compute
    cli = InProcess(dstack_home)
    try:
        submission = api.submit(ctx, "resumable")
        run, repo_id = submission.run.run_name, submission.run.repo_id
        deadline = time.monotonic() + 60
        while "started" not in output_of(ctx, run):
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.1)
        imds.notice = {"action": "terminate", "time": "2026-11-27T10:00:00Z"}
        assert stand_in.runners[0].wait(30) == 1  # the first instance is gone
        second = state.read_job_state(storage, repo_id, run, 0)
        assert (second.status, second.attempt) == (JobStatus.SUBMITTED, 2), second
        shown = cli("ps", run, cwd=repo)  # the user looks at the run
        assert shown.code == 0, shown.err
        assert automation.calls(run).count("up") == 2  # the second attempt's instance
        final = wait_finished(storage, run, repo_id, timeout=60)
        codes = stand_in.wait(30)
    finally:
        stand_in.kill()
    assert final.status is JobStatus.DONE, final
    assert final.attempt == 2
    assert codes == [1, 0]  # two instances: the reclaimed one, then the one that finished
    assert "resumed from partial" in output_of(ctx, run)
    shown = cli("ps", run, cwd=repo)
    assert "attempt 1: interrupted" in shown.out and "attempt 2: done" in shown.out, shown.out
