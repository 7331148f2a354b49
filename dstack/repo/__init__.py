"""The repository snapshot: the working tree as it is on disk, packed for a run.

``dstack run`` calls :func:`find_repo_root`, :func:`take_snapshot` (repo id, branch, commit,
dirtiness, diff, and a deterministic code archive addressed by its digest), :func:`store_code`
and :func:`read_owner`; commands that only need the repo id (``ps``, ``logs``…) call
:func:`read_repo_id`, which reads no files; the runner calls :func:`unpack_code`.

Modules: ``git`` (the only place that runs git), ``remote`` (remote URLs → repo ids, ssh config),
``archive`` (the archive format and safe unpacking), ``snapshot`` (putting them together).
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
