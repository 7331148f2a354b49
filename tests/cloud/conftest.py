"""The box tier (``scripts/test-cloud``): `dstack` runs on AWS compute end to end on this machine.

The AWS APIs are one moto server on loopback. After set-up (the state bucket, the runner
boundary policy, the dstack user holding ``iam/dstack-user-policy.json``) moto's IAM
enforcement is switched on: the CLI runs with the dstack user's access keys, the instances with
their run role's STS credentials, the test's own checks with an administrator's. Moto checks
every call's action against the caller's policies, for every service; it matches the resource
only for S3 (bucket and key ARNs) and evaluates no condition. So the policy moto holds is the
user's policy with the account filled in, conditions left out and non-S3 resources widened to
``*`` (see ``moto_policy``): an action the policy lacks fails the run; a resource or condition
it gets wrong is not seen by moto: ``tests.cloud.calls`` records every call and judges each
one of the user and the run roles against the real policies, conditions and resources
included, refusing what AWS would refuse (``every_call_checked`` fails the test).
The run role's policy is dstack's own (``stacks.policies``), put by the run stack: moto
enforces it on the instance's S3 calls as written (with the same S3 names added, by
``standins.RolePolicy``).

The engine is the real one of ``scripts/test-engine`` with the stand-ins of
``tests.cloud.standins``; instances boot in the box (``tests.cloud.box``). Without
``DSTACK_TEST_ENGINE``, ``DSTACK_TEST_CLOUD_ROOT`` and ``DSTACK_TEST_CLOUD_PYTHON`` (set by
``scripts/test-cloud``) every test here is skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cloud.box import Hypervisor, PythonMirror
from tests.cloud.calls import Call, Recorder, violations
from tests.cloud.standins import as_moto_enforces
from tests.e2e.cli import Dstack
from tests.engine.plugin import write_dynamic_plugin
from tests.moto_server import MotoServer, aws_test_env, start_moto  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
HOOK = Path(__file__).resolve().parent / "hook"
ENGINE = os.environ.get("DSTACK_TEST_ENGINE")
BOX_ROOT = os.environ.get("DSTACK_TEST_CLOUD_ROOT")
BOX_PYTHON = os.environ.get("DSTACK_TEST_CLOUD_PYTHON")
REGION = "us-east-1"
POLICY_ACCOUNT = "111122223333"
ACCOUNT = "123456789012"  # moto's
BUCKET = "dstack-state-bucket"  # the bucket the user policy names
BOUNDARY = f"arn:aws:iam::{ACCOUNT}:policy/dstack-runner-boundary"


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    if ENGINE and BOX_ROOT and BOX_PYTHON:
        return
    skip = pytest.mark.skip(reason="the box tier runs with scripts/test-cloud")
    for item in items:
        if "tests/cloud/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(skip)


def real_policy(name: str) -> dict[str, Any]:
    """``iam/NAME`` with moto's account filled in, conditions and resources as written."""
    text = (ROOT / "iam" / name).read_text().replace(POLICY_ACCOUNT, ACCOUNT)
    return json.loads(text)  # type: ignore[no-any-return]


def moto_policy(name: str) -> dict[str, Any]:
    """``iam/NAME`` as moto can enforce it (see the module docstring)."""
    policy = as_moto_enforces(real_policy(name))
    for statement in policy["Statement"]:
        resources = statement["Resource"]
        listed = resources if isinstance(resources, list) else [resources]
        if not all(r.startswith("arn:aws:s3:::") for r in listed):
            statement["Resource"] = "*"
    return policy


@dataclass
class Keys:
    access_key: str
    secret_key: str

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}


@dataclass
class Box:
    moto: MotoServer
    hypervisor: Hypervisor
    mirror: PythonMirror
    user: Keys
    admin: Keys
    env: dict[str, str]  # the CLI's environment (the engine, the stand-ins, the user's keys)
    #: every AWS call moto authorized, with what AWS would authorize for it (``calls``)
    recorder: Recorder | None = None
    #: how many of ``recorder.calls`` were checked against the real policies
    checked: int = 0

    def policies_of(self, call: Call) -> list[dict[str, Any]] | None:
        """The real policies that must all allow a call of ``call.caller``: the dstack user's
        policy; a run role's own policy (as the run stack wrote it) and the runner boundary;
        None for the administrator (the set-up and the test's own checks) and for a role no
        run stack wrote (a shared instance profile: not judged here)."""
        if call.caller.endswith(":user/dstack-user"):
            return [real_policy("dstack-user-policy.json")]
        if call.role is not None:
            own = self.hypervisor.role_policies.get(call.role)
            return [*own, real_policy("dstack-runner-boundary.json")] if own else None
        return None

    def unchecked_violations(self) -> list[str]:
        """The calls since the last check that the real policies deny (``calls.violations``)."""
        assert self.recorder is not None
        calls = self.recorder.calls[self.checked :]
        self.checked += len(calls)
        return violations(calls, self.policies_of)

    def client(self, service: str) -> Any:
        """A client with the administrator's credentials (the test's own view of AWS)."""
        import boto3

        return boto3.client(
            service, endpoint_url=self.moto.endpoint_url, region_name=REGION,
            aws_access_key_id=self.admin.access_key, aws_secret_access_key=self.admin.secret_key,
        )  # fmt: skip


