"""store_code and the stat cache: what a snapshot reads and sends grows with what changed, and
an object this machine did not store is never trusted because it exists."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dstack.errors import RepoError
from dstack.repo import CodeSnapshot, statcache, store_code, take_snapshot
from dstack.state import code_blob_key
from dstack.storage.local import LocalStorage

RepoFactory = Callable[..., Path]
BIG = 1 << 30


def snap(root: Path, cache: Path) -> CodeSnapshot:
    return take_snapshot(root, max_size=BIG, cache_dir=cache)


def age(root: Path, seconds: float = 60) -> None:
    """Make every file older than the racy window, as files are when nobody just wrote them."""
    past = time.time() - seconds
    for path in root.rglob("*"):
        if path.is_file() and ".git" not in path.parts:
            os.utime(path, (past, past))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_unchanged_files_are_not_read_again(repo_factory: RepoFactory, tmp_path: Path) -> None:
    root = repo_factory({f"src/m{i}.py": f"x = {i}\n" for i in range(20)})
    age(root)
    cache = tmp_path / "cache"
    assert snap(root, cache).hashed_files == 20
    again = snap(root, cache)
    assert again.hashed_files == 0
    (root / "src/m3.py").write_text("x = 33\n")
    os.chmod(root / "src/m4.py", 0o755)  # a chmod changes ctime and mode: read again
    edited = snap(root, cache)
    assert edited.hashed_files == 2
    assert edited.digest != again.digest
    m3 = next(e for e in edited.entries if e.path == "src/m3.py")
    assert m3.digest == sha(b"x = 33\n")


def test_racily_clean_files_are_hashed_again(
    repo_factory: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file rewritten within the timestamp granularity of the cache's write keeps its stat;
    only the racy rule catches it. (ctime is left out of the key here, as on a filesystem whose
    ctime ticks as coarsely as its mtime, so that the test can rewrite a file keeping its stat.)"""
    monkeypatch.setattr(
        statcache, "stat_key", lambda st: (st.st_size, st.st_mtime_ns, 0, st.st_ino, st.st_mode)
    )
    root = repo_factory({"a.py": "one\n", "old.py": "old\n"})
    age(root)
    cache = tmp_path / "cache"
    (root / "a.py").write_text("one\n")  # written just now: racily clean when cached
    first = snap(root, cache)
    mtime = (root / "a.py").stat().st_mtime_ns
    (root / "a.py").write_text("two\n")  # same size...
    os.utime(root / "a.py", ns=(mtime, mtime))  # ...and the same mtime
    second = snap(root, cache)
    assert {e.path: e.digest for e in second.entries}["a.py"] == sha(b"two\n")
    assert second.digest != first.digest
    assert second.hashed_files == 1  # a.py again; old.py came from the cache


def test_only_what_changed_is_sent(repo_factory: RepoFactory, tmp_path: Path) -> None:
    root = repo_factory({f"m{i}.py": f"x = {i}\n" for i in range(10)} | {"same.py": "x = 1\n"})
    storage = LocalStorage(tmp_path / "store")
    cache = tmp_path / "cache"
    first = store_code(storage, snap(root, cache), cache_dir=cache)
    assert (first.files, first.tree_stored) == (10, True)  # m1.py and same.py: one content
    again = store_code(storage, snap(root, cache), cache_dir=cache)
    assert (again.files, again.bytes, again.tree_stored) == (0, 0, False)
    (root / "m0.py").write_text("x = 'edited'\n")
    edited = store_code(storage, snap(root, cache), cache_dir=cache)
    assert (edited.files, edited.bytes, edited.tree_stored) == (1, 13, True)
    assert storage.get(code_blob_key(sha(b"x = 'edited'\n"))) == b"x = 'edited'\n"


def test_an_existing_object_is_not_trusted_it_is_written_over(
    repo_factory: RepoFactory, tmp_path: Path
) -> None:
    """Another bucket user put their bytes at the address of my file before I stored it."""
    root = repo_factory({"train.py": "print('mine')\n"})
    storage = LocalStorage(tmp_path / "store")
    key = code_blob_key(sha(b"print('mine')\n"))
    storage.put(key, b"print('theirs')\n")
    report = store_code(storage, snap(root, tmp_path / "cache"), cache_dir=tmp_path / "cache")
    assert report.files == 1
    assert storage.get(key) == b"print('mine')\n"


def test_a_tree_gone_from_the_store_is_stored_again_whole(
    repo_factory: RepoFactory, tmp_path: Path
) -> None:
    root = repo_factory({"a.py": "a", "b.py": "b"})
    storage = LocalStorage(tmp_path / "store")
    cache = tmp_path / "cache"
    snapshot = snap(root, cache)
    store_code(storage, snapshot, cache_dir=cache)
    storage.delete_prefix("code/")
    report = store_code(storage, snap(root, cache), cache_dir=cache)
    assert (report.files, report.tree_stored) == (2, True)
    assert storage.exists(snapshot.repo.code_key)
    assert storage.get(code_blob_key(sha(b"a"))) == b"a"


def test_a_file_changed_after_it_was_hashed_is_not_stored(
    repo_factory: RepoFactory, tmp_path: Path
) -> None:
    root = repo_factory({"a.py": "a"})
    storage = LocalStorage(tmp_path / "store")
    snapshot = snap(root, tmp_path / "cache")
    (root / "a.py").write_text("b")
    with pytest.raises(RepoError, match=r"a\.py changed while the code was being stored"):
        store_code(storage, snapshot, cache_dir=tmp_path / "cache")
    assert list(storage.list_objects("code/")) == []
