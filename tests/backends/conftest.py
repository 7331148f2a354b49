"""Fixtures of the storage tests: one ``storage`` fixture per backend, so the conformance suite
holds ``LocalStorage`` and ``S3Storage`` (on a moto server on 127.0.0.1) to the same contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from dstack.backends.base import Storage
from dstack.backends.local_storage import LocalStorage
from tests.moto_server import MotoServer, aws_test_env, moto_server, s3_bucket  # noqa: F401


def make_s3_storage(moto: MotoServer, bucket: str, **kwargs: object) -> Storage:
    from dstack.backends.s3_storage import S3Storage

    kwargs.setdefault("retry_deadline", 10.0)
    return S3Storage(bucket, endpoint_url=moto.endpoint_url, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """Each conformance test runs once per backend: a folder, and a fresh bucket on moto."""
    if request.param == "local":
        return LocalStorage(tmp_path / "store")
    moto: MotoServer = request.getfixturevalue("moto_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    return make_s3_storage(moto, bucket)
