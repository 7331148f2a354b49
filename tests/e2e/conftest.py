"""The state store the end-to-end tests run against: ``store`` is ``local`` or ``s3``.

Tests that concern runs, logs and artifacts take the ``dstack`` fixture, which depends on
``store``, so each runs once per store: on this machine's folder, and on a fresh bucket of the
session's moto server (through ``DSTACK_AWS_S3_BUCKET`` and ``DSTACK_AWS_ENDPOINT_URL``, the
way CI would point dstack at a bucket). A test about something else pins the store with
``@pytest.mark.parametrize("store", ["local"], indirect=True)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dstack.storage.base import Storage
from tests.e2e.cli import Dstack
from tests.moto_server import MotoServer, aws_test_env, moto_server, s3_bucket  # noqa: F401


@dataclass
class Store:
    """Where the CLI under test keeps its state, and how to look at it from the test."""

    kind: str
    env: dict[str, str] = field(default_factory=dict)
    bucket: str | None = None
    moto: MotoServer | None = None

    def storage(self) -> Storage:
        """The store the CLI uses, opened in the test process (the environment is shared)."""
        from dstack.storage import default_storage

        return default_storage()


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    if request.param == "local":
        yield Store("local")
        return
    moto: MotoServer = request.getfixturevalue("moto_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    env = {"DSTACK_AWS_S3_BUCKET": bucket, "DSTACK_AWS_ENDPOINT_URL": moto.endpoint_url}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield Store("s3", env, bucket, moto)


@pytest.fixture
def dstack(dstack_home: Path, store: Store) -> Dstack:
    """The `dstack` command with its own DSTACK_HOME, on the test's store."""
    return Dstack(dstack_home, store.env)
