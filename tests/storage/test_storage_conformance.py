"""The Storage contract (``dstack.storage.base.Storage``), held against every backend.

Each test runs once per backend of the ``storage`` fixture (a folder, and a fresh bucket on a
moto server); a behaviour only one backend has belongs in that backend's own test module.
"""

from __future__ import annotations

import itertools
import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dstack.errors import AlreadyExistsError, NotFoundError, StorageError
from dstack.storage import open_storage
from dstack.storage.base import ObjectInfo, Storage
from dstack.store_config import dump_store, parse_store

MiB = 1 << 20


class Meter:
    """A thread-safe progress callback that adds up what it is told."""

    def __init__(self) -> None:
        self.total = 0
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, n: int) -> None:
        assert n >= 0
        with self._lock:
            self.total += n
            self.calls += 1


def keys(storage: Storage, prefix: str = "", after: str | None = None) -> list[str]:
    return [info.key for info in storage.list_objects(prefix, after=after)]


def put_many(storage: Storage, items: dict[str, bytes]) -> None:
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda kv: storage.put(kv[0], kv[1]), items.items()))


def write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    return path


def is_exec(path: Path) -> bool:
    return bool(path.stat().st_mode & stat.S_IXUSR)


# put / get


def test_put_get_round_trip(storage: Storage) -> None:
    storage.put("runs/r1/state.json", b'{"status": "running"}')
    assert storage.get("runs/r1/state.json") == b'{"status": "running"}'


def test_put_empty_object(storage: Storage) -> None:
    storage.put("empty", b"")
    assert storage.get("empty") == b""
    assert storage.exists("empty")
    assert list(storage.list_objects("empty")) == [ObjectInfo(key="empty", size=0)]


def test_put_overwrites(storage: Storage) -> None:
    storage.put("k", b"first")
    storage.put("k", b"second, longer")
    assert storage.get("k") == b"second, longer"
    assert keys(storage) == ["k"]


def test_get_missing_raises_not_found(storage: Storage) -> None:
    with pytest.raises(NotFoundError) as info:
        storage.get("runs/nope/state.json")
    assert info.value.key == "runs/nope/state.json"


def test_get_or_none(storage: Storage) -> None:
    assert storage.get_or_none("a/b") is None
    storage.put("a/b", b"x")
    assert storage.get_or_none("a/b") == b"x"


def test_exists(storage: Storage) -> None:
    assert not storage.exists("a/b")
    storage.put("a/b", b"x")
    assert storage.exists("a/b")
    assert not storage.exists("a")  # a "folder" is not an object
    assert not storage.exists("a/b/c")


def test_binary_content_is_byte_exact(storage: Storage) -> None:
    data = bytes(range(256)) * 4 + b"\r\n\0\r" + "naïve".encode()
    storage.put("bin", data)
    assert storage.get("bin") == data


# only-if-absent


def test_put_if_absent_creates_once(storage: Storage) -> None:
    storage.put("names/brave-owl-1", b"first", if_absent=True)
    with pytest.raises(AlreadyExistsError) as info:
        storage.put("names/brave-owl-1", b"second", if_absent=True)
    assert info.value.key == "names/brave-owl-1"
    assert storage.get("names/brave-owl-1") == b"first"


def test_put_if_absent_after_plain_put_refuses(storage: Storage) -> None:
    storage.put("k", b"plain")
    with pytest.raises(AlreadyExistsError):
        storage.put("k", b"conditional", if_absent=True)
    assert storage.get("k") == b"plain"


def test_put_if_absent_race_has_exactly_one_winner(storage: Storage) -> None:
    barrier = threading.Barrier(20)
    winners: list[int] = []
    losers: list[int] = []

    def race(i: int) -> None:
        barrier.wait()
        try:
            storage.put("names/racy", f"writer {i}".encode(), if_absent=True)
            winners.append(i)
        except AlreadyExistsError:
            losers.append(i)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1, winners
    assert len(losers) == 19
    assert storage.get("names/racy") == f"writer {winners[0]}".encode()


# listing


# A key is never also the "folder" of another key here ("a/b" and "a/b/c"): LocalStorage cannot
# hold both (a file and a folder of one name), S3 can; the contract does not say yet.


