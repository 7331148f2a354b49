"""Placing a run's code in a job's folder: exactly the snapshot, every time, through the
machine's checkout; nothing a job does reaches the checkout; objects are verified."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from dstack.errors import RunnerError
from dstack.models import JobSpec, RepoSnapshot
from dstack.repo import store_code, take_snapshot
from dstack.runner.code import give_back, place_code
from dstack.state import code_blob_key, code_key
from dstack.storage.local import LocalStorage
from tests.conftest import make_repo


class Machine:
    """A user's machine: a repo, a cache folder, and a store (the real LocalStorage)."""

    def __init__(self, tmp_path: Path, files: dict[str, str | bytes]) -> None:
        self.tmp = tmp_path
        self.root = make_repo(tmp_path / "repo", files)
        self.cache = tmp_path / "cache"
        self.storage = LocalStorage(tmp_path / "store")
        self.jobs = 0

    def submit(self) -> JobSpec:
        snapshot = take_snapshot(self.root, max_size=1 << 30, cache_dir=self.cache)
        store_code(self.storage, snapshot, cache_dir=self.cache)
        return spec_for(snapshot.repo)

    def run(self, spec: JobSpec | None = None) -> Path:
        """A new job's folder for ``spec`` (the current working tree if None)."""
        self.jobs += 1
        folder = self.tmp / "work" / f"job{self.jobs}" / "repo"
        place_code(self.storage, spec or self.submit(), folder, self.cache)
        return folder


def spec_for(repo: RepoSnapshot) -> JobSpec:
    return JobSpec(run_name="bold-owl-1", workflow="w", provider="bash", repo=repo)


