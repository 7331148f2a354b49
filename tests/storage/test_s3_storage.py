"""What only ``S3Storage`` does: lazy boto3, its config, key prefixes, object metadata, multipart,
error mapping and retries. The shared contract is in ``test_storage_conformance.py``.

Faults come from ``tests.fault_proxy.FaultProxy`` between the store and moto: it answers with
real S3 error documents (503 SlowDown, 403 AccessDenied…) or drops connections, because moto
itself cannot be told to throttle, and does not enforce access in server mode without its IAM
auth mode — so the AccessDenied test exercises our parsing of S3's answer, not S3's policy.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from dstack.errors import AlreadyExistsError, ConfigError, NotFoundError, StorageError
from dstack.storage import open_storage
from dstack.storage.s3 import storage as s3_storage
from dstack.storage.s3.storage import S3Storage
from dstack.store_config import S3StoreConfig, dump_store, parse_store
from tests.fault_proxy import FaultProxy
from tests.moto_server import MotoServer

MiB = 1 << 20
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def proxy(moto_server: MotoServer) -> Iterator[FaultProxy]:
    with FaultProxy(moto_server.endpoint_url) as proxy:
        yield proxy


@pytest.fixture
def raw(moto_server: MotoServer) -> Any:
    """A plain boto3 client on moto, to look at what S3Storage really stored."""
    return moto_server.client()


def via(proxy: FaultProxy, bucket: str, **kwargs: Any) -> S3Storage:
    kwargs.setdefault("retry_deadline", 10.0)
    return S3Storage(bucket, endpoint_url=proxy.url, **kwargs)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# module and configuration


def test_importing_the_module_does_not_import_boto3() -> None:
    code = (
        "import sys\n"
        "import dstack.storage.s3.storage, dstack.settings\n"
        "dstack.storage.s3.storage.S3Storage('bucket', region='eu-west-1').describe()\n"
        "loaded = sorted(m for m in ('boto3', 'botocore', 's3transfer') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


def test_config_holds_no_credentials_and_rebuilds_the_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSECRETVALUE123")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-key")
    storage = S3Storage(
        "team-bucket",
        region="eu-west-1",
        profile="team",
        endpoint_url="http://127.0.0.1:9",
        prefix="/dstack/state/",
    )
    config = storage.config()
    assert config == S3StoreConfig(
        bucket="team-bucket",
        region="eu-west-1",
        profile="team",
        endpoint_url="http://127.0.0.1:9",
        prefix="dstack/state",
    )
    text = dump_store(config)
    assert "AKIDSECRETVALUE123" not in text and "very-secret-key" not in text
    assert storage.describe() == "s3://team-bucket/dstack/state"
    rebuilt = open_storage(parse_store(text))
    assert isinstance(rebuilt, S3Storage) and rebuilt.config() == config
    assert S3Storage("b").describe() == "s3://b"
    assert S3Storage("b").config().prefix == ""


def test_polling_intervals_suit_a_paid_store() -> None:
    assert S3Storage.log_flush_interval == 0.25
    assert S3Storage.poll_interval == 0.25


def test_bad_configuration_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="no bucket"):
        S3Storage("")
    with pytest.raises(ConfigError, match="bucket"):
        parse_store({"type": "s3"})
    with pytest.raises(ConfigError, match="prefix"):
        S3Storage("b", prefix="a/../b")
    with pytest.raises(ConfigError, match="retry_deadline"):
        S3Storage("b", retry_deadline=-1)
    monkeypatch.setenv("DSTACK_S3_RETRY_DEADLINE", "soon")
    with pytest.raises(ConfigError, match="DSTACK_S3_RETRY_DEADLINE"):
        S3Storage("b")


def test_retry_deadline_defaults_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DSTACK_S3_RETRY_DEADLINE", raising=False)
    assert S3Storage("b").retry_deadline == 60.0
    monkeypatch.setenv("DSTACK_S3_RETRY_DEADLINE", "2.5")
    assert S3Storage("b").retry_deadline == 2.5
    assert S3Storage("b", retry_deadline=7).retry_deadline == 7.0


# what is stored


def test_prefix_scopes_every_operation(moto_server: MotoServer, s3_bucket: str, raw: Any) -> None:
    team = S3Storage(s3_bucket, endpoint_url=moto_server.endpoint_url, prefix="team/a")
    other = S3Storage(s3_bucket, endpoint_url=moto_server.endpoint_url, prefix="team/ab")
    whole = S3Storage(s3_bucket, endpoint_url=moto_server.endpoint_url)
    team.put("runs/r1", b"1")
    other.put("runs/r1", b"2")
    assert team.get("runs/r1") == b"1"
    assert [i.key for i in team.list_objects("")] == ["runs/r1"]
    assert [i.key for i in whole.list_objects("")] == ["team/a/runs/r1", "team/ab/runs/r1"]
    assert [i.key for i in team.list_objects("", after="runs/r0")] == ["runs/r1"]
    assert team.delete_prefix("") == 1
    assert other.get("runs/r1") == b"2"
    assert raw.get_object(Bucket=s3_bucket, Key="team/ab/runs/r1")["Body"].read() == b"2"


def test_file_mode_travels_as_object_metadata(
    moto_server: MotoServer, s3_bucket: str, raw: Any, tmp_path: Path, engine: str
) -> None:
    storage = S3Storage(s3_bucket, endpoint_url=moto_server.endpoint_url)
    script = tmp_path / "run.sh"
    script.write_bytes(b"#!/bin/sh\n")
    script.chmod(0o755)
    storage.upload_file(script, "x/run.sh")
    head = raw.head_object(Bucket=s3_bucket, Key="x/run.sh")
    assert head["Metadata"] == {"mode": "755"}
    # objects written by other tools have no mode: they come back not executable
    raw.put_object(Bucket=s3_bucket, Key="x/plain", Body=b"plain")
    storage.download_file("x/plain", tmp_path / "plain")
    assert not os.access(tmp_path / "plain", os.X_OK)


def test_large_files_use_multipart_transfers(
    moto_server: MotoServer, s3_bucket: str, raw: Any, tmp_path: Path, engine: str
) -> None:
    storage = S3Storage(s3_bucket, endpoint_url=moto_server.endpoint_url)
    storage.multipart_threshold = storage.multipart_chunksize = 5 * MiB
    data = os.urandom(12 * MiB)
    (tmp_path / "big").write_bytes(data)
    storage.upload_file(tmp_path / "big", "big")
    etag = raw.head_object(Bucket=s3_bucket, Key="big")["ETag"]
    assert etag.strip('"').endswith("-3")  # three parts
    storage.download_file("big", tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == data


def test_folder_markers_are_not_listed_but_are_deleted(
    moto_server: MotoServer, s3_bucket: str, raw: Any
) -> None:
    storage = S3Storage(s3_bucket, endpoint_url=moto_server.endpoint_url)
    raw.put_object(Bucket=s3_bucket, Key="runs/", Body=b"")  # made by the AWS console
    storage.put("runs/r1", b"x")
    assert [i.key for i in storage.list_objects("runs")] == ["runs/r1"]
    assert storage.delete_prefix("runs") == 1
    assert raw.list_objects_v2(Bucket=s3_bucket).get("KeyCount") == 0


# request counts


def test_listing_reads_pages_lazily(proxy: FaultProxy, s3_bucket: str) -> None:
    storage = via(proxy, s3_bucket)
    storage.list_page_size = 10
    for i in range(35):
        storage.put(f"logs/{i:03d}", b"x")
    before = proxy.requests
    listing = storage.list_objects("logs/")
    assert [i.key for i in itertools.islice(listing, 5)] == [f"logs/{i:03d}" for i in range(5)]
    listing.close()  # type: ignore[attr-defined]
    assert proxy.requests - before == 1
    before = proxy.requests
    assert len(list(storage.list_objects("logs/"))) == 35
    assert proxy.requests - before == 4
    before = proxy.requests
    after = [i.key for i in storage.list_objects("logs/", after="logs/029")]
    assert after == [f"logs/{i:03d}" for i in range(30, 35)]
    assert proxy.requests - before == 1


def test_delete_prefix_deletes_in_batches(
    proxy: FaultProxy, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3_storage, "_DELETE_BATCH", 7)
    storage = via(proxy, s3_bucket)
    storage.list_page_size = 10
    for i in range(25):
        storage.put(f"old/{i:03d}", b"x")
    storage.put("keep", b"x")
    start = len(proxy.log)
    assert storage.delete_prefix("old/") == 25
    deletes = [path for method, path in proxy.log[start:] if method == "POST" and "delete" in path]
    assert len(deletes) == 4  # 7 + 7 + 7 + 4
    assert [i.key for i in storage.list_objects("")] == ["keep"]


# error mapping


def test_missing_bucket(moto_server: MotoServer, tmp_path: Path) -> None:
    storage = S3Storage("no-such-bucket-here", endpoint_url=moto_server.endpoint_url)
    message = "bucket no-such-bucket-here does not exist: run `dstack config`"
    for call in (
        lambda: storage.get("k"),
        lambda: storage.put("k", b"x"),
        lambda: storage.put("k", b"x", if_absent=True),
        lambda: list(storage.list_objects("")),
        lambda: storage.delete_prefix(""),
        lambda: storage.download_file("k", tmp_path / "k"),
    ):
        with pytest.raises(StorageError) as info:
            call()
        assert str(info.value) == message
        assert not isinstance(info.value, NotFoundError)
        assert isinstance(info.value.__cause__, ClientError)


def test_access_denied(proxy: FaultProxy, s3_bucket: str) -> None:
    storage = via(proxy, s3_bucket)
    proxy.fail_next(1, status=403, code="AccessDenied", message="Access Denied")
    with pytest.raises(StorageError) as info:
        storage.put("k", b"x")
    assert str(info.value) == (
        f"no access to s3://{s3_bucket} (AccessDenied): check your AWS credentials/profile"
    )
    proxy.fail_next(1, status=403, code="AccessDenied", message="Access Denied")
    with pytest.raises(StorageError, match=r"no access to .*\(403\)"):  # HEAD has no body
        storage.exists("k")
    assert proxy.faults == 2 and proxy.pending == 0  # not retried


def test_other_client_errors_carry_code_and_message(proxy: FaultProxy, s3_bucket: str) -> None:
    storage = via(proxy, s3_bucket)
    proxy.fail_next(1, status=400, code="InvalidArgument", message="Bad things.")
    with pytest.raises(StorageError, match=r"\(InvalidArgument: Bad things\.\)"):
        storage.get("k")
    assert proxy.requests == 1


def test_conditional_write_conflict_is_already_exists(proxy: FaultProxy, s3_bucket: str) -> None:
    storage = via(proxy, s3_bucket)
    proxy.fail_next(
        1, status=409, code="ConditionalRequestConflict", message="A conflicting operation…"
    )
    with pytest.raises(AlreadyExistsError):
        storage.put("names/x", b"x", if_absent=True)


def test_no_credentials(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    storage = S3Storage("b", endpoint_url=moto_server.endpoint_url)
    with pytest.raises(StorageError) as info:
        storage.get("k")
    assert str(info.value) == "no AWS credentials found: set AWS_PROFILE or run `aws configure`"


def test_unknown_profile(moto_server: MotoServer) -> None:
    storage = S3Storage("b", profile="nobody", endpoint_url=moto_server.endpoint_url)
    with pytest.raises(StorageError, match="AWS profile 'nobody' not found"):
        storage.get("k")


# retries


def test_unreachable_endpoint_gives_up_at_the_deadline() -> None:
    storage = S3Storage("b", endpoint_url=f"http://127.0.0.1:{closed_port()}", retry_deadline=2)
    with pytest.raises(StorageError) as info:
        storage.put("k", b"x")
    message = str(info.value)
    assert message.startswith("the S3 state store s3://b did not answer for 2s (")
    assert "EndpointConnectionError" in message
    assert message.endswith("): check your network or endpoint")
    assert "\n" not in message
    assert isinstance(info.value.__cause__, EndpointConnectionError)


def test_throttling_burst_is_ridden_out(proxy: FaultProxy, s3_bucket: str, tmp_path: Path) -> None:
    storage = via(proxy, s3_bucket)
    # botocore retries once itself (up to 1 s later for SlowDown), then our loop takes over
    proxy.fail_next(3)
    storage.put("k", b"value")
    assert proxy.faults == 3
    proxy.fail_next(4, status=500, code="InternalError", message="We encountered an error.")
    assert storage.get("k") == b"value"
    proxy.fail_next(4, status=503, code="ServiceUnavailable", message="Reduce your rate.")
    assert [i.key for i in storage.list_objects("")] == ["k"]
    proxy.fail_next(4, status=500, code="InternalError", message="We encountered an error.")
    storage.put("n", b"x", if_absent=True)  # a 5xx wrote nothing: no false AlreadyExists
    assert storage.get("n") == b"x"
    assert proxy.faults == 15 and proxy.pending == 0


def test_dropped_connections_are_ridden_out(
    proxy: FaultProxy, s3_bucket: str, tmp_path: Path, engine: str
) -> None:
    storage = via(proxy, s3_bucket)
    proxy.drop_next(3)
    storage.put("k", b"value")
    proxy.drop_next(3)
    assert storage.get("k") == b"value"
    source = tmp_path / "f"
    source.write_bytes(b"file")
    proxy.drop_next(3)
    storage.upload_file(source, "f")
    proxy.drop_next(3)
    storage.download_file("f", tmp_path / "g")
    assert (tmp_path / "g").read_bytes() == b"file"
    assert proxy.faults == 12


def test_multipart_transfer_survives_failed_parts(
    proxy: FaultProxy, s3_bucket: str, tmp_path: Path, engine: str
) -> None:
    storage = via(proxy, s3_bucket)
    storage.multipart_threshold = storage.multipart_chunksize = 5 * MiB
    data = os.urandom(11 * MiB)
    (tmp_path / "big").write_bytes(data)
    # part 2 fails more often than botocore retries it: the whole transfer is retried
    proxy.drop_next(3, match=lambda method, path: method == "PUT" and "partNumber=2" in path)
    sent: list[int] = []
    storage.upload_file(tmp_path / "big", "big", progress=sent.append)
    assert proxy.pending == 0
    assert sum(sent) == len(data) and min(sent) > 0
    proxy.fail_next(3, match=lambda method, path: method == "GET" and "big" in path)
    got: list[int] = []
    storage.download_file("big", tmp_path / "back", progress=got.append)
    assert proxy.pending == 0
    assert sum(got) == len(data)
    assert (tmp_path / "back").read_bytes() == data


def test_throttling_past_the_deadline_is_a_clear_error(proxy: FaultProxy, s3_bucket: str) -> None:
    storage = via(proxy, s3_bucket, retry_deadline=1)
    proxy.fail_next(10_000)
    with pytest.raises(StorageError) as info:
        storage.get("k")
    proxy.clear()
    assert str(info.value) == (
        f"the S3 state store s3://{s3_bucket} kept failing for 1s "
        "(SlowDown: Please reduce your request rate.): retry later or check your endpoint"
    )
