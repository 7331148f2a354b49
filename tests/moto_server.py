"""A moto S3/AWS server on 127.0.0.1 for tests, reusable by any test package.

``start_moto()`` starts ``moto.server.ThreadedMotoServer`` on a free port in a background thread
and returns a :class:`MotoServer` (``endpoint_url``, ``client()``, ``stop()``). Nothing here talks
to any other network: the environment gets dummy credentials, no profile, no shared config files
and no instance-metadata lookups, so boto3 can only ever reach the moto endpoint it is given.

Fixtures (import them into a ``conftest.py``)::

    from tests.moto_server import aws_test_env, moto_server, s3_bucket  # noqa: F401

- ``aws_test_env`` (session): the hermetic AWS environment described above;
- ``moto_server`` (session): one server for the whole run;
- ``s3_bucket`` (function): a fresh, empty bucket name; emptied and deleted afterwards.

``fresh_bucket`` is that bucket as a context manager, for fixtures that name theirs otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

#: what the tests' AWS environment holds; everything else AWS-related is removed
DUMMY_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
_REMOVED_AWS_ENV = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
)


@dataclass
class MotoServer:
    """A running moto server. ``stop()`` is idempotent."""

    endpoint_url: str
    _server: Any = field(repr=False)
    _stopped: bool = field(default=False, repr=False)

    def client(self, service: str = "s3", **kwargs: Any) -> Any:
        """A boto3 client for ``service`` pointed at this server."""
        import boto3

        return boto3.client(
            service, endpoint_url=self.endpoint_url, region_name="us-east-1", **kwargs
        )

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self._server.stop()


def start_moto() -> MotoServer:
    """Start a moto server on 127.0.0.1 on a free port, in a background thread."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    _list_moto_modules_once()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return MotoServer(endpoint_url=f"http://{host}:{port}", _server=server)


def _list_moto_modules_once() -> None:
    """Moto's server lists and stats its own package folder (some 200 entries) on every request,
    under its dispatcher's lock, to tell which service a request is for: about a third of the
    CPU it spends on a small S3 request. The list cannot change while the server runs, so it is
    taken once. Every client of the server gains the same; the tests and ``scripts/bench`` run
    faster."""
    import moto.backends

    if getattr(moto.backends.list_of_moto_modules, "dstack_once", False):
        return
    names = tuple(moto.backends.list_of_moto_modules())

    def listed() -> tuple[str, ...]:
        return names

    listed.dstack_once = True  # type: ignore[attr-defined]
    moto.backends.list_of_moto_modules = listed  # type: ignore[assignment]


def apply_dummy_aws_env(mp: pytest.MonkeyPatch) -> None:
    """Make boto3 hermetic: dummy credentials, no profile, no config files, no IMDS."""
    for name in _REMOVED_AWS_ENV:
        mp.delenv(name, raising=False)
    for name, value in DUMMY_AWS_ENV.items():
        mp.setenv(name, value)


def empty_and_delete_bucket(client: Any, bucket: str, attempts: int = 10) -> None:
    """Delete every object (and unfinished multipart upload) of ``bucket``, then the bucket;
    again, up to ``attempts`` times half a second apart, while a process the test started
    (a runner finishing) still writes to it."""
    from botocore.exceptions import ClientError

    for attempt in range(attempts):
        _empty(client, bucket)
        try:
            client.delete_bucket(Bucket=bucket)
            return
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "BucketNotEmpty" or attempt == attempts - 1:
                raise
            time.sleep(0.5)


def _empty(client: Any, bucket: str) -> None:
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    for upload in uploads:
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])


@pytest.fixture(scope="session")
def aws_test_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        apply_dummy_aws_env(mp)
        yield


@pytest.fixture(scope="session")
def moto_server(aws_test_env: None) -> Iterator[MotoServer]:
    server = start_moto()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def fresh_bucket(
    server: MotoServer, prefix: str = "test", *, tolerate_cleanup_errors: bool = False
) -> Iterator[str]:
    """A new empty bucket named ``PREFIX-<random>`` on ``server``; emptied and deleted on exit
    (a failure to do so is raised unless ``tolerate_cleanup_errors``)."""
    client = server.client()
    name = f"{prefix}-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name)
    try:
        yield name
    finally:
        try:
            empty_and_delete_bucket(client, name)
        except Exception:
            if not tolerate_cleanup_errors:
                raise


@pytest.fixture
def s3_bucket(moto_server: MotoServer) -> Iterator[str]:
    """A fresh empty bucket on the session's moto server."""
    with fresh_bucket(moto_server) as name:
        yield name
