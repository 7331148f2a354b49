"""Fixtures of the AWS compute tests: moto on 127.0.0.1 (S3 for the store, EC2 for instances),
and the double that stands in for the Pulumi Automation API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.compute.aws.doubles import FakeAutomation
from tests.moto_server import aws_test_env, fresh_bucket, moto_server, s3_bucket  # noqa: F401


@pytest.fixture
def automation() -> FakeAutomation:
    return FakeAutomation()


@pytest.fixture
def bucket(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh bucket on the session's moto server, named like a dstack state bucket."""
    with fresh_bucket(request.getfixturevalue("moto_server"), "dstack") as name:
        yield name


@pytest.fixture(autouse=True)
def _no_caller_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never look the caller's address up: they name it."""
    monkeypatch.setenv("DSTACK_CALLER_IP", "203.0.113.7")
