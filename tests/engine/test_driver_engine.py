"""dstack's driver with the real Pulumi engine: the whole lifecycle, a failed bootstrap
update, a real engine error, the user's Pulumi settings, and two clients of one stack. The
programs are dstack's own with stand-in cloud resources (``cloudless``); the state is in a
moto bucket (see ``conftest``)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from dstack.compute.aws.bootstrap import BOOTSTRAP_STACK, create_or_adopt_bootstrap
from dstack.errors import ComputeError
from dstack.store_config import S3StoreConfig
from stacks.bootstrap import BootstrapArgs
from stacks.program import bootstrap_program
from tests.engine.cloudless import existing
from tests.engine.conftest import REGION, ROOT, driver, stack_keys, workspace
from tests.moto_server import MotoServer

pytestmark = pytest.mark.usefixtures("cloudless")


class Records:
    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, kind: str, fields: dict[str, Any]) -> None:
        self.items.append((kind, fields))

    def of(self, kind: str) -> dict[str, Any]:
        return [fields for k, fields in self.items if k == kind][-1]


def bootstrap(bucket: str, **kwargs: Any) -> Any:
    args = BootstrapArgs(bucket_name=bucket, adopt_bucket=True, **kwargs)
    return lambda: bootstrap_program(args)


def work_dirs() -> set[str]:
    return {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("dstack-pulumi-")}


def test_the_whole_lifecycle_of_a_stack(
    store: S3StoreConfig, cloud: Path, moto: MotoServer, bucket: str
) -> None:
    before = work_dirs()
    records = Records()
    lines: list[str] = []
    stacks = driver(store, cloud, lines)

    outputs = stacks.provision("life-owl-1", bootstrap(bucket), records)

    plan = records.of("plan")
    assert plan["ok"] and plan["summary"]["create"] >= 10  # the stand-ins and the component
    assert "pulumi-python:dynamic/standin/iam:Role" in plan["diff"]  # the engine's own diff
    assert "dstack:aws:Bootstrap" in plan["diff"]
    up = records.of("up")
    assert up["ok"] and up["summary"]["create"] == plan["summary"]["create"]
    assert outputs["bucket_name"] == bucket and outputs == up["outputs"]
    assert outputs["runner_role_arn"].startswith("arn:aws:standin:::Role/")
    made = existing(cloud)
    assert {"Bucket", "BucketPolicy", "Role", "RolePolicy", "InstanceProfile"} <= set(made)
    assert any(line.startswith("Updating (life-owl-1)") for line in lines)
    keys = stack_keys(moto, bucket)
    assert "pulumi/.pulumi/stacks/dstack/life-owl-1.json" in keys
    assert not [k for k in keys if "/locks/" in k]

    assert stacks.destroy("life-owl-1", records) is True
    down = records.of("destroy")
    assert down["ok"] and down["summary"]["delete"] == plan["summary"]["create"]
    # retain_on_delete: the bucket and its settings are never deleted (a team's bucket)
    assert set(existing(cloud)) <= BUCKET_KINDS and "Bucket" in existing(cloud)
    assert not [k for k in stack_keys(moto, bucket) if k.endswith("/life-owl-1.json")]
    assert work_dirs() <= before  # the Automation API's work folders are gone


def test_a_failed_update_of_the_bootstrap_leaves_it_in_place(
    store: S3StoreConfig, cloud: Path, moto: MotoServer, bucket: str
) -> None:
    first = create_or_adopt_bootstrap(
        store, region=REGION, driver=driver(store, cloud), s3_client=moto.client()
    )
    made = existing(cloud)
    failing = driver(
        store, cloud,
        DSTACK_STANDIN_FAIL="BucketServerSideEncryptionConfiguration=AccessDenied: kms:DescribeKey",
    )  # fmt: skip
    with pytest.raises(ComputeError) as caught:
        create_or_adopt_bootstrap(
            store, region=REGION, kms_key_id="alias/team", driver=failing,
            s3_client=moto.client(),
        )  # fmt: skip
    message = str(caught.value)
    assert "\n" not in message and "AccessDenied: kms:DescribeKey" in message
    assert "left in place" in message and "destroyed" not in message
    # the policy, the role, the profile: all still there (the engine does not roll back the
    # updates that went through before the failure, but nothing was destroyed)
    assert {kind: len(items) for kind, items in existing(cloud).items()} == {
        kind: len(items) for kind, items in made.items()
    }
    keys = stack_keys(moto, bucket)
    assert f"pulumi/.pulumi/stacks/dstack/{BOOTSTRAP_STACK}.json" in keys
    assert not [k for k in keys if "/locks/" in k]
    again = create_or_adopt_bootstrap(
        store, region=REGION, driver=driver(store, cloud), s3_client=moto.client()
    )
    assert again.outputs == first.outputs


def test_a_real_engine_error_reaches_the_user_as_one_line(
    store: S3StoreConfig, cloud: Path, moto: MotoServer, bucket: str
) -> None:
    records = Records()
    failing = driver(store, cloud, DSTACK_STANDIN_FAIL="Role=LimitExceeded: roles per account")
    with pytest.raises(ComputeError) as caught:
        failing.provision("fail-elk-1", bootstrap(bucket), records)
    message = str(caught.value)
    assert "\n" not in message, message
    assert message.startswith("creating stack fail-elk-1 failed: ")
    assert "LimitExceeded: roles per account" in message
    assert message.count("LimitExceeded") == 1
    assert "what it had created was destroyed" in message
    assert len(message) < 400
    assert records.of("destroy")["ok"] is True
    assert set(existing(cloud)) <= BUCKET_KINDS
    assert not [k for k in stack_keys(moto, bucket) if k.endswith("/fail-elk-1.json")]


def test_the_users_pulumi_settings_neither_move_nor_break_the_stacks(
    store: S3StoreConfig, cloud: Path, moto: MotoServer, bucket: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    elsewhere = tmp_path / "users-own-backend"
    elsewhere.mkdir()
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("team secret\n")
    monkeypatch.setenv("PULUMI_BACKEND_URL", elsewhere.as_uri())
    monkeypatch.setenv("PULUMI_ACCESS_TOKEN", "pul-0000000000000000000000000000000000000000")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE_FILE", str(passphrase))
    records = Records()

    driver(store, cloud).provision("env-fox-1", bootstrap(bucket), records)

    assert records.of("up")["ok"]
    assert "pulumi/.pulumi/stacks/dstack/env-fox-1.json" in stack_keys(moto, bucket)
    assert list(elsewhere.iterdir()) == []  # nothing went to the user's own backend
    # a teammate who sets the team's passphrase directly opens the same stack
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "team secret")
    assert driver(store, cloud).destroy("env-fox-1", records) is True
    assert records.of("destroy")["ok"]


def test_two_clients_updating_one_stack(
    store: S3StoreConfig, cloud: Path, moto: MotoServer, bucket: str
) -> None:
    """The second client waits for nothing and changes nothing: one clear line; the first
    finishes; no lock is left and the state stays readable."""
    backend = workspace(store, cloud).backend_url
    env = {**os.environ, "DSTACK_STANDIN_SLOW": "Role=20", "DSTACK_STANDIN_CLOUD": str(cloud)}

    def client() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.engine.client", backend, "shared-yak-1"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip

    out, _ = client().communicate(timeout=300)  # the stack exists: what follows are updates
    assert out.strip().splitlines()[-1] == "ok"
    first = client()
    deadline = time.monotonic() + 240
    while not (cloud / "Role.busy").exists():
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.1)
    second_out, _ = client().communicate(timeout=300)
    first_out, _ = first.communicate(timeout=300)
    assert first_out.strip().splitlines()[-1] == "ok"
    assert second_out.strip().splitlines() == [
        "error: stack shared-yak-1 is being updated by someone else (the engine holds its "
        "lock): wait until that update ends, then retry"
    ]
    assert not [k for k in stack_keys(moto, bucket) if "/locks/" in k]
    assert driver(store, cloud).destroy("shared-yak-1", Records()) is True  # still readable


#: the bootstrap's bucket and its settings: retain_on_delete, they outlive the stack
BUCKET_KINDS = {
    "Bucket",
    "BucketOwnershipControls",
    "BucketPublicAccessBlock",
    "BucketVersioning",
    "BucketServerSideEncryptionConfiguration",
    "BucketPolicy",
    "BucketLifecycleConfiguration",
}
