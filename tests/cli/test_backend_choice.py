"""A backend choice sets where the state lives and where runs run, and AWS credentials are
asked about before anything that needs them (the Pulumi engine, the other questions)."""

from __future__ import annotations

from pathlib import Path

import pexpect
import pytest
import yaml

from tests.conftest import make_repo
from tests.e2e.cli import DSTACK, Dstack
from tests.e2e.test_aws_cli import no_aws_env

HELLO = "workflows:\n  - name: hello\n    commands:\n      - echo hello from here\n"
CLOUD = {
    "backend": "aws",
    "aws": {"bucket": "acme-dstack-state", "region": "eu-west-1",
            "endpoint_url": "http://127.0.0.1:9"},  # nothing listens: nothing may be sent
    "compute": {"type": "aws", "instance_profile": "dstack-runner"},
}  # fmt: skip


def saved(home: Path) -> dict:
    return yaml.safe_load((home / "config.yaml").read_text())


def test_backend_local_sends_runs_here_too(dstack_home: Path, tmp_path: Path) -> None:
    (dstack_home / "config.yaml").write_text(yaml.safe_dump(CLOUD))
    repo = make_repo(tmp_path / "r", {".dstack/workflows.yaml": HELLO})
    cli = Dstack(dstack_home, no_aws_env(dstack_home), whole=True)
    chosen = cli("config", "--backend", "local", cwd=repo)
    assert chosen.code == 0, chosen.err
    assert "runs run on this machine" in chosen.out
    config = saved(dstack_home)
    assert config["compute"] == {"type": "local", "instance_profile": "dstack-runner"}  # kept
    run = cli("run", "hello", cwd=repo)
    assert run.code == 0, run.err
    assert run.job_lines == ["hello from here"]


@pytest.mark.parametrize(
    "args",
    [
        ["run", "hello"],
        ["config", "--backend", "aws", "--bucket", "acme-dstack-state", "--region",
         "eu-west-1", "--create", "-y"],
    ],
    ids=["run", "config-create"],
)  # fmt: skip
def test_no_credentials_is_said_before_the_engine(
    dstack_home: Path, tmp_path: Path, args: list[str]
) -> None:
    (dstack_home / "config.yaml").write_text(yaml.safe_dump(CLOUD))
    repo = make_repo(tmp_path / "r", {".dstack/workflows.yaml": HELLO})
    result = Dstack(dstack_home, no_aws_env(dstack_home), whole=True)(*args, cwd=repo)
    assert result.code != 0
    [line] = result.err.strip().splitlines()
    assert "no AWS credentials found" in line and "aws configure" in line, line
    assert "Pulumi" not in line
    assert saved(dstack_home) == CLOUD  # nothing saved


def test_config_in_a_terminal_says_no_credentials_before_asking_more(
    dstack_home: Path, tmp_path: Path
) -> None:
    child = pexpect.spawn(
        DSTACK[0], [*DSTACK[1:], "config"], cwd=str(tmp_path),
        env=no_aws_env(dstack_home, DSTACK_HOME=str(dstack_home)), timeout=30, encoding="utf-8",
    )  # fmt: skip
    child.expect(r"State store \(local or aws\).*: ")
    child.sendline("aws")
    seen = child.expect([r"no AWS credentials found", r"AWS profile", r"AWS region"])
    assert seen == 0, "asked more questions before saying there are no credentials"
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus != 0
    assert not (dstack_home / "config.yaml").exists()
