"""Snapshots of the working tree as it is on disk, and their place in the state store.

Owns :func:`take_snapshot` (git facts + the code tree → :class:`CodeSnapshot`),
:func:`store_code` (what the store lacks of it, see ``dstack.repo.codestore``) and
:func:`read_owner`. The files shipped are the tracked files with their working-tree content
(unstaged edits included, deleted files absent) plus the untracked files ``.gitignore`` does not
exclude. ``dirty`` means the shipped code differs from HEAD: a tracked file changed, or an
untracked file is shipped (so always before the first commit). ``code_size`` is the total size
of the shipped files in bytes.

A snapshot reads a file only when its ``lstat`` changed since the last snapshot of the same
folder (``dstack.repo.statcache``), so its cost grows with what changed, plus one ``lstat``
per file.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from dstack.errors import RepoError
from dstack.models import Owner, RepoSnapshot
from dstack.repo import codestore, git
from dstack.repo.archive import check_size, collect
from dstack.repo.remote import (
    choose_remote,
    has_url_rewrites,
    local_repo_id,
    parse_remote_url,
    remote_urls,
)
from dstack.repo.statcache import HashProgress, StatCache
from dstack.repo.tree import TreeEntry, compress, encode_tree, paused_gc
from dstack.state import code_tree_key

if TYPE_CHECKING:
    from dstack.storage.base import ProgressCallback, Storage


@dataclass
class CodeSnapshot:
    """A taken snapshot: the repo record, and the code tree (its entries, canonical JSON and
    address). ``hashed_files`` is how many files had to be read (the rest came from the stat
    cache). A context manager for compatibility; it holds no temporary file."""

    root: Path
    repo: RepoSnapshot
    entries: list[TreeEntry]
    tree_raw: bytes
    digest: str
    warnings: list[str] = field(default_factory=list)
    hashed_files: int = 0
    #: the files shipped, by path relative to the root
    paths: frozenset[str] = frozenset()
    #: why the repo's runs cannot be shared (no remote, or a local path), if so: the caller
    #: decides when it is worth saying
    unshared: str | None = None
    #: who is submitting (:func:`read_owner`, from the config the snapshot read)
    owner: Owner | None = None

    @cached_property
    def tree_data(self) -> bytes:
        """The tree's bytes as stored (compressed only when needed: an unchanged re-run
        stores nothing)."""
        return compress(self.tree_raw)

    def cleanup(self) -> None:
        return None

    def __enter__(self) -> CodeSnapshot:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


def find_repo_root(path: Path) -> Path:
    """The root of the git work tree containing ``path``; RepoError if there is none."""
    return git.find_toplevel(path)


def read_repo_id(path: Path) -> tuple[str, list[str]]:
    """The repo id of the repository containing ``path``, and warnings (no remote: the repo
    cannot be shared). Cheaper than a snapshot: it reads no files."""
    root = find_repo_root(path)
    branch, config = git.read_branch_and_config(root)
    warnings: list[str] = []
    repo_id, _ = _identify(root, config, branch, warnings)
    return repo_id, warnings


def take_snapshot(
    path: Path,
    *,
    max_size: int,
    cache_dir: Path | None = None,
    progress: HashProgress | None = None,
    is_root: bool = False,
) -> CodeSnapshot:
    """Snapshot the repository containing ``path`` as it is on disk.

    ``cache_dir`` holds the stat cache (None: every file is hashed); ``progress`` is called as
    files are hashed. RepoError if ``path`` is not in a git repository, git is missing, or the
    files to ship add up to more than ``max_size`` bytes (the message names the largest ones).
    ``is_root``: ``path`` is the root of the work tree (:func:`find_repo_root` found it).
    """
    with paused_gc():
        root = path if is_root else find_repo_root(path)
        return _take_snapshot(root, max_size, cache_dir, progress)


def _take_snapshot(
    root: Path, max_size: int, cache_dir: Path | None, progress: HashProgress | None
) -> CodeSnapshot:
    facts = git.read_facts(root)
    identity: list[str] = []
    repo_id, remote_url = _identify(root, facts.config, facts.status.branch, identity)
    warnings: list[str] = []

    entries, skipped, stats = collect(root, facts.files.tracked | facts.files.untracked)
    warnings.extend(skipped)
    total = check_size(entries, max_size)

    status = facts.status
    shipped_untracked = any(entry.path in facts.files.untracked for entry in entries)
    dirty = status.commit is None or status.tracked_changes or shipped_untracked
    diff = ""
    differ = None
    if status.commit and status.tracked_changes:  # git works while the files are looked at
        differ = _Differ(root)
    cache = StatCache(cache_dir, root)
    tree: list[TreeEntry] = []
    for entry in entries:
        if entry.target is not None:
            tree.append(TreeEntry(entry.path, target=entry.target))
            continue
        try:
            digest = cache.digest(entry.path, stats[entry.path], progress)
        except OSError as exc:
            raise RepoError(
                f"cannot read {entry.path} ({exc.strerror or exc}): was it changed while the "
                "code was being read? Try again"
            ) from exc
        tree.append(TreeEntry(entry.path, digest, entry.size, entry.executable))
    cache.save()
    tree_raw, digest = encode_tree(tree)
    if differ is not None:
        diff = differ.result()
    repo = RepoSnapshot(
        repo_id=repo_id,
        remote_url=remote_url,
        branch=status.branch,
        commit=status.commit,
        dirty=dirty,
        diff=diff,
        code_key=code_tree_key(digest),
        code_size=total,
    )
    return CodeSnapshot(
        root=root, repo=repo, entries=tree, tree_raw=tree_raw, digest=digest,
        warnings=warnings, hashed_files=cache.hashed_files,
        paths=frozenset(entry.path for entry in entries), unshared=next(iter(identity), None),
        owner=owner_of(facts.config),
    )  # fmt: skip


class _Differ(threading.Thread):
    """``git diff HEAD`` (``dstack.repo.git.diff_head``) in the background."""

    def __init__(self, root: Path) -> None:
        super().__init__(name="git-diff", daemon=True)
        self.root = root
        self.diff = ""
        self.start()

    def run(self) -> None:
        try:
            self.diff = git.diff_head(self.root)
        except RepoError:  # the diff is for people: a snapshot never fails for it
            self.diff = ""

    def result(self) -> str:
        self.join()
        return self.diff


def _identify(
    root: Path, config: list[tuple[str, str]], branch: str | None, warnings: list[str]
) -> tuple[str, str | None]:
    """The repo id and the credential-free remote URL; a warning when runs cannot be shared."""
    remote = choose_remote(config, branch)
    if remote is None:
        repo_id = local_repo_id(root)
        warnings.append(
            f"no git remote: this repo is known as {repo_id} and its runs cannot be shared "
            "with other repos' users"
        )
        return repo_id, None
    url = remote_urls(config)[remote]
    if has_url_rewrites(config):
        url = git.remote_get_url(root, remote)
    repo_id, clean_url = parse_remote_url(url)
    if repo_id.startswith("local/"):
        warnings.append(
            f"the git remote {remote!r} is a path on this machine: this repo is known as "
            f"{repo_id} and its runs cannot be shared with other repos' users"
        )
    return repo_id, clean_url


def store_code(
    storage: Storage,
    snapshot: CodeSnapshot,
    *,
    cache_dir: Path,
    on_start: codestore.StoreProgress | None = None,
    progress: ProgressCallback | None = None,
) -> codestore.StoreReport:
    """Store what the store may lack of ``snapshot`` (``dstack.repo.codestore.store_code``):
    nothing but one existence check when this machine stored the same tree before."""
    return codestore.store_code(
        storage, snapshot.root, snapshot.digest, lambda: snapshot.tree_data, snapshot.entries,
        cache_dir=cache_dir, on_start=on_start, progress=progress,
    )  # fmt: skip


def read_owner(root: Path) -> Owner:
    """Who is submitting: git ``user.name``/``user.email`` (None if unset) and this machine's
    user and host name."""
    try:
        config = git.read_config(root)
    except RepoError:
        config = []
    return owner_of(config)


def owner_of(git_config: list[tuple[str, str]]) -> Owner:
    """The :func:`read_owner` of a repository whose config was read already."""
    import getpass
    import socket

    config = dict(git_config)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no USER/LOGNAME (some containers)
        user = "unknown"
    return Owner(
        git_name=config.get("user.name") or None,
        git_email=config.get("user.email") or None,
        user=user,
        hostname=socket.gethostname() or "unknown",
    )
