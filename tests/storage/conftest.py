"""Fixtures of the storage tests: one ``storage`` fixture per backend, so the conformance suite
holds ``LocalStorage`` and ``S3Storage`` (on a moto server on 127.0.0.1) to the same contract —
``S3Storage`` twice: moving files through the AWS CRT, and through botocore alone (what it does
where the CRT cannot be used, ``DSTACK_S3_CRT=0``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dstack.storage.base import Storage
from dstack.storage.local import LocalStorage
from tests.moto_server import MotoServer, aws_test_env, moto_server, s3_bucket  # noqa: F401


def make_s3_storage(moto: MotoServer, bucket: str, **kwargs: object) -> Storage:
    from dstack.storage.s3.storage import S3Storage

    kwargs.setdefault("retry_deadline", 10.0)
    return S3Storage(bucket, endpoint_url=moto.endpoint_url, **kwargs)  # type: ignore[arg-type]


def use_engine(mp: pytest.MonkeyPatch, engine: str) -> None:
    """Make new ``S3Storage``s move files through ``engine``: ``crt`` or ``botocore``."""
    from dstack.storage.s3 import crt as s3_crt

    mp.setenv(s3_crt.DISABLE_ENV, "1" if engine == "crt" else "0")
    assert s3_crt.engine() == (engine == "crt"), "awscrt is not installed"


@pytest.fixture(params=["crt", "botocore"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test runs once per way ``S3Storage`` moves files."""
    use_engine(monkeypatch, request.param)
    return str(request.param)


@pytest.fixture(params=["local", "s3", "s3-botocore"])
def storage(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Storage:
    """Each conformance test runs once per backend: a folder, and a fresh bucket on moto."""
    if request.param == "local":
        return LocalStorage(tmp_path / "store")
    use_engine(monkeypatch, "crt" if request.param == "s3" else "botocore")
    moto: MotoServer = request.getfixturevalue("moto_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    return make_s3_storage(moto, bucket)