def _user(iam: Any, name: str, policy: dict[str, Any]) -> Keys:
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName=name, PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return Keys(key["AccessKeyId"], key["SecretAccessKey"])


@pytest.fixture(scope="session")
def box(
    tmp_path_factory: pytest.TempPathFactory,
    aws_test_env: None,  # noqa: F811
    request: pytest.FixtureRequest,
) -> Iterator[Box]:
    assert ENGINE and BOX_ROOT and BOX_PYTHON
    import moto.settings

    server = start_moto()
    setup = server.client("iam")
    server.client("s3").create_bucket(Bucket=BUCKET)
    from botocore.config import Config

    warm = server.client("ec2", config=Config(read_timeout=600))  # moto loads its EC2 data once
    warm.describe_vpcs()
    warm.describe_images(Owners=["amazon"])
    setup.create_policy(
        PolicyName="dstack-runner-boundary",
        PolicyDocument=json.dumps(moto_policy("dstack-runner-boundary.json")),
    )
    user = _user(setup, "dstack-user", moto_policy("dstack-user-policy.json"))
    admin = _user(setup, "box-admin", {
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    })  # fmt: skip
    recorder = Recorder(ACCOUNT, REGION)
    recorder.install()
    saved_count = moto.settings.INITIAL_NO_AUTH_ACTION_COUNT
    moto.settings.INITIAL_NO_AUTH_ACTION_COUNT = 0  # IAM enforcement from here on
    saved_env = dict(os.environ)
    os.environ.pop("AWS_SESSION_TOKEN", None)  # this process reads the store as the admin
    os.environ.update(admin.env())
    mirror = PythonMirror(Path(BOX_PYTHON))
    plugins = tmp_path_factory.mktemp("plugins")
    write_dynamic_plugin(plugins)
    boxed = Box(server, None, mirror, user, admin, {}, recorder)  # type: ignore[arg-type]
    recorder.policy_of = boxed.policies_of
    boxed.hypervisor = Hypervisor(
        Path(BOX_ROOT), tmp_path_factory.mktemp("instances"), server.endpoint_url,
        mirror.url, boxed.client,
    )  # fmt: skip
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "AWS_"))}
    boxed.env = {
        **environ,
        **user.env(),
        "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_ENDPOINT_URL": server.endpoint_url,
        "PATH": os.pathsep.join([ENGINE, str(plugins), os.environ.get("PATH", "")]),
        "PULUMI_HOME": str(tmp_path_factory.mktemp("pulumi-home")),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DIY_BACKEND_NO_LEGACY_WARNING": "true",
        "PYTHONPATH": os.pathsep.join([str(HOOK), str(ROOT)]),
        "DSTACK_TEST_CLOUDLESS": "1",
        "DSTACK_BOX_HYPERVISOR": boxed.hypervisor.url,
    }  # fmt: skip
    try:
        yield boxed
        late = boxed.unchecked_violations()  # calls after the last test (its runs' ends)
        assert not late, "AWS calls the real policies deny:\n" + "\n".join(late)
        judged = [c for c in recorder.calls if boxed.policies_of(c) is not None]
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled():
            print(
                f"\n[box] {len(recorder.calls)} AWS calls recorded; {len(judged)} of the dstack "
                "user and the run roles judged against the real policies"
            )
    finally:
        recorder.uninstall()
        boxed.hypervisor.close()
        mirror.close()
        moto.settings.INITIAL_NO_AUTH_ACTION_COUNT = saved_count
        os.environ.clear()
        os.environ.update(saved_env)
        server.stop()


@pytest.fixture(autouse=True)
def every_call_checked(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each box test: every AWS call moto let through that the real policies (with their
    resources and conditions) deny fails the test (``tests.cloud.calls``)."""
    if "box" not in request.fixturenames:
        yield
        return
    box: Box = request.getfixturevalue("box")
    yield
    found = box.unchecked_violations()
    if found:
        pytest.fail("AWS calls the real policies deny:\n" + "\n".join(found), pytrace=False)


@pytest.fixture
def cli(box: Box, dstack_home: Path, tmp_path: Path) -> Dstack:
    """`dstack` as the dstack user types it, configured for AWS compute in the box."""
    (dstack_home / "config.yaml").write_text(yaml.safe_dump({
        "backend": "aws",
        "aws": {"bucket": BUCKET, "region": REGION, "endpoint_url": box.moto.endpoint_url},
        "compute": {"type": "aws", "region": REGION, "role_path": "/dstack/",
                    "permissions_boundary": BOUNDARY},
    }))  # fmt: skip
    cloud = tmp_path / "cloud"
    cloud.mkdir()
    dstack = Dstack(dstack_home, {**box.env, "DSTACK_STANDIN_CLOUD": str(cloud)})
    for key in [k for k in dstack.env if k.startswith("AWS_") and k not in box.env]:
        del dstack.env[key]  # the test process's dummy session token is not the user's
    return dstack