def test_list_by_plain_string_prefix(storage: Storage) -> None:
    for key in ("a/b1", "a/b/c", "a/b/d/e", "a/c", "ab", "b/a/b"):
        storage.put(key, b"x")
    assert keys(storage, "a/b") == ["a/b/c", "a/b/d/e", "a/b1"]
    assert keys(storage, "a/b/") == ["a/b/c", "a/b/d/e"]
    assert keys(storage, "a/b/d") == ["a/b/d/e"]
    assert keys(storage, "a") == ["a/b/c", "a/b/d/e", "a/b1", "a/c", "ab"]
    assert keys(storage, "zzz") == []
    assert keys(storage, "") == ["a/b/c", "a/b/d/e", "a/b1", "a/c", "ab", "b/a/b"]


def test_list_reports_sizes(storage: Storage) -> None:
    storage.put("s/one", b"1")
    storage.put("s/three", b"333")
    assert list(storage.list_objects("s/")) == [
        ObjectInfo(key="s/one", size=1),
        ObjectInfo(key="s/three", size=3),
    ]


def test_list_order_is_utf8_byte_order(storage: Storage) -> None:
    # '-' (0x2d) < '.' (0x2e) < '/' (0x2f) < '0': a folder's children sort between "a.b" and
    # "a0", not after every "a-…"; U+FF21 sorts before U+1F600 in UTF-8 (not in UTF-16).
    names = [
        "a/b/c",
        "a-b",
        "a.b",
        "a0",
        "a/c",
        "a b",
        "aB",
        "a~",
        "é",
        "\uff21",
        "\U0001f600",
        "Z",
    ]
    for name in names:
        storage.put(name, b"x")
    expected = sorted(names, key=lambda key: key.encode())
    assert keys(storage) == expected
    assert expected.index("a-b") < expected.index("a.b") < expected.index("a/b/c")
    assert expected.index("a/c") < expected.index("a0")
    assert expected.index("\uff21") < expected.index("\U0001f600")


def test_list_after_skips_up_to_and_including(storage: Storage) -> None:
    for key in ("r/1", "r/2", "r/3", "r/3-x", "r/4/x"):
        storage.put(key, b"x")
    assert keys(storage, "r/", after="r/2") == ["r/3", "r/3-x", "r/4/x"]
    assert keys(storage, "r/", after="r/25") == ["r/3", "r/3-x", "r/4/x"]  # need not exist
    assert keys(storage, "r/", after="r/4") == ["r/4/x"]
    assert keys(storage, "r/", after="r/4/x") == []
    assert keys(storage, "r/", after="a") == ["r/1", "r/2", "r/3", "r/3-x", "r/4/x"]


@pytest.mark.slow
def test_list_pages_beyond_1000_keys(storage: Storage) -> None:
    items = {f"many/{i:05d}": b"%d" % i for i in range(1100)}
    put_many(storage, items)
    storage.put("other", b"x")
    assert keys(storage, "many/") == sorted(items)
    assert keys(storage, "many/", after="many/00999") == [
        f"many/{i:05d}" for i in range(1000, 1100)
    ]
    assert keys(storage, "many/", after="many/00010")[:2] == ["many/00011", "many/00012"]


def test_list_can_stop_early(storage: Storage) -> None:
    for i in range(5):
        storage.put(f"logs/{i}", b"x")
    listing = storage.list_objects("logs/")
    assert [info.key for info in itertools.islice(listing, 2)] == ["logs/0", "logs/1"]
    listing.close()  # type: ignore[attr-defined]
    assert keys(storage, "logs/") == [f"logs/{i}" for i in range(5)]


# delete


def test_delete_is_idempotent(storage: Storage) -> None:
    storage.put("a/b", b"x")
    storage.delete("a/b")
    assert not storage.exists("a/b")
    storage.delete("a/b")
    storage.delete("never/was")
    assert keys(storage) == []


def test_delete_prefix_counts_and_removes_only_the_prefix(storage: Storage) -> None:
    for key in ("runs/r1/a", "runs/r1/b/c", "runs/r10/a", "runs/r2/a", "runs/r1.json"):
        storage.put(key, b"x")
    assert storage.delete_prefix("runs/r1/") == 2
    assert keys(storage) == ["runs/r1.json", "runs/r10/a", "runs/r2/a"]
    assert not storage.exists("runs/r1/a")
    assert storage.delete_prefix("runs/r1") == 2  # a plain string prefix
    assert keys(storage) == ["runs/r2/a"]
    assert storage.delete_prefix("runs/nothing") == 0


# files


def test_upload_download_empty_file(storage: Storage, tmp_path: Path) -> None:
    source = write(tmp_path / "src" / "empty", b"")
    storage.upload_file(source, "files/empty")
    assert storage.get("files/empty") == b""
    target = tmp_path / "out" / "empty"
    storage.download_file("files/empty", target)
    assert target.read_bytes() == b""


def test_upload_download_large_file(storage: Storage, tmp_path: Path) -> None:
    data = os.urandom(20 * MiB + 123)
    source = write(tmp_path / "big.bin", data)
    up, down = Meter(), Meter()
    storage.upload_file(source, "artifacts/big.bin", progress=up)
    assert up.total == len(data)
    target = tmp_path / "out" / "big.bin"
    storage.download_file("artifacts/big.bin", target, progress=down)
    assert down.total == len(data)
    assert target.read_bytes() == data
    assert list(storage.list_objects("artifacts/")) == [ObjectInfo("artifacts/big.bin", len(data))]


def test_upload_download_binary_byte_exact(storage: Storage, tmp_path: Path) -> None:
    data = bytes(range(256)) * 100 + b"\r\n\x00"
    storage.upload_file(write(tmp_path / "b", data), "b")
    assert storage.get("b") == data
    storage.download_file("b", tmp_path / "b2")
    assert (tmp_path / "b2").read_bytes() == data


def test_upload_then_get_and_put_then_download(storage: Storage, tmp_path: Path) -> None:
    storage.put("p", b"put bytes")
    storage.download_file("p", tmp_path / "p")
    assert (tmp_path / "p").read_bytes() == b"put bytes"
    assert not is_exec(tmp_path / "p")


def test_executable_bit_survives_a_round_trip(storage: Storage, tmp_path: Path) -> None:
    storage.upload_file(write(tmp_path / "run.sh", b"#!/bin/sh\necho hi\n", 0o755), "x/run.sh")
    storage.upload_file(write(tmp_path / "data.txt", b"data", 0o644), "x/data.txt")
    storage.download_file("x/run.sh", tmp_path / "out" / "run.sh")
    storage.download_file("x/data.txt", tmp_path / "out" / "data.txt")
    assert is_exec(tmp_path / "out" / "run.sh")
    assert not is_exec(tmp_path / "out" / "data.txt")


def test_download_replaces_an_existing_file(storage: Storage, tmp_path: Path) -> None:
    storage.put("k", b"new")
    target = write(tmp_path / "out" / "t", b"old content", 0o755)
    storage.download_file("k", target)
    assert target.read_bytes() == b"new"
    assert not is_exec(target)
    assert [p.name for p in target.parent.iterdir()] == ["t"]  # no temporary file left


def test_progress_sums_to_the_file_size(storage: Storage, tmp_path: Path) -> None:
    data = os.urandom(3 * MiB + 7)
    up, down = Meter(), Meter()
    storage.upload_file(write(tmp_path / "f", data), "f", progress=up)
    storage.download_file("f", tmp_path / "g", progress=down)
    assert up.total == down.total == len(data)


def test_download_to_a_new_nested_folder(storage: Storage, tmp_path: Path) -> None:
    storage.put("deep/file", b"content")
    target = tmp_path / "a" / "b" / "c" / "file"
    storage.download_file("deep/file", target)
    assert target.read_bytes() == b"content"


def test_download_missing_key_leaves_nothing(storage: Storage, tmp_path: Path) -> None:
    target = tmp_path / "dest" / "sub" / "file"
    with pytest.raises(NotFoundError):
        storage.download_file("missing/file", target)
    assert not target.exists()
    assert not (tmp_path / "dest").exists() or not any((tmp_path / "dest").rglob("*"))


def test_upload_missing_local_file_raises_storage_error(storage: Storage, tmp_path: Path) -> None:
    with pytest.raises(StorageError):
        storage.upload_file(tmp_path / "nope", "k")
    assert not storage.exists("k")


# keys


