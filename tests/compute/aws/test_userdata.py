"""The boot script of a runner instance: golden file, shell syntax, and what it starts."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from dstack.compute.aws.userdata import (
    Boot,
    exported_environment,
    render_user_data,
    runner_command,
)
from dstack.store_config import S3StoreConfig, parse_store
from tests.golden import assert_golden

STORE = S3StoreConfig(bucket="acme-dstack-state", region="eu-west-1", profile="team")


def boot(**changes: object) -> Boot:
    values: dict = dict(
        storage=STORE,
        repo_id="github.com/acme/mnist",
        run_name="wise-owl-1",
        job_index=0,
        region="eu-west-1",
        wheel_key="dist/0123456789abcdef0123/dstack-0.1.0-py3-none-any.whl",
        boot_log_key="repos/github.com/acme/mnist/runs/wise-owl-1/infra/boot-0.log",
        version="0.1.0",
        max_duration_seconds=72 * 3600,
        store_timeout_seconds=1200,
        python="3.11",
        docker=False,
        ports=[10000],
        boto3_requirement="boto3>=1.35.16",
        spec_sha256="5e" * 32,
    )
    values.update(changes)
    return Boot(**values)


def test_the_runner_gets_the_pin_of_its_spec_from_the_user_data() -> None:
    """The bucket can rewrite a spec, not an instance's user data: the pin travels there."""
    command = runner_command(render_user_data(boot()))
    assert command[command.index("--spec-sha256") + 1] == "5e" * 32


def test_user_data_golden() -> None:
    assert_golden("user_data.sh", render_user_data(boot()))


def test_user_data_with_docker_and_no_python_golden() -> None:
    assert_golden("user_data_docker.sh", render_user_data(boot(python=None, docker=True, ports=[])))


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_user_data_is_valid_bash() -> None:
    for variant in (boot(), boot(python=None, docker=True, ports=[])):
        result = subprocess.run(["bash", "-n"], input=render_user_data(variant), text=True,
                                capture_output=True)  # fmt: skip
        assert result.returncode == 0, result.stderr


def test_it_starts_the_runner_against_the_store_without_the_callers_profile() -> None:
    command = runner_command(render_user_data(boot()))
    assert command[:3] == ["/opt/dstack/venv/bin/python", "-m", "dstack.runner"]
    storage = parse_store(command[command.index("--storage") + 1])
    assert storage == STORE.model_copy(update={"profile": None})
    assert command[command.index("--cloud") + 1] == "aws"
    assert command[command.index("--max-duration") + 1] == str(72 * 3600)
    assert command[command.index("--store-timeout") + 1] == "1200"


def test_it_powers_off_when_it_ends_and_at_the_hard_limit() -> None:
    text = render_user_data(boot())
    assert "trap finish EXIT" in text
    assert "shutdown -h now" in text
    assert f"shutdown -h +{72 * 60 + 10} " in text


def test_it_holds_no_secret() -> None:
    text = render_user_data(boot()).lower()
    for word in ("aws_secret_access_key", "aws_access_key_id", "aws_session_token", "password"):
        assert word not in text


def test_exported_environment() -> None:
    env = exported_environment(render_user_data(boot()))
    assert env == {
        "DSTACK_HOME": "/opt/dstack/home",
        "HOME": "/root",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_REGION": "eu-west-1",
        "DSTACK_RUNNER_PORTS": "10000",
    }
