"""What only the CRT path of ``S3Storage`` does: batches, their retries and failures, checksums,
where it is not used, and a forked process (the local runner) getting a client of its own.
The contract both paths keep is in ``test_storage_conformance.py``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dstack.errors import ConfigError, NotFoundError, StorageError
from dstack.storage.s3 import crt as s3_crt
from dstack.storage.s3.storage import S3Storage
from tests.fault_proxy import FaultProxy
from tests.moto_server import MotoServer
from tests.storage.conftest import use_engine


@pytest.fixture(autouse=True)
def crt(monkeypatch: pytest.MonkeyPatch) -> None:
    use_engine(monkeypatch, "crt")


@pytest.fixture
def proxy(moto_server: MotoServer) -> Iterator[FaultProxy]:
    with FaultProxy(moto_server.endpoint_url) as proxy:
        yield proxy


def files(folder: Path, count: int, size: int = 100) -> list[tuple[Path, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    pairs = []
    for i in range(count):
        path = folder / f"f{i:03d}"
        path.write_bytes(bytes([i % 256]) * (size + i))
        pairs.append((path, f"batch/f{i:03d}"))
    return pairs


def test_the_crt_is_used_only_where_it_can_be(monkeypatch: pytest.MonkeyPatch) -> None:
    assert s3_crt.engine()
    monkeypatch.setenv("DSTACK_S3_CRT", "0")
    assert not s3_crt.engine()
    monkeypatch.setenv("DSTACK_S3_CRT", "")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")  # the CRT would not use it
    assert not s3_crt.engine()
    monkeypatch.setenv("DSTACK_S3_CRT", "1")  # required: the conflict is one clear error
    with pytest.raises(ConfigError, match="HTTPS_PROXY is set"):
        s3_crt.engine()
    monkeypatch.setenv("DSTACK_S3_CRT", "maybe")
    with pytest.raises(ConfigError, match="expected 1"):
        s3_crt.engine()


def test_a_batch_is_stored_with_modes(
    moto_server: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    storage = S3Storage(s3_bucket, endpoint_url=moto_server.endpoint_url, prefix="team")
    pairs = files(tmp_path / "src", 40)
    pairs[0][0].chmod(0o755)
    stored: list[str] = []
    sent: list[int] = []
    storage.upload_tree(pairs, on_uploaded=stored.append, progress=sent.append)
    assert storage._files.crt_instance is not None, "the CRT did not carry the batch"
    assert sorted(stored) == [key for _, key in pairs]
    assert sum(sent) == sum(path.stat().st_size for path, _ in pairs)
    raw = moto_server.client()
    assert raw.head_object(Bucket=s3_bucket, Key="team/batch/f000")["Metadata"] == {"mode": "755"}
    assert raw.head_object(Bucket=s3_bucket, Key="team/batch/f001")["Metadata"] == {"mode": "644"}

    back = [(key, tmp_path / "back" / key) for _, key in pairs]
    got: list[int] = []
    storage.download_tree(back, progress=got.append)
    for (path, _), (_, copy) in zip(pairs, back, strict=True):
        assert copy.read_bytes() == path.read_bytes()
    assert os.access(back[0][1], os.X_OK) and not os.access(back[1][1], os.X_OK)
    assert sum(got) == sum(path.stat().st_size for path, _ in pairs)
    assert not [p for p in (tmp_path / "back").rglob(".tmp-*")], "temporary files were left"


def test_an_upload_is_signed_and_carries_its_crc32(s3_bucket: str, tmp_path: Path) -> None:
    """What goes on the wire (moto does not keep a checksum it was not asked to compute)."""
    import base64
    import socket
    import threading
    import zlib

    server = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            seen.append(data.split(b"\r\n\r\n")[0])
            conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 0\r\nETag: "e"\r\n\r\n')

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    port = server.getsockname()[1]
    storage = S3Storage(s3_bucket, endpoint_url=f"http://127.0.0.1:{port}", retry_deadline=1)
    data = b"checkpoint" * 100
    (tmp_path / "f").write_bytes(data)
    with server:
        storage.upload_tree([(tmp_path / "f", "run/f")])
        thread.join(10)
    headers = dict(line.split(": ", 1) for line in seen[0].decode().lower().split("\r\n")[1:])
    assert seen[0].startswith(f"PUT /{s3_bucket}/run/f ".encode())
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode().lower()
    assert headers["x-amz-checksum-crc32"] == crc
    assert headers["x-amz-meta-mode"] == "644"
    assert headers["authorization"].startswith("aws4-hmac-sha256 credential=testing/")


def test_throttled_and_dropped_requests_of_a_batch_are_sent_again(
    proxy: FaultProxy, s3_bucket: str, tmp_path: Path
) -> None:
    storage = S3Storage(s3_bucket, endpoint_url=proxy.url, retry_deadline=20)
    pairs = files(tmp_path / "src", 30)
    proxy.fail_next(12)  # more than the CRT retries one request: our loop sends them again
    proxy.drop_next(4)
    storage.upload_tree(pairs)
    assert proxy.pending == 0 and proxy.faults == 16
    proxy.fail_next(12, status=500, code="InternalError", message="We encountered an error.")
    back = [(key, tmp_path / "back" / key) for _, key in pairs]
    storage.download_tree(back)
    assert proxy.pending == 0
    for (path, _), (_, copy) in zip(pairs, back, strict=True):
        assert copy.read_bytes() == path.read_bytes()


def test_a_refused_file_fails_the_batch_but_the_others_are_reported(
    proxy: FaultProxy, s3_bucket: str, tmp_path: Path
) -> None:
    storage = S3Storage(s3_bucket, endpoint_url=proxy.url, retry_deadline=5)
    pairs = files(tmp_path / "src", 10)
    proxy.fail_next(
        1,
        status=403,
        code="AccessDenied",
        message="Access Denied",
        match=lambda method, path: method == "PUT" and path.endswith("/batch/f004"),
    )
    stored: list[str] = []
    with pytest.raises(StorageError) as info:
        storage.upload_tree(pairs, on_uploaded=stored.append)
    assert str(info.value) == (
        f"no access to s3://{s3_bucket} (AccessDenied): check your AWS credentials/profile"
    )
    assert sorted(stored) == [key for _, key in pairs if key != "batch/f004"]


def test_a_missing_object_fails_the_download_and_writes_nothing(
    moto_server: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    storage = S3Storage(s3_bucket, endpoint_url=moto_server.endpoint_url)
    pairs = files(tmp_path / "src", 3)
    storage.upload_tree(pairs)
    out = tmp_path / "out"
    items = [(key, out / key) for _, key in pairs] + [("batch/gone", out / "batch/gone")]
    with pytest.raises(NotFoundError) as info:
        storage.download_tree(items)
    assert "batch/gone" in str(info.value)
    assert not (out / "batch/gone").exists()
    assert not [p for p in out.rglob(".tmp-*")], "temporary files were left"


def test_a_file_that_vanished_is_a_clear_error(
    moto_server: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    storage = S3Storage(s3_bucket, endpoint_url=moto_server.endpoint_url)
    crt = storage._files.crt()
    assert crt is not None
    transfer = s3_crt.Transfer(key="k", path=tmp_path / "gone", meter=_meter())
    with pytest.raises(OSError) as info:
        crt.upload([transfer])
    assert getattr(info.value, "dstack_key", None) == "k"
    assert "cannot use the file" in str(info.value)


@pytest.mark.slow
def test_an_unreachable_store_gives_up_near_the_deadline(s3_bucket: str, tmp_path: Path) -> None:
    import socket
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    storage = S3Storage(s3_bucket, endpoint_url=f"http://127.0.0.1:{port}", retry_deadline=1)
    start = time.monotonic()
    with pytest.raises(StorageError) as info:
        storage.upload_tree(files(tmp_path / "src", 2))
    assert str(info.value).startswith(f"the S3 state store s3://{s3_bucket} did not answer for 1s")
    assert "\n" not in str(info.value)
    assert time.monotonic() - start < 30  # the deadline plus the CRT's own retries of a batch


def test_a_forked_process_makes_its_own_client(
    moto_server: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    storage = S3Storage(s3_bucket, endpoint_url=moto_server.endpoint_url)
    pairs = files(tmp_path / "src", 4)
    storage.upload_tree(pairs[:2])
    parent = storage._files.crt_instance
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        code = 1
        try:
            storage.upload_tree(pairs[2:])
            storage.download_tree([(pairs[3][1], tmp_path / "child")])
            fresh = (
                storage._files.crt_instance is not None
                and storage._files.crt_instance is not parent
            )
            good = (tmp_path / "child").read_bytes() == pairs[3][0].read_bytes()
            code = 0 if fresh and good else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    storage.upload_tree(pairs[:1])  # the parent's client still works
    assert storage._files.crt_instance is parent


@pytest.mark.slow
def test_a_forked_process_never_destroys_its_parents_client(
    moto_server: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    """The parent's CRT client owns event-loop threads the child does not have: destroying it
    in the child (its last reference dropped, then collected) used to crash the child."""
    import gc

    for attempt in range(3):
        storage = S3Storage(s3_bucket, endpoint_url=moto_server.endpoint_url)
        pairs = files(tmp_path / f"src{attempt}", 2)
        storage.upload_tree(pairs[:1])
        assert storage._files.crt_instance is not None
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit code
            code = 1
            try:
                storage.upload_tree(pairs[1:])  # drops the parent's client for its own
                del storage
                gc.collect()
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, f"the child died: status {status}"
        del storage
        gc.collect()


def _meter() -> Any:
    from dstack.storage.s3.files import Progress

    return Progress(None)


def test_a_bucket_in_another_region_hands_the_files_to_botocore(
    proxy: FaultProxy, s3_bucket: str, tmp_path: Path
) -> None:
    """The CRT signs for one region and follows no redirect: S3's answer that the bucket is
    elsewhere makes botocore (which follows it) carry this and every later transfer."""
    storage = S3Storage(s3_bucket, endpoint_url=proxy.url, retry_deadline=5)
    pairs = files(tmp_path / "src", 5)
    redirect = (
        "The bucket you are attempting to access must be addressed using the specified endpoint."
    )
    proxy.fail_next(1, status=301, code="PermanentRedirect", message=redirect)
    stored: list[str] = []
    storage.upload_tree(pairs, on_uploaded=stored.append)
    assert proxy.pending == 0
    assert set(stored) == {key for _, key in pairs}
    assert storage._files.crt_instance is None and storage._files.crt() is None
    back = [(key, tmp_path / "back" / key) for _, key in pairs]
    storage.download_tree(back)
    for (path, _), (_, copy) in zip(pairs, back, strict=True):
        assert copy.read_bytes() == path.read_bytes()


def test_a_redirected_download_is_finished_by_botocore(
    proxy: FaultProxy, s3_bucket: str, tmp_path: Path
) -> None:
    storage = S3Storage(s3_bucket, endpoint_url=proxy.url, retry_deadline=5)
    pairs = files(tmp_path / "src", 5)
    storage.upload_tree(pairs)
    proxy.fail_next(1, status=301, code="PermanentRedirect", message="Elsewhere.")
    back = [(key, tmp_path / "back" / key) for _, key in pairs]
    storage.download_tree(back)
    for (path, _), (_, copy) in zip(pairs, back, strict=True):
        assert copy.read_bytes() == path.read_bytes()
    assert not [p for p in (tmp_path / "back").rglob(".tmp-*")], "temporary files were left"