def listing(folder: Path) -> dict[str, tuple[str, bytes | str]]:
    """Every path under ``folder``: (kind, content or target); folders as ("dir", "")."""
    out: dict[str, tuple[str, bytes | str]] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("link", os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", "")
        else:
            out[rel] = ("exec" if st.st_mode & 0o111 else "file", path.read_bytes())
    return out


def tree_of(root: Path) -> dict[str, tuple[str, bytes | str]]:
    """What a job must see: the working tree without .git and ignored files."""
    out = listing(root)
    ignored = {"ignored.log", "data", "data/big.bin"}
    return {p: v for p, v in out.items() if not p.startswith(".git/") and p != ".git"
            and p not in ignored}  # fmt: skip


def test_every_change_between_two_runs_shows_exactly(tmp_path: Path) -> None:
    m = Machine(tmp_path, {
        "train.py": "v1\n", "run.sh": "#!/bin/sh\n", "gone.py": "x", "lib/a.py": "a",
        "lib/deep/b.py": "b", "was_file": "f", "notes.txt": "n", ".gitignore": "data/\n",
    })  # fmt: skip
    first = m.run()
    assert listing(first) == tree_of(m.root)
    (m.root / "train.py").write_text("v2\n")  # edited
    (m.root / "gone.py").unlink()  # deleted
    os.chmod(m.root / "run.sh", 0o755)  # made executable
    (m.root / "was_file").unlink()
    os.symlink("lib/a.py", m.root / "was_file")  # turned into a symlink
    (m.root / ".gitignore").write_text("data/\nnotes.txt\n")  # ignored from now on
    (m.root / "notes.txt").unlink()  # an ignored, untracked file is not shipped
    (m.root / "notes.txt").write_text("n")

    subprocess.run(["git", "rm", "-q", "--cached", "notes.txt"], cwd=m.root, check=True)
    (m.root / "lib/deep/b.py").unlink()  # its folder empties: gone from the job's folder too
    (m.root / "lib/deep").rmdir()
    (m.root / "new.py").write_text("new")  # untracked, not ignored: shipped
    (m.root / "data").mkdir()
    (m.root / "data/big.bin").write_bytes(b"\0" * 100)
    second = m.run()
    expected = tree_of(m.root)
    expected.pop("notes.txt")
    assert listing(second) == expected
    assert "lib/deep" not in listing(second) and "notes.txt" not in listing(second)
    assert listing(second)["was_file"] == ("link", "lib/a.py")
    assert listing(second)["run.sh"][0] == "exec"
    assert listing(first) == listing(first)  # an earlier job's folder is its own


def test_a_job_that_writes_its_files_never_reaches_the_checkout(tmp_path: Path) -> None:
    m = Machine(tmp_path, {"train.py": "original\n", "lib/a.py": "a"})
    spec = m.submit()
    job = m.run(spec)
    assert os.stat(job / "train.py").st_nlink == 1  # a copy, not a hard link
    with open(job / "train.py", "r+") as f:  # rewritten in place
        f.write("CHANGED!\n")
    (job / "lib/a.py").unlink()
    (job / "extra.txt").write_text("left behind")
    again = m.run(spec)
    assert listing(again) == tree_of(m.root)
    assert (again / "train.py").read_text() == "original\n"


def test_two_jobs_at_once(tmp_path: Path) -> None:
    m = Machine(tmp_path, {f"src/m{i}.py": f"{i}" for i in range(50)})
    spec_a = m.submit()
    (m.root / "src/m1.py").write_text("B")
    spec_b = m.submit()
    folders = [tmp_path / "w" / f"j{i}" for i in range(6)]
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            place_code(m.storage, spec_a if i % 2 else spec_b, folders[i], m.cache)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, folder in enumerate(folders):
        assert (folder / "src/m1.py").read_text() == ("1" if i % 2 else "B")
        assert len(listing(folder)) == 51


def test_an_unchanged_rerun_reads_nothing_from_the_store(tmp_path: Path) -> None:
    m = Machine(tmp_path, {"a.py": "a", "b.py": "b"})
    spec = m.submit()
    first = place_code(m.storage, spec, tmp_path / "j1", m.cache)
    assert (first.files, first.downloaded_files) == (2, 2)
    m.storage.delete_prefix("code/")  # nothing is read: the checkout holds this tree
    second = place_code(m.storage, spec, tmp_path / "j2", m.cache)
    assert (second.files, second.downloaded_files) == (2, 0)
    assert "code ready in" in second.describe()
    assert (tmp_path / "j2" / "a.py").read_text() == "a"


@pytest.mark.parametrize("what", ["blob", "tree"])
def test_a_tampered_object_is_refused_and_removed(tmp_path: Path, what: str) -> None:
    m = Machine(tmp_path, {"train.py": "print('mine')\n"})
    spec = m.submit()
    key = code_blob_key(hashlib.sha256(b"print('mine')\n").hexdigest())
    if what == "tree":
        key = spec.repo.code_key
        m.storage.put(key, gzip.compress(b'{"format":1,"entries":[["train.py","f","' +
                                         b"0" * 64 + b'",4]]}'))  # fmt: skip
    else:
        m.storage.put(key, b"print('theirs')\n")
    folder = tmp_path / "job" / "repo"
    with pytest.raises(RunnerError, match="does not match its content address") as info:
        place_code(m.storage, spec, folder, m.cache)
    assert "removed from the store: run again" in str(info.value)
    assert not m.storage.exists(key) and not m.storage.exists(spec.repo.code_key)
    assert not (folder / "train.py").exists()
    again = m.run()  # the next submit stores it anew, and it runs
    assert (again / "train.py").read_text() == "print('mine')\n"


def test_a_checkout_left_incomplete_is_rebuilt(tmp_path: Path) -> None:
    m = Machine(tmp_path, {"a.py": "a", "b.py": "b"})
    spec = m.submit()
    m.run(spec)
    checkout = next((m.cache / "code" / "checkouts").glob("*/*"))
    (checkout / "tree" / "a.py").write_text("half-written")
    (checkout / "state.json").write_text('{"digest": null, "files": 0, "size": 0}')
    assert (m.run(spec) / "a.py").read_text() == "a"


def test_a_tree_with_a_path_leaving_the_folder_is_refused(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    raw = b'{"format":1,"entries":[["../evil","f","' + b"0" * 64 + b'",1]]}'
    digest = hashlib.sha256(raw).hexdigest()
    key = f"code/trees/{digest}.json.gz"
    storage.put(key, gzip.compress(raw))
    spec = spec_for(RepoSnapshot(repo_id="github.com/acme/mnist", code_key=key))
    with pytest.raises(RunnerError, match="would leave its folder"):
        place_code(storage, spec, tmp_path / "w" / "repo", tmp_path / "cache")
    assert not (tmp_path / "w" / "evil").exists()


def _old_archive(files: dict[str, bytes]) -> tuple[bytes, str]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0), hashlib.sha256(raw.getvalue()).hexdigest()


def test_archives_of_earlier_versions_are_placed_verified(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    data, digest = _old_archive({"train.py": b"print('mine')\n"})
    storage.put(code_key(digest), data)
    spec = spec_for(RepoSnapshot(repo_id="github.com/acme/mnist", code_key=code_key(digest)))
    place_code(storage, spec, tmp_path / "w1" / "repo", tmp_path / "cache")
    assert (tmp_path / "w1" / "repo" / "train.py").read_text() == "print('mine')\n"
    evil, _ = _old_archive({"train.py": b"print('theirs')\n"})
    storage.put(code_key(digest), evil)  # replaced in the store by another bucket user
    with pytest.raises(RunnerError, match="does not match its content address"):
        place_code(storage, spec, tmp_path / "w2" / "repo", tmp_path / "other-cache")
    assert not (tmp_path / "w2" / "repo" / "train.py").exists()


def test_a_folder_given_back_is_the_next_jobs_exactly_and_given_once(tmp_path: Path) -> None:
    m = Machine(tmp_path, {"a.py": "a", "lib/b.py": "b", "run.sh": "#!/bin/sh\n"})
    spec = m.submit()
    first = place_code(m.storage, spec, tmp_path / "j1", m.cache)
    assert "copy" in first.phases  # no spare yet: the checkout is copied
    (tmp_path / "j1" / "a.py").write_text("written by job 1")
    assert give_back(first, tmp_path / "j1")
    assert not (tmp_path / "j1").exists()  # it is the spare now
    second = place_code(m.storage, spec, tmp_path / "j2", m.cache)
    assert "spare" in second.phases and second.changed == 0  # fixed when given back
    assert listing(tmp_path / "j2") == tree_of(m.root)
    (tmp_path / "j2" / "a.py").write_text("written by job 2")  # never seen again
    assert give_back(second, tmp_path / "j2")
    (m.root / "lib/b.py").unlink()
    (m.root / "lib").rmdir()
    os.chmod(m.root / "run.sh", 0o755)
    (m.root / "c.py").write_text("c")
    third = place_code(m.storage, m.submit(), tmp_path / "j3", m.cache)
    assert "spare" in third.phases and third.changed == 3  # brought to the new tree
    assert listing(tmp_path / "j3") == tree_of(m.root)
    fourth = place_code(m.storage, m.submit(), tmp_path / "j4", m.cache)
    assert "copy" in fourth.phases  # the spare was taken: the checkout is copied
    assert listing(tmp_path / "j4") == tree_of(m.root)
    assert give_back(third, tmp_path / "j3")
    assert not give_back(fourth, tmp_path / "j4")  # one spare per checkout: j4 is removed


def test_a_long_placement_says_so_before_it_starts(tmp_path: Path) -> None:
    m = Machine(tmp_path, {f"src/m{i:04d}.py": f"{i}\n" for i in range(1000)})
    spec = m.submit()
    said: list[str] = []
    place_code(m.storage, spec, tmp_path / "j1", m.cache, notice=said.append)
    assert said == [
        "code: 1000 files to write, 1000 to download (3.8KiB)…",
        "code: copying 1000 files into the job's folder…",
    ]
    said.clear()
    place_code(m.storage, spec, tmp_path / "j2", m.cache, notice=said.append)
    assert said == ["code: copying 1000 files into the job's folder…"]  # no spare given back
