"""take_snapshot on real git repositories: what is shipped, and the tree's address."""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from dstack.errors import RepoError
from dstack.repo import (
    CodeSnapshot,
    find_repo_root,
    read_owner,
    take_snapshot,
)
from dstack.repo import git as repo_git
from tests.conftest import git, make_repo

RepoFactory = Callable[..., Path]

BIG = 1 << 30
BINARY = bytes(range(256)) * 4 + b"\r\n\0\xff"


def snap(path: Path, max_size: int = BIG) -> CodeSnapshot:
    return take_snapshot(path, max_size=max_size)


def contents(snapshot: CodeSnapshot) -> dict[str, bytes | str]:
    """The tree's files (bytes, checked against their digests) and symlinks (``-> target``)."""
    out: dict[str, bytes | str] = {}
    for entry in snapshot.entries:
        if entry.target is not None:
            out[entry.path] = f"-> {entry.target}"
            continue
        data = (snapshot.root / entry.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry.digest
        assert entry.size == len(data)
        out[entry.path] = data
    return out


def test_clean_repo(repo_factory: RepoFactory) -> None:
    root = repo_factory({"train.py": "print(1)\n", "src/model.py": "W = 1\n"})
    head = git(root, "rev-parse", "HEAD").strip()
    with snap(root / "src") as s:  # from a subfolder: the whole repository
        assert s.root == root.resolve()
        assert s.repo.repo_id == "github.com/acme/mnist"
        assert (s.repo.branch, s.repo.commit, s.repo.dirty, s.repo.diff) == (
            "main",
            head,
            False,
            "",
        )
        assert contents(s) == {"src/model.py": b"W = 1\n", "train.py": b"print(1)\n"}
        assert s.repo.code_key == f"code/trees/{s.digest}.json.gz"
        assert s.repo.code_size == len(b"print(1)\nW = 1\n")


def test_dirty_repo_ships_the_working_tree(repo_factory: RepoFactory) -> None:
    root = repo_factory({"train.py": "v1\n", ".gitignore": "*.log\ndata/\n", "gone.py": "x"})
    (root / "train.py").write_text("v2\n")
    (root / "new.py").write_text("new\n")
    (root / "run.log").write_text("ignored\n")
    (root / "data").mkdir()
    (root / "data" / "big.bin").write_bytes(b"\0" * 10)
    (root / "gone.py").unlink()
    with snap(root) as s:
        files = contents(s)
        assert files == {".gitignore": b"*.log\ndata/\n", "new.py": b"new\n", "train.py": b"v2\n"}
        assert s.repo.dirty
        assert "-v1\n+v2" in s.repo.diff and "gone.py" in s.repo.diff


def test_untracked_file_alone_makes_it_dirty(repo_factory: RepoFactory) -> None:
    root = repo_factory({"a.py": "a"})
    (root / "b.py").write_text("b")
    with snap(root) as s:
        assert s.repo.dirty and s.repo.diff == ""


def test_diff_is_capped(repo_factory: RepoFactory) -> None:
    root = repo_factory({"a.txt": "x\n"})
    (root / "a.txt").write_text("".join(f"line {i}\n" for i in range(2000)))
    diff = repo_git.diff_head(root, limit=1024)
    assert len(diff.encode()) < 1200 and "diff truncated" in diff


def test_same_content_same_digest(repo_factory: RepoFactory, tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {"a.py": "a", "b/c.py": "c", "bin": BINARY}
    first = repo_factory(files)
    second = repo_factory(files, remote="git@gitlab.com:other/repo.git")
    os.utime(second / "a.py", (1, 1))  # mtimes, owners and folders do not matter
    with snap(first) as s1, snap(first) as s2, snap(second) as s3:
        assert s1.digest == s2.digest == s3.digest
        assert s1.tree_data == s2.tree_data
        raw = gzip.decompress(s1.tree_data)
        assert s1.tree_data[4:8] == b"\0\0\0\0"  # gzip header mtime 0
        assert hashlib.sha256(raw).hexdigest() == s1.digest


def test_different_content_different_digest(repo_factory: RepoFactory) -> None:
    root = repo_factory({"a.py": "a", "run.sh": "x"})
    with snap(root) as before:
        digest = before.digest
    (root / "a.py").write_text("b")
    with snap(root) as edited:
        assert edited.digest != digest
    (root / "a.py").write_text("a")
    os.chmod(root / "run.sh", 0o755)
    with snap(root) as chmodded:
        assert chmodded.digest not in (digest, edited.digest)
    os.unlink(root / "run.sh")
    os.symlink("a.py", root / "run.sh")
    with snap(root) as linked:
        assert linked.digest not in (digest, edited.digest, chmodded.digest)
        assert contents(linked)["run.sh"] == "-> a.py"


def test_size_limit_names_the_largest_files(repo_factory: RepoFactory) -> None:
    root = repo_factory({"small.py": "x" * 10, "data/x.bin": b"\0" * 3000, "y.bin": b"1" * 2000})
    with pytest.raises(RepoError) as info:
        snap(root, max_size=4000)
    message = str(info.value)
    assert message.startswith("the code to ship is 4.9KiB, over the 3.9KiB limit")
    assert "DSTACK_MAX_CODE_SIZE" in message
    assert "largest files: data/x.bin 2.9KiB, y.bin 2.0KiB, small.py 10B" in message
    assert message.endswith("add them to .gitignore or ship them as artifacts/tags")


def test_not_a_git_repository(tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    with pytest.raises(RepoError, match="is not a git repository: run `git init` there"):
        find_repo_root(folder)
    with pytest.raises(RepoError, match="is not a git repository"):
        snap(folder)


def test_git_not_installed(
    repo_factory: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = repo_factory({"a.py": "a"})
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    with pytest.raises(RepoError, match="git is not installed"):
        snap(root)


def test_no_commits_yet(repo_factory: RepoFactory) -> None:
    root = repo_factory({"a.py": "a", "b.py": "b"}, commit=False)
    git(root, "add", "a.py")
    with snap(root) as s:
        assert (s.repo.branch, s.repo.commit, s.repo.dirty) == ("main", None, True)
        assert set(contents(s)) == {"a.py", "b.py"}


def test_detached_head(repo_factory: RepoFactory) -> None:
    root = repo_factory({"a.py": "a"})
    head = git(root, "rev-parse", "HEAD").strip()
    git(root, "checkout", "-q", "--detach")
    with snap(root) as s:
        assert (s.repo.branch, s.repo.commit, s.repo.dirty) == (None, head, False)


def test_submodules_and_nested_repos_are_skipped(repo_factory: RepoFactory) -> None:
    sub = repo_factory({"inner.py": "i"})
    root = repo_factory({"a.py": "a"})
    git(root, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub), "libs/sub")
    git(root, "commit", "-q", "-m", "sub")
    make_repo(root / "nested", {"n.py": "n"}, remote=None)
    with snap(root) as s:
        assert set(contents(s)) == {".gitmodules", "a.py"}
        assert len(s.warnings) == 1
        assert "libs/sub" in s.warnings[0] and "nested" in s.warnings[0]


def test_read_owner(repo_factory: RepoFactory) -> None:
    owner = read_owner(repo_factory({"a.py": "a"}))
    assert (owner.git_name, owner.git_email) == ("Ada Lovelace", "ada@example.com")
    assert owner.user and owner.hostname


def test_read_owner_without_git_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)
    root = tmp_path / "r"
    root.mkdir()
    git(root, "init", "-q")
    owner = read_owner(root)
    assert (owner.git_name, owner.git_email) == (None, None)


def _index_mtime(root: Path, path: str) -> str:
    """The mtime git's index holds for ``path`` (``ls-files --debug``)."""
    out = git(root, "ls-files", "--debug", "--", path)
    return next(line.split()[1] for line in out.splitlines() if "mtime:" in line)


def test_a_snapshot_refreshes_the_stat_data_of_the_index_as_git_status_does(
    repo_factory: RepoFactory,
) -> None:
    """A file touched without a change would otherwise be re-read by git at every run."""
    root = repo_factory({"a.py": "a\n", "b.py": "b\n"})
    os.utime(root / "a.py", (1_000_000_000, 1_000_000_000))
    assert _index_mtime(root, "a.py") != "1000000000:0"
    first = snap(root)
    assert _index_mtime(root, "a.py") == "1000000000:0"
    assert not first.repo.dirty  # only stat data: nothing staged, nothing shipped differently


def test_a_locked_index_is_left_alone(repo_factory: RepoFactory) -> None:
    root = repo_factory({"a.py": "a\n"})
    os.utime(root / "a.py", (1_000_000_000, 1_000_000_000))
    (root / ".git" / "index.lock").write_text("")  # another git command is writing it
    assert not snap(root).repo.dirty
    assert (root / ".git" / "index.lock").read_text() == ""
    assert _index_mtime(root, "a.py") != "1000000000:0"
