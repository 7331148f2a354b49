"""The engine tier: the real Pulumi engine (built by ``scripts/test-engine``, which points
``DSTACK_TEST_ENGINE`` at its folder) drives dstack's stacks, with the state in a moto S3
bucket on 127.0.0.1 used exactly as a team's bucket is (``s3://bucket/pulumi?endpoint=…``)
and the passphrase secrets provider. Cloud resources are stand-ins (``cloudless``). Without
``DSTACK_TEST_ENGINE`` every test here is skipped (``scripts/test`` does not run this tier).

The engine runs ``pulumi.dynamic`` resources through the plugin ``pulumi-resource-pulumi-
python``, which the Pulumi CLI's own distribution ships as a small script next to ``pulumi``;
the fixture writes the equivalent for this interpreter (it also drops the cloudless hook, which
the provider process does not need).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dstack.compute.aws.config import state_backend_url
from dstack.compute.aws.driver import StackDriver, Workspace
from dstack.store_config import S3StoreConfig
from tests.engine.plugin import write_dynamic_plugin
from tests.moto_server import (  # noqa: F401
    MotoServer,
    aws_test_env,
    fresh_bucket,
    moto_server,
)

ROOT = Path(__file__).resolve().parents[2]
HOOK = Path(__file__).resolve().parent / "hook"
ENGINE = os.environ.get("DSTACK_TEST_ENGINE")
REGION = "us-east-1"


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    if ENGINE:
        return
    skip = pytest.mark.skip(reason="the engine tier runs with scripts/test-engine")
    for item in items:
        if "tests/engine/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def engine_env(
    tmp_path_factory: pytest.TempPathFactory,
    aws_test_env: Any,  # noqa: F811
) -> Iterator[dict[str, str]]:
    """The process environment of the tier: the built engine and the dynamic-resource plugin
    first on PATH, a PULUMI_HOME of its own, the repository importable (the stand-ins'
    provider is pickled by reference), nothing of the user's Pulumi settings."""
    assert ENGINE, "DSTACK_TEST_ENGINE is not set"
    plugins = tmp_path_factory.mktemp("plugins")
    write_dynamic_plugin(plugins)
    saved = dict(os.environ)
    for key in [k for k in os.environ if k.startswith("PULUMI_")]:
        del os.environ[key]
    os.environ["PATH"] = os.pathsep.join([ENGINE, str(plugins), os.environ.get("PATH", "")])
    os.environ["PULUMI_HOME"] = str(tmp_path_factory.mktemp("pulumi-home"))
    os.environ["PULUMI_SKIP_UPDATE_CHECK"] = "true"
    os.environ["PULUMI_DIY_BACKEND_NO_LEGACY_WARNING"] = "true"
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(HOOK), str(ROOT), *filter(None, [saved.get("PYTHONPATH")])]
    )
    try:
        yield dict(os.environ)
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def moto(engine_env: dict[str, str], moto_server: MotoServer) -> MotoServer:  # noqa: F811
    return moto_server


@pytest.fixture
def bucket(moto: MotoServer) -> Iterator[str]:
    with fresh_bucket(moto, "dstack-engine", tolerate_cleanup_errors=True) as name:
        yield name


@pytest.fixture
def store(moto: MotoServer, bucket: str) -> S3StoreConfig:
    return S3StoreConfig(bucket=bucket, region=REGION, endpoint_url=moto.endpoint_url)


@pytest.fixture
def cloud(tmp_path: Path) -> Path:
    """Where the stand-in resources live (a file each)."""
    folder = tmp_path / "cloud"
    folder.mkdir()
    return folder


@pytest.fixture
def cloudless() -> Iterator[None]:
    """The stand-ins installed in this process (and removed after)."""
    import pulumi_aws as aws

    from dstack.compute.aws import engine
    from tests.engine import cloudless as module

    saved = [(getattr(aws, m), n, getattr(getattr(aws, m), n)) for m, n, _ in module.REPLACED]
    saved += [(aws.ssm, "get_parameter_output", aws.ssm.get_parameter_output)]
    saved += [(engine, "aws_plugins", engine.aws_plugins)]
    module.install()
    try:
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)


def workspace(store: S3StoreConfig, cloud: Path, **env: str) -> Workspace:
    return Workspace(
        project="dstack",
        backend_url=state_backend_url(store, REGION),
        region=REGION,
        env={"DSTACK_STANDIN_CLOUD": str(cloud), **env},
    )


def driver(
    store: S3StoreConfig, cloud: Path, lines: list[str] | None = None, **env: str
) -> StackDriver:
    return StackDriver(
        workspace(store, cloud, **env), on_output=None if lines is None else lines.append
    )


def stack_keys(moto: MotoServer, bucket: str) -> list[str]:
    """The keys of the Pulumi state in the bucket (stacks, history, locks)."""
    client = moto.client()
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="pulumi/"):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys
