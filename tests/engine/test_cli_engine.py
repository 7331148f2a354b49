"""The `dstack` command with the real Pulumi engine, as a user types it: a cloud run's stack
made, shown by `dstack infra`, and destroyed by `dstack prune` (with a stale stack no run
claims); Ctrl+C during `up`; and a platform team's `pulumi preview` of ``stacks/``. The
dstack process loads the stand-in cloud resources through ``hook/sitecustomize.py``; EC2
calls (prune's instance sweep) go to moto."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from dstack import state
from dstack.models import JobState, JobStatus
from dstack.storage.s3.storage import S3Storage
from dstack.store_config import S3StoreConfig
from stacks.bootstrap import BootstrapArgs
from stacks.program import bootstrap_program
from tests.e2e.cli import Dstack
from tests.engine.cloudless import existing
from tests.engine.conftest import ENGINE, REGION, ROOT, driver, stack_keys
from tests.moto_server import MotoServer
from tests.records import put_job_state

WORKFLOWS = """\
workflows:
  - name: train
    provider: bash
    commands:
      - echo hello
"""
REPO_ID = "github.com/acme/mnist"


@pytest.fixture
def repo(repo_factory: Any) -> Path:
    return repo_factory({".dstack/workflows.yaml": WORKFLOWS})


@pytest.fixture
def cli(
    dstack_home: Path, store: S3StoreConfig, moto: MotoServer, bucket: str, cloud: Path
) -> Dstack:
    (dstack_home / "config.yaml").write_text(yaml.safe_dump({
        "backend": "aws",
        "aws": {"bucket": bucket, "region": REGION, "endpoint_url": moto.endpoint_url},
        "compute": {"type": "aws"},
    }))  # fmt: skip
    return Dstack(dstack_home, {
        "DSTACK_TEST_CLOUDLESS": "1",
        "DSTACK_STANDIN_CLOUD": str(cloud),
        "AWS_ENDPOINT_URL_EC2": moto.endpoint_url,
        "AWS_ENDPOINT_URL_IAM": moto.endpoint_url,
    })  # fmt: skip


def locks(moto: MotoServer, bucket: str) -> list[str]:
    return [key for key in stack_keys(moto, bucket) if "/locks/" in key]


def test_a_cloud_run_through_the_cli_then_prune(
    cli: Dstack, repo: Path, store: S3StoreConfig, cloud: Path, moto: MotoServer, bucket: str,
    cloudless: None,
) -> None:  # fmt: skip
    run = cli.run_detached("train", cwd=repo)
    assert {"Instance", "SecurityGroup", "Role"} <= set(existing(cloud))
    assert f"pulumi/.pulumi/stacks/dstack/{run}.json" in stack_keys(moto, bucket)

    shown = cli("infra", run, cwd=repo)
    assert shown.code == 0, shown.err
    assert "plan: ok" in shown.out and "up: ok" in shown.out
    as_json = json.loads(cli("infra", run, "--json", cwd=repo).out)
    plan, up = as_json["records"][0], as_json["records"][1]
    assert plan["kind"] == "plan" and "standin/ec2:Instance" in plan["diff"]  # the engine's
    assert up["outputs"]["instance_ids"]["0"].startswith("instance-")

    # a stack no run claims (a crashed client's), made with the real engine too
    stale = driver(store, cloud)
    stale.provision("stale-emu-1", lambda: bootstrap_program(BootstrapArgs(bucket_name=bucket)),
                    lambda kind, fields: None)  # fmt: skip
    # the instance reports the job finished, as its runner would
    storage = S3Storage(bucket, endpoint_url=moto.endpoint_url)
    spec = state.read_job_spec(storage, REPO_ID, run, 0)
    put_job_state(storage, spec, "ada", JobState(status=JobStatus.DONE, updated_at=1.0))

    pruned = cli("prune", "-y", cwd=repo, timeout=600)
    assert pruned.code == 0, pruned.err
    assert f"stack {run}" in pruned.out and "stack stale-emu-1" in pruned.out
    # the stale stack's bucket and its settings are retain_on_delete
    assert "Bucket" in existing(cloud) and all(
        kind.startswith("Bucket") for kind in existing(cloud)
    )
    assert [k for k in stack_keys(moto, bucket) if k.endswith(".json") and "/stacks/" in k] == []
    after = cli("infra", run, cwd=repo)
    assert "The stack is destroyed" in after.out


def test_ctrl_c_during_up_cancels_the_engine_gracefully(
    cli: Dstack, repo: Path, cloud: Path, moto: MotoServer, bucket: str
) -> None:
    cli.env["DSTACK_STANDIN_SLOW"] = "Instance=15"
    process = cli.popen("run", "-d", "train", cwd=repo)
    deadline = time.monotonic() + 300
    while not (cloud / "Instance.busy").exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)  # to the dstack process only, as `kill -INT` would
    _, err = process.communicate(timeout=300)
    text = err.decode()
    assert process.returncode == 130, text
    last = text.strip().splitlines()[-1]
    assert last.startswith("Error: interrupted while creating stack ")
    assert "what it had created was destroyed" in last
    assert "cancelling gracefully" in text
    assert locks(moto, bucket) == []
    assert existing(cloud) == {}  # the instance the engine finished creating was destroyed
    assert [k for k in stack_keys(moto, bucket) if k.endswith(".json") and "/stacks/" in k] == []
    pruned = cli("prune", "-y", cwd=repo, timeout=600)
    assert pruned.code == 0, pruned.err


def test_a_platform_teams_preview_stops_where_the_aws_plugin_is_needed(
    tmp_path: Path, moto: MotoServer, bucket: str
) -> None:
    """`pulumi preview` of ``stacks/`` through the project's ``Pulumi.yaml`` (runtime python):
    it runs the program up to the first AWS resource, which needs the AWS plugin (not
    installed, and not installable here), and the engine says so."""
    if not shutil.which("pulumi-language-python", path=ENGINE):
        pytest.skip(
            "needs the Python language host (pulumi-language-python) next to the engine: its "
            "Go module is not served by the module proxy here, so scripts/test-engine cannot "
            "build it"
        )
    project = tmp_path / "project"
    shutil.copytree(ROOT / "stacks", project / "stacks")
    shutil.copy(ROOT / "Pulumi.yaml", project / "Pulumi.yaml")
    os.symlink(ROOT / ".venv", project / ".venv")
    env = {**os.environ, "PULUMI_CONFIG_PASSPHRASE": ""}
    backend = f"s3://{bucket}/pulumi?region={REGION}&endpoint={moto.endpoint_url.split('://')[1]}"
    backend += "&s3ForcePathStyle=true&disableSSL=true"

    def pulumi(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["pulumi", "--non-interactive", *args], cwd=project, env=env,
                              capture_output=True, text=True, timeout=600)  # fmt: skip

    assert pulumi("login", backend).returncode == 0
    assert pulumi("stack", "select", "--create", "example").returncode == 0
    preview = pulumi("preview", "--stack", "example")
    assert preview.returncode != 0
    assert "aws" in (preview.stdout + preview.stderr) and "plugin" in (
        preview.stdout + preview.stderr
    )
