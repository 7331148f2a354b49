"""The AWS side of the `dstack` command, run as a user would, on a machine with neither the
Pulumi engine nor AWS credentials: `run --plan`, the one-line stop when the engine is missing,
`infra`, `prune`, and the promise that nothing outside the cloud paths imports Pulumi or boto3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from dstack import state
from dstack.models import InfraRecord
from dstack.storage.local import LocalStorage
from tests.e2e.cli import Dstack
from tests.moto_server import MotoServer

WORKFLOWS = """\
workflows:
  - name: train
    commands: [echo trained]
    ports: 1
    resources: {gpu: 1, interruptible: true}
  - name: echo
    commands: [echo hello]
  - name: ide
    provider: code
"""
HEAVY = ("pulumi", "pulumi_aws", "boto3", "botocore")


def no_aws_env(home: Path, **extra: str) -> dict[str, str]:
    """This machine without credentials, a profile, or the Pulumi engine on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PULUMI"))}
    env.update(
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        PULUMI_HOME=str(home / "no-pulumi"),
        PATH=os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p),
    )
    env.update(extra)
    return env


@pytest.fixture
def repo(repo_factory: Any) -> Path:
    return repo_factory({".dstack/workflows.yaml": WORKFLOWS})  # type: ignore[no-any-return]


def write_config(home: Path, config: dict[str, Any]) -> None:
    (home / "config.yaml").write_text(yaml.safe_dump(config))


def test_run_plan_offline_without_credentials_or_engine(dstack_home: Path, repo: Path) -> None:
    cli = Dstack(dstack_home, no_aws_env(dstack_home, DSTACK_CALLER_IP="203.0.113.7"))
    started = time.monotonic()
    result = cli("run", "--plan", "train", cwd=repo)
    assert result.code == 0, result.err
    assert (
        "nothing is created" in result.out
        and "5 AWS resources to create, in 1 component(s)" in result.out
    )
    assert "+ aws:ec2/instance:Instance  planned-run-1-job-0" in result.out
    assert "httpTokens" in result.out and '"203.0.113.7/32"' in result.out
    assert time.monotonic() - started < 30
    as_json = cli("run", "--plan", "train", "--json", cwd=repo)
    assert as_json.code == 0, as_json.err
    plan = json.loads(as_json.out)
    assert plan["jobs"][0]["instance_type"] == "g4dn.xlarge"
    assert {r["type"] for r in plan["resources"]} >= {"aws:ec2/securityGroup:SecurityGroup"}
    assert list(LocalStorage(dstack_home / "store").list_objects("")) == []  # nothing written


def test_cloud_run_without_the_engine_stops_with_one_line(dstack_home: Path, repo: Path) -> None:
    write_config(dstack_home, {
        "backend": "aws",
        "aws": {"bucket": "acme-dstack-state", "region": "eu-west-1",
                "endpoint_url": "http://127.0.0.1:9"},  # nothing listens: nothing may be sent
        "compute": {"type": "aws"},
    })  # fmt: skip
    cli = Dstack(dstack_home, no_aws_env(dstack_home))
    result = cli("run", "echo", cwd=repo)
    assert result.code == 1
    lines = result.err.strip().splitlines()
    assert lines == [
        "Error: the Pulumi engine is not installed: install the Pulumi CLI so that `pulumi` is "
        "on PATH (or in $PULUMI_HOME/bin), then retry; `dstack run --plan WORKFLOW` works "
        "without it"
    ]


def test_code_on_aws_is_refused_at_submit_in_one_line(dstack_home: Path, repo: Path) -> None:
    """No VS Code server can be installed on an instance: refused before anything is written
    or created (the store's endpoint has nothing listening: no request may be sent)."""
    write_config(dstack_home, {
        "backend": "aws",
        "aws": {"bucket": "acme-dstack-state", "region": "eu-west-1",
                "endpoint_url": "http://127.0.0.1:9"},
        "compute": {"type": "aws"},
    })  # fmt: skip
    cli = Dstack(dstack_home, no_aws_env(dstack_home, PATH=os.environ.get("PATH", "")))
    result = cli("run", "ide", cwd=repo)
    assert result.code == 1
    [line] = result.err.strip().splitlines()
    assert line.startswith("Error: workflow 'ide': provider code needs openvscode-server")
    assert "use provider lab" in line


def test_infra_shows_the_records_of_a_run(dstack_home: Path, repo: Path) -> None:
    cli = Dstack(dstack_home)
    run = cli.run_detached("echo", cwd=repo)
    cli.wait_status(run, repo, lambda s: s == "done")
    storage = LocalStorage(dstack_home / "store")
    repo_id = "github.com/acme/mnist"
    plan = InfraRecord(kind="plan", stack=run, at=1.0, summary={"create": 5}, by="ada@laptop",
                       resources=[{"type": "aws:ec2/instance:Instance", "name": f"{run}-job-0",
                                   "inputs": {"instanceType": "g5.xlarge"}}])  # fmt: skip
    up = InfraRecord(kind="up", stack=run, at=2.0, outputs={"instance_ids": {"0": "i-0abc"}})
    down = InfraRecord(kind="destroy", stack=run, at=3.0, summary={"delete": 5})
    for record in (plan, up, down):
        state.write_infra_record(storage, repo_id, run, record)

    result = cli("infra", run, cwd=repo)
    assert result.code == 0, result.err
    assert "plan: ok" in result.out and "5 to create" in result.out
    assert f"+ aws:ec2/instance:Instance  {run}-job-0" in result.out
    assert 'instance_ids: {"0": "i-0abc"}' in result.out
    assert "The stack is destroyed" in result.out
    verbose = cli("infra", run, "-v", cwd=repo)
    assert "instanceType: g5.xlarge" in verbose.out
    as_json = json.loads(cli("infra", run, "--json", cwd=repo).out)
    assert [r["kind"] for r in as_json["records"]] == ["plan", "up", "destroy"]


