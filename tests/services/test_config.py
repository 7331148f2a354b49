"""``dstack.services.config``: the checks a bucket must pass to hold the state, and the file.

Buckets live on the session's moto server; answers moto cannot give (403 on one request) come
from ``tests.fault_proxy.FaultProxy`` in front of it.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from typing import Any

import pytest

from dstack import settings
from dstack.errors import ConfigError, StorageError
from dstack.services import config as service
from dstack.services.config import AwsConfig, BucketError
from tests.fault_proxy import FaultProxy
from tests.moto_server import MotoServer


@pytest.fixture
def eu_bucket(moto_server: MotoServer) -> Iterator[str]:
    client = moto_server.client()
    name = "dstack-test-eu-bucket"
    client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    yield name
    client.delete_bucket(Bucket=name)


@pytest.fixture
def proxy(moto_server: MotoServer) -> Iterator[FaultProxy]:
    with FaultProxy(moto_server.endpoint_url) as proxy:
        yield proxy


def aws(moto: MotoServer | FaultProxy, bucket: str, **kwargs: Any) -> AwsConfig:
    url = moto.endpoint_url if isinstance(moto, MotoServer) else moto.url
    return AwsConfig(bucket=bucket, endpoint_url=url, **kwargs)


def test_a_good_bucket_passes_and_gives_its_region(moto_server: MotoServer, s3_bucket: str) -> None:
    checked = service.check_bucket(aws(moto_server, s3_bucket))
    assert checked.region == "us-east-1"
    assert service.check_bucket(aws(moto_server, s3_bucket, region="us-east-1")).region == (
        "us-east-1"
    )
    assert not list(moto_server.client().list_objects_v2(Bucket=s3_bucket).get("Contents", []))


def test_a_bucket_in_another_region(moto_server: MotoServer, eu_bucket: str) -> None:
    assert service.check_bucket(aws(moto_server, eu_bucket)).region == "eu-west-1"
    with pytest.raises(BucketError) as info:
        service.check_bucket(aws(moto_server, eu_bucket, region="us-east-1"))
    message = str(info.value)
    assert "belongs to another AWS region" in message
    assert "eu-west-1" in message and "--region eu-west-1" in message


def test_a_missing_bucket_says_how_to_create_it(moto_server: MotoServer) -> None:
    with pytest.raises(BucketError) as info:
        service.check_bucket(aws(moto_server, "no-such-bucket-here", region="eu-west-1"))
    message = str(info.value)
    assert "does not exist" in message
    assert (
        f"aws s3 mb s3://no-such-bucket-here --region eu-west-1 "
        f"--endpoint-url {moto_server.endpoint_url}"
    ) in message
    assert "dstack config --backend aws --bucket no-such-bucket-here --create" in message


def test_no_access_to_the_bucket(proxy: FaultProxy, s3_bucket: str) -> None:
    proxy.fail_next(1, status=403, code="AccessDenied", message="Access Denied")
    with pytest.raises(BucketError, match="don't have access to the bucket"):
        service.check_bucket(aws(proxy, s3_bucket))


def test_a_read_only_bucket(proxy: FaultProxy, s3_bucket: str) -> None:
    proxy.fail_next(
        1,
        status=403,
        code="AccessDenied",
        message="Access Denied",
        match=lambda method, path: method == "PUT",
    )
    with pytest.raises(BucketError, match=r"can read the bucket .* but not write"):
        service.check_bucket(aws(proxy, s3_bucket))


def test_an_unreachable_endpoint_is_a_storage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "CHECK_DEADLINE", 0.5)
    with pytest.raises(StorageError, match="did not answer"):
        service.check_bucket(AwsConfig(bucket="some-bucket", endpoint_url="http://127.0.0.1:9"))


@pytest.mark.parametrize(
    "name", ["ab", "Team-Bucket", "team_bucket", "-team", "team-", "a..b", "xn--team", "x" * 64]
)
def test_invalid_bucket_names(name: str) -> None:
    with pytest.raises(BucketError, match="not valid"):
        service.validate_bucket_name(name)


@pytest.mark.parametrize("name", ["abc", "team-bucket", "dstack-123456789012-eu-west-1", "a.b.c"])
def test_valid_bucket_names(name: str) -> None:
    service.validate_bucket_name(name)


def test_no_bucket_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="--bucket"):
        service.check_bucket(AwsConfig())


def test_saving_keeps_what_other_tools_wrote() -> None:
    settings.save_config({"compute": {"type": "aws"}, "backend": "local"})
    service.save_aws(AwsConfig(bucket="team-bucket", region="eu-west-1", subnet="subnet-1"))
    assert settings.load_config() == {
        "backend": "aws",
        "aws": {"bucket": "team-bucket", "region": "eu-west-1", "subnet": "subnet-1"},
        "compute": {"type": "aws"},
    }
    assert stat.S_IMODE(settings.config_path().stat().st_mode) == 0o600
    service.save_local()
    assert settings.load_config()["backend"] == "local"
    assert service.saved_aws() == AwsConfig(
        bucket="team-bucket", region="eu-west-1", subnet="subnet-1"
    )
    assert settings.store_config().type == "local"


def test_merging_flags_into_the_saved_settings() -> None:
    saved = AwsConfig(bucket="b1", region="eu-west-1", profile="team")
    merged = saved.merged(bucket=None, region="", profile="ci", endpoint_url=None)
    assert merged == AwsConfig(bucket="b1", region=None, profile="ci")


def test_env_overrides_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    assert service.env_overrides() == []
    monkeypatch.setenv("DSTACK_AWS_S3_BUCKET", "ci")
    assert service.env_overrides() == ["DSTACK_AWS_S3_BUCKET"]


def test_defaults_need_no_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    assert service.default_region("no-such-profile") == "us-east-1"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    assert service.default_region(None) == "eu-central-1"
    assert service.default_bucket(AwsConfig(endpoint_url="http://127.0.0.1:9")) is None


def test_default_bucket_is_named_after_the_account(
    moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_server.endpoint_url)
    assert service.default_bucket(AwsConfig(region="eu-west-1")) == (
        "dstack-123456789012-eu-west-1"
    )
