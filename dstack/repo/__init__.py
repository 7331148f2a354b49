"""The repository snapshot: the working tree as it is on disk, packed for a run.

``dstack run`` calls :func:`find_repo_root`, :func:`take_snapshot` (repo id, branch, commit,
dirtiness, diff, and the code tree addressed by its digest), :func:`store_code` and
:func:`read_owner`; commands that only need the repo id (``ps``, ``logs``…) call
:func:`read_repo_id`, which reads no files; the runner places the code with
``dstack.runner.code``, which fetches it verified through ``codestore``.

Modules: ``git`` (the only place that runs git), ``remote`` (remote URLs → repo ids, ssh config),
``archive`` (choosing the files; unpacking earlier versions' archives), ``statcache`` (which
files need hashing), ``tree`` (the tree record), ``codestore`` (storing and fetching code
objects, verified), ``snapshot`` (putting them together).
"""

from __future__ import annotations

from dstack.repo.archive import unpack_code
from dstack.repo.remote import parse_remote_url
from dstack.repo.snapshot import (
    CodeSnapshot,
    find_repo_root,
    read_owner,
    read_repo_id,
    store_code,
    take_snapshot,
)

__all__ = [
    "CodeSnapshot",
    "find_repo_root",
    "parse_remote_url",
    "read_owner",
    "read_repo_id",
    "store_code",
    "take_snapshot",
    "unpack_code",
]
