"""Snapshots of the working tree as it is on disk, and their place in the state store.

Owns :func:`take_snapshot` (git facts + the code archive → :class:`CodeSnapshot`),
:func:`store_code` (content-addressed upload, a no-op when the store already has it) and
:func:`read_owner`. The files shipped are the tracked files with their working-tree content
(unstaged edits included, deleted files absent) plus the untracked files ``.gitignore`` does not
exclude. ``dirty`` means the shipped code differs from HEAD: a tracked file changed, or an
untracked file is shipped (so always before the first commit). ``code_size`` is the size of the compressed archive in bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from dstack.errors import AlreadyExistsError, RepoError
from dstack.models import Owner, RepoSnapshot
from dstack.repo import git
from dstack.repo.archive import check_size, collect, write_archive
from dstack.repo.remote import (
    choose_remote,
    has_url_rewrites,
    local_repo_id,
    parse_remote_url,
    remote_urls,
)
from dstack.state import code_key

if TYPE_CHECKING:
    from dstack.storage.base import Storage

#: archives up to this size are stored with one only-if-absent ``put``; larger ones are
#: streamed with ``upload_file`` (which has no only-if-absent form; harmless for a content
#: address: a racing writer stores the same bytes)
_PUT_IN_ONE_PIECE = 32 << 20


@dataclass
class CodeSnapshot:
    """A taken snapshot: the repo record, and the archive (a temporary file) with its digest.

    Use it as a context manager, or call :meth:`cleanup`, to delete the archive.
    """

    root: Path
    repo: RepoSnapshot
    archive: Path
    digest: str
    warnings: list[str] = field(default_factory=list)
    #: the files shipped, by path relative to the root
    paths: frozenset[str] = frozenset()
    #: why the repo's runs cannot be shared (no remote, or a local path), if so: the caller
    #: decides when it is worth saying
    unshared: str | None = None

    def cleanup(self) -> None:
        self.archive.unlink(missing_ok=True)

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


def take_snapshot(path: Path, *, max_size: int) -> CodeSnapshot:
    """Snapshot the repository containing ``path`` as it is on disk.

    RepoError if ``path`` is not in a git repository, git is missing, or the files to ship add
    up to more than ``max_size`` bytes (the message names the largest ones).
    """
    root = find_repo_root(path)
    facts = git.read_facts(root)
    identity: list[str] = []
    repo_id, remote_url = _identify(root, facts.config, facts.status.branch, identity)
    warnings: list[str] = []

    entries, skipped = collect(root, facts.files.tracked | facts.files.untracked)
    warnings.extend(skipped)
    check_size(entries, max_size)

    status = facts.status
    shipped_untracked = any(entry.path in facts.files.untracked for entry in entries)
    dirty = status.commit is None or status.tracked_changes or shipped_untracked
    diff = git.diff_head(root) if status.commit and status.tracked_changes else ""

    archive, digest = write_archive(root, entries)
    try:
        repo = RepoSnapshot(
            repo_id=repo_id,
            remote_url=remote_url,
            branch=status.branch,
            commit=status.commit,
            dirty=dirty,
            diff=diff,
            code_key=code_key(digest),
            code_size=archive.stat().st_size,
        )
    except BaseException:
        archive.unlink(missing_ok=True)
        raise
    return CodeSnapshot(
        root=root, repo=repo, archive=archive, digest=digest, warnings=warnings,
        paths=frozenset(entry.path for entry in entries), unshared=next(iter(identity), None),
    )  # fmt: skip


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


def store_code(storage: Storage, snapshot: CodeSnapshot) -> bool:
    """Upload the archive under its content address; False if the store already had it.

    An unchanged re-run costs one existence check and uploads nothing.
    """
    key = snapshot.repo.code_key
    if storage.exists(key):
        return False
    if snapshot.archive.stat().st_size <= _PUT_IN_ONE_PIECE:
        try:
            storage.put(key, snapshot.archive.read_bytes(), if_absent=True)
        except AlreadyExistsError:
            return False
    else:
        storage.upload_file(snapshot.archive, key)
    return True


def read_owner(root: Path) -> Owner:
    """Who is submitting: git ``user.name``/``user.email`` (None if unset) and this machine's
    user and host name."""
    import getpass
    import socket

    try:
        config = dict(git.read_config(root))
    except RepoError:
        config = {}
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
