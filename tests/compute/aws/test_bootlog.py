"""The boot log's standard-library upload: a SigV4 PutObject with the instance role's
credentials from IMDSv2, checked by moto with its IAM enforcement on (which verifies the
signature and the role's policy). The box tier (``scripts/test-cloud``, scenario d) runs it
on an instance whose boot failed."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dstack.compute.aws.bootlog import TAIL_BYTES, UPLOADER
from tests.cloud.box import Imds
from tests.moto_server import MotoServer

BUCKET = "boot-logs"
_ROLES = itertools.count()
KEY = "infra/runs/r/wise-owl-1/boot-0.log"


@pytest.fixture
def role_credentials(moto_server: MotoServer) -> Iterator[dict[str, Any]]:
    """A role allowed to put ``KEY`` only, assumed through STS; IAM enforcement on after."""
    import moto.settings

    name = f"runner-{next(_ROLES)}"
    moto_server.client("s3").create_bucket(Bucket=BUCKET)
    iam = moto_server.client("iam")
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
         "Action": "sts:AssumeRole"}]}  # fmt: skip
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
    allow = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:PutObject",
         "Resource": f"arn:aws:s3:::{BUCKET}/{KEY}"}]}  # fmt: skip
    iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(allow))
    creds = moto_server.client("sts").assume_role(
        RoleArn=role["Role"]["Arn"], RoleSessionName="i-1"
    )["Credentials"]
    saved = moto.settings.INITIAL_NO_AUTH_ACTION_COUNT
    moto.settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    try:
        yield creds
    finally:
        moto.settings.INITIAL_NO_AUTH_ACTION_COUNT = saved


def _upload(moto_server: MotoServer, creds: dict[str, Any], log: Path, key: str) -> str:
    imds = Imds("i-1", "runner", lambda: creds)
    try:
        env = {
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url,
            "AWS_ENDPOINT_URL": moto_server.endpoint_url,
            "PATH": "/usr/bin:/bin",
        }
        done = subprocess.run(
            [sys.executable, "-", BUCKET, key, str(log), "us-east-1"],
            input=UPLOADER, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stderr
    finally:
        imds.close()


def _read(moto_server: MotoServer, key: str) -> bytes:
    import moto.settings

    saved = moto.settings.INITIAL_NO_AUTH_ACTION_COUNT
    moto.settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")  # type: ignore[assignment]
    try:
        body = moto_server.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()
        return body  # type: ignore[no-any-return]
    finally:
        moto.settings.INITIAL_NO_AUTH_ACTION_COUNT = saved


def test_the_log_reaches_the_bucket_signed_with_the_role(
    moto_server: MotoServer, role_credentials: dict[str, Any], tmp_path: Path
) -> None:
    log = tmp_path / "boot.log"
    log.write_bytes(b"dstack-boot 10:00:00.000 installing python3-venv\nE: Unable to locate\n")
    assert "failed" not in _upload(moto_server, role_credentials, log, KEY)
    assert _read(moto_server, KEY) == log.read_bytes()


def test_only_the_last_mebibyte_is_sent(
    moto_server: MotoServer, role_credentials: dict[str, Any], tmp_path: Path
) -> None:
    log = tmp_path / "boot.log"
    log.write_bytes(b"x" * (TAIL_BYTES + 10) + b"\nlast line\n")
    _upload(moto_server, role_credentials, log, KEY)
    body = _read(moto_server, KEY)
    assert len(body) == TAIL_BYTES and body.endswith(b"last line\n")


def test_a_bad_signature_or_a_key_outside_the_role_is_refused(
    moto_server: MotoServer, role_credentials: dict[str, Any], tmp_path: Path
) -> None:
    """The checks above can fail: moto refuses a wrong secret, and a key the role lacks."""
    log = tmp_path / "boot.log"
    log.write_text("boot\n")
    forged = dict(role_credentials, SecretAccessKey="not-the-secret")
    assert "boot log upload failed" in _upload(moto_server, forged, log, KEY)
    other = KEY.replace("boot-0", "boot-1")
    assert "boot log upload failed" in _upload(moto_server, role_credentials, log, other)
