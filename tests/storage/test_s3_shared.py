"""``S3Storage`` as `dstack config` and a forked runner use it: probing a bucket, and never
sharing a connection pool across a fork."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from dstack.storage.s3 import files as s3_files
from dstack.storage.s3.probe import BucketStatus
from dstack.storage.s3.storage import S3Storage
from tests.fault_proxy import FaultProxy
from tests.moto_server import MotoServer


def test_probe_a_bucket(moto_server: MotoServer, s3_bucket: str) -> None:
    storage = S3Storage(s3_bucket, endpoint_url=moto_server.endpoint_url, prefix="team/dstack")
    assert storage.probe_bucket() == BucketStatus(
        exists=True, region="us-east-1", readable=True, writable=True
    )
    assert storage.probe_bucket(write=False) == BucketStatus(
        exists=True, region="us-east-1", readable=True, writable=None
    )
    # the write check leaves nothing behind
    assert "Contents" not in moto_server.client().list_objects_v2(Bucket=s3_bucket)
    missing = S3Storage("no-such-bucket-at-all", endpoint_url=moto_server.endpoint_url)
    assert missing.probe_bucket() == BucketStatus(exists=False)


def test_probe_refused(moto_server: MotoServer, s3_bucket: str) -> None:
    with FaultProxy(moto_server.endpoint_url) as proxy:
        storage = S3Storage(s3_bucket, endpoint_url=proxy.url, retry_deadline=5)
        proxy.fail_next(1, status=403, code="AccessDenied", message="Access Denied")
        assert storage.probe_bucket() == BucketStatus(exists=True, readable=False)
        proxy.fail_next(1, status=403, code="AccessDenied", match=lambda m, p: m == "PUT")
        assert storage.probe_bucket().writable is False
        proxy.fail_next(3)  # throttling is ridden out like everywhere else
        assert storage.probe_bucket().writable is True


def test_a_forked_child_makes_its_own_client(moto_server: MotoServer, s3_bucket: str) -> None:
    storage = S3Storage(s3_bucket, endpoint_url=moto_server.endpoint_url)
    storage.put("before-fork", b"parent")
    parent_client: Any = storage._client()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: must not touch the parent's client or its pooled connections
        code = 1
        try:
            fresh = storage._client() is not parent_client
            storage.put("from-child", b"child")
            code = 0 if fresh and storage.get("before-fork") == b"parent" else 2
        finally:
            os.write(write, bytes([code]))
            os._exit(code)
    os.close(write)
    result = os.read(read, 1)
    os.close(read)
    os.waitpid(pid, 0)
    assert result == b"\x00"
    assert storage._client() is parent_client  # the parent keeps its own
    assert storage.get("from-child") == b"child"


def small_parts(storage: S3Storage) -> S3Storage:
    storage.multipart_threshold = 1 << 20
    storage.multipart_chunksize = 256 << 10
    storage.transfer_concurrency = 4
    return storage


def test_a_large_object_comes_in_one_ranged_get_per_worker(
    moto_server: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    data = os.urandom(3 << 20)
    moto_server.client().put_object(Bucket=s3_bucket, Key="big", Body=data)
    with FaultProxy(moto_server.endpoint_url) as proxy:
        storage = small_parts(S3Storage(s3_bucket, endpoint_url=proxy.url))
        progress: list[int] = []
        storage.download_file("big", tmp_path / "big", progress=progress.append)
        assert (tmp_path / "big").read_bytes() == data
        assert sum(progress) == len(data)
        gets = [path for method, path in proxy.log if method == "GET"]
        assert len(gets) == 4  # the first part streams from the first GET: no HEAD, no extra
        proxy.fail_next(2, match=lambda method, path: method == "GET")
        storage.download_file("big", tmp_path / "again")  # failed parts: fetched again
        assert (tmp_path / "again").read_bytes() == data


def test_an_object_overwritten_during_a_download_is_not_mixed(
    moto_server: MotoServer, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = os.urandom(2 << 20), os.urandom(2 << 20)
    client = moto_server.client()
    client.put_object(Bucket=s3_bucket, Key="ckpt", Body=old)
    storage = small_parts(S3Storage(s3_bucket, endpoint_url=moto_server.endpoint_url))
    original = s3_files._Ranges.start
    overwrites = iter([new])

    def overwrite_first(self: Any, *args: Any) -> Any:
        for body in overwrites:  # once: the job saves a new checkpoint as we read the old one
            client.put_object(Bucket=s3_bucket, Key="ckpt", Body=body)
        return original(self, *args)

    monkeypatch.setattr(s3_files._Ranges, "start", overwrite_first)
    storage.download_file("ckpt", tmp_path / "ckpt")
    assert (tmp_path / "ckpt").read_bytes() == new