def test_infra_reads_records_of_the_earlier_layout_and_rm_removes_both(
    dstack_home: Path, repo: Path
) -> None:
    """Stores written before the records left the run's prefix keep them at
    ``repos/<repo>/runs/<run>/infra/<kind>.json``: still shown; `dstack rm` removes the
    records wherever they are."""
    from dstack.models import dump

    cli = Dstack(dstack_home)
    run = cli.run_detached("echo", cwd=repo)
    cli.wait_status(run, repo, lambda s: s == "done")
    storage = LocalStorage(dstack_home / "store")
    repo_id = "github.com/acme/mnist"
    plan = InfraRecord(kind="plan", stack=run, at=1.0, summary={"create": 5}, by="ada@laptop")
    storage.put(state.legacy_infra_key(repo_id, run, "plan"), dump(plan))
    up = InfraRecord(kind="up", stack=run, at=2.0, outputs={"instance_ids": {"0": "i-0abc"}})
    state.write_infra_record(storage, repo_id, run, up)
    assert state.infra_key(repo_id, run, "up") != state.legacy_infra_key(repo_id, run, "up")
    as_json = json.loads(cli("infra", run, "--json", cwd=repo).out)
    assert [r["kind"] for r in as_json["records"]] == ["plan", "up"]
    assert cli("rm", run, "-y", cwd=repo).code == 0
    assert not storage.exists(state.legacy_infra_key(repo_id, run, "plan"))
    assert not storage.exists(state.infra_key(repo_id, run, "up"))


def test_prune_on_a_local_store_says_what_it_needs(dstack_home: Path, repo: Path) -> None:
    result = Dstack(dstack_home)("prune", "-y", cwd=repo)
    assert result.code == 1
    assert "S3 state store" in result.err and len(result.err.strip().splitlines()) == 1


def test_prune_dry_run_lists_stale_stacks_of_a_bucket(
    dstack_home: Path, repo: Path, moto_server: MotoServer, s3_bucket: str
) -> None:
    """Against moto (store and EC2); no engine, so this is what a dry run can show."""
    from dstack.models import StackRecord
    from dstack.storage.s3.storage import S3Storage

    storage = S3Storage(s3_bucket, endpoint_url=moto_server.endpoint_url)
    state.write_stack_record(storage, StackRecord(
        stack="gone-gnu-3", repo_id="github.com/acme/mnist", run_name="gone-gnu-3",
        created_at=1.0, backend_url=f"s3://{s3_bucket}/pulumi",
    ))  # fmt: skip
    write_config(dstack_home, {
        "backend": "aws",
        "aws": {"bucket": s3_bucket, "region": "us-east-1", "endpoint_url": moto_server.endpoint_url},
        "compute": {"type": "aws"},
    })  # fmt: skip
    env = {**os.environ, "AWS_ENDPOINT_URL_EC2": moto_server.endpoint_url,
           "AWS_ENDPOINT_URL_IAM": moto_server.endpoint_url}  # fmt: skip
    result = Dstack(dstack_home, env)("prune", "--dry-run", cwd=repo)
    assert result.code == 0, result.err
    assert "would destroy stack gone-gnu-3 (run is gone)" in result.out


def test_cli_and_local_runs_never_import_cloud_sdks(dstack_home: Path, repo: Path) -> None:
    """In a fresh interpreter: importing the CLI, `--help`, and a whole local run."""
    script = f"""
import sys
import dstack.cli.main
from dstack.cli.main import main
heavy = {HEAVY!r}
loaded = lambda: sorted(m for m in sys.modules if m.split(".")[0] in heavy)
assert loaded() == [], loaded()
sys.argv = ["dstack", "run", "echo"]
try:
    main()
except SystemExit as exc:
    assert exc.code == 0, exc.code
print("HEAVY:", loaded(), file=sys.stderr)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=repo, capture_output=True, text=True, timeout=120,
        env={**os.environ, "DSTACK_HOME": str(dstack_home)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "hello" in result.stdout
    assert "HEAVY: []" in result.stderr


def test_help_lists_the_cloud_commands(dstack_home: Path, repo: Path) -> None:
    cli = Dstack(dstack_home)
    help_text = cli("--help", cwd=repo).out
    assert "infra" in help_text and "prune" in help_text
    assert "--plan" in cli("run", "--help", cwd=repo).out