def test_keys_with_spaces_and_unicode(storage: Storage, tmp_path: Path) -> None:
    key = "runs/naïve run/日本語.txt"
    storage.put(key, "héllo".encode())
    assert storage.get(key) == "héllo".encode()
    assert storage.exists(key)
    assert keys(storage, "runs/naïve") == [key]
    assert keys(storage, "runs/naïve run/日") == [key]
    storage.upload_file(write(tmp_path / "s p a c e", b"sp", 0o755), "runs/naïve run/a b+c%20d")
    storage.download_file("runs/naïve run/a b+c%20d", tmp_path / "out" / "日本語")
    assert (tmp_path / "out" / "日本語").read_bytes() == b"sp"
    assert keys(storage, "runs/") == ["runs/naïve run/a b+c%20d", key]
    assert storage.delete_prefix("runs/naïve run/") == 2


BAD_KEYS = ["../x", "a/../../x", "/abs", "a//b", "a/./b", "a/", "", ".", "a/.."]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_invalid_keys_are_refused(storage: Storage, tmp_path: Path, key: str) -> None:
    source = write(tmp_path / "f", b"x")
    calls = [
        lambda: storage.put(key, b"x"),
        lambda: storage.put(key, b"x", if_absent=True),
        lambda: storage.get(key),
        lambda: storage.delete(key),
        lambda: storage.exists(key),
        lambda: storage.upload_file(source, key),
        lambda: storage.download_file(key, tmp_path / "out"),
        lambda: storage.upload_tree([(source, "ok"), (source, key)]),
    ]
    for call in calls:
        with pytest.raises(StorageError, match="invalid storage key"):
            call()
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "x").exists()


# trees


def test_upload_and_download_a_tree_of_200_files(storage: Storage, tmp_path: Path) -> None:
    files = []
    for i in range(200):
        mode = 0o755 if i % 10 == 0 else 0o644
        path = write(tmp_path / "src" / f"d{i % 7}" / f"f{i}.txt", b"file %d\n" % i * (i + 1), mode)
        files.append((path, f"tree/d{i % 7}/f{i}.txt"))
    total = sum(path.stat().st_size for path, _ in files)
    up, down = Meter(), Meter()
    storage.upload_tree(files, progress=up)
    assert up.total == total
    assert len(keys(storage, "tree/")) == 200
    items = [(key, tmp_path / "dst" / key) for _, key in files]
    storage.download_tree(items, progress=down)
    assert down.total == total
    for (source, _), (_, target) in zip(files, items, strict=True):
        assert target.read_bytes() == source.read_bytes()
        assert is_exec(target) == is_exec(source)


def test_empty_trees_are_no_ops(storage: Storage) -> None:
    storage.upload_tree([])
    storage.download_tree([])
    assert keys(storage) == []


# config


def test_config_rebuilds_the_same_store(storage: Storage) -> None:
    storage.put("shared/key", b"seen by the runner")
    config = storage.config()
    assert config.type in ("local", "s3")
    assert all(
        not any(word in name.lower() for word in ("secret", "token", "password", "access_key"))
        for name in type(config).model_fields
    )
    other = open_storage(parse_store(dump_store(config)))
    assert type(other) is type(storage)
    assert other.get("shared/key") == b"seen by the runner"
    assert other.describe() == storage.describe()
    assert storage.describe()


@pytest.mark.parametrize("size", [0, 5, (1 << 20) + 3])
def test_read_chunks_streams_the_object(storage: Storage, size: int) -> None:
    data = os.urandom(size)
    storage.put("a/b", data)
    chunks = list(storage.read_chunks("a/b", chunk_size=1 << 19))
    assert b"".join(chunks) == data
    assert all(0 < len(chunk) <= 1 << 19 for chunk in chunks)


def test_read_chunks_of_a_missing_key_raises_not_found(storage: Storage) -> None:
    with pytest.raises(NotFoundError):
        next(storage.read_chunks("a/missing"))


@pytest.mark.parametrize("prefix", ["../", "a/../../", "a//b", "/etc/", "./a"])
def test_listing_prefixes_that_could_escape_are_refused(storage: Storage, prefix: str) -> None:
    with pytest.raises(StorageError):
        list(storage.list_objects(prefix))
