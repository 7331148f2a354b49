"""`dstack config --create` without the Pulumi engine: one clear line, nothing saved."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.cli import Dstack


@pytest.mark.skipif(shutil.which("pulumi") is not None, reason="a Pulumi engine is installed")
def test_create_without_engine_says_what_to_install(dstack_home: Path, tmp_path: Path) -> None:
    result = Dstack(dstack_home)(
        "config", "--backend", "aws", "--bucket", "my-dstack-state", "--region", "eu-west-1",
        "--create", "-y", cwd=tmp_path,
    )  # fmt: skip
    assert result.code != 0
    [line] = result.err.strip().splitlines()
    assert line.startswith("Error: ") and "Pulumi" in line
    assert not (dstack_home / "config.yaml").exists()


def test_create_keeps_the_admins_compute_settings(
    dstack_home: Path, tmp_path: Path, moto_server: Any, s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """`--create` on a machine whose ``compute`` section an admin filled in: the fences reach
    the bootstrap's role, and every setting is still in the file afterwards.

    The Pulumi engine is replaced by ``FakeAutomation`` (the real engine runs the bootstrap in
    ``tests/engine``); the bucket checks run against moto."""
    from dstack.compute.aws import bootstrap, plan
    from tests.cli.test_config import InProcess, saved
    from tests.compute.aws.doubles import FakeAutomation

    automation = FakeAutomation(outputs={"runner_role_name": "dstack-runner-abc"})
    monkeypatch.setattr(bootstrap, "aws_plugins", lambda: [])
    monkeypatch.setattr(
        bootstrap, "StackDriver", lambda workspace, **_: automation.driver(workspace)
    )
    admin = {
        "type": "aws",
        "region": "us-east-1",
        "role_path": "/dstack/",
        "permissions_boundary": "arn:aws:iam::123456789012:policy/dstack-runner-boundary",
        "tags": {"team": "ml"},
        "subnet_id": "subnet-0abc",
        "default_cpu": 4,
        "bootstrap": {"stack": "old"},
    }
    (dstack_home / "config.yaml").write_text(yaml.safe_dump({"compute": admin}))
    result = InProcess(dstack_home)(
        "config", "--backend", "aws", "--bucket", s3_bucket, "--region", "us-east-1",
        "--endpoint-url", moto_server.endpoint_url, "--create", "-y", cwd=tmp_path,
    )  # fmt: skip
    assert result.code == 0, result.err
    section = saved(dstack_home)["compute"]
    kept = {k: v for k, v in admin.items() if k != "bootstrap"}
    assert {k: section[k] for k in kept} == kept
    assert section["bootstrap"]["runner_role_name"] == "dstack-runner-abc"
    # the fences were applied to the role the bootstrap creates
    rendering = plan.render(
        automation.programs[bootstrap.BOOTSTRAP_STACK], project="dstack", stack="bootstrap"
    )
    [role] = [r for r in rendering.cloud_resources if r.type == "aws:iam/role:Role"]
    assert role.inputs["path"] == "/dstack/"
    assert role.inputs["permissionsBoundary"] == admin["permissions_boundary"]
