"""The repos a store holds, found from its keys (there is no index of repos).

A skip scan: one list request finds the first key under ``repos/``, its repo id is read from the
key's shape (see :mod:`.keys`), and the next request starts just past that repo's keys. The cost
is one request per repo, whatever each repo holds.
"""

from __future__ import annotations

from collections.abc import Iterator

from dstack.storage.base import Storage

_REPOS = "repos/"
_RUN_CHILDREN = {"run.json", "jobs", "succeeded", "infra", "rendezvous.json"}


def list_repos(storage: Storage) -> Iterator[str]:
    """Every repo id with anything in the store, in ascending key order."""
    after: str | None = None
    while True:
        info = next(iter(storage.list_objects(_REPOS, after=after)), None)
        if info is None:
            return
        repo_id = repo_of_key(info.key)
        if repo_id is None:  # not a key of ours: step over it alone
            after = info.key
            continue
        yield repo_id
        # "/" and "0" are adjacent characters: every key under "repos/<repo>/" sorts before
        # "repos/<repo>0", and no other repo's key falls between them
        after = f"{_REPOS}{repo_id}0"


def repo_of_key(key: str) -> str | None:
    """The repo id of a key under ``repos/``, from the shape of what follows it; None if the
    key has no known shape."""
    segments = key[len(_REPOS) :].split("/")
    for i in range(2, len(segments)):
        if _known_tail(segments[i], segments[i + 1 :]):
            return "/".join(segments[:i])
    return None


def _known_tail(folder: str, rest: list[str]) -> bool:
    if folder in ("heads", "active"):
        return len(rest) == 1 and ";" in rest[0]
    if folder == "runs":
        return len(rest) >= 2 and rest[1] in _RUN_CHILDREN
    if folder == "tags":
        return len(rest) == 1 and rest[0].endswith(".json")
    if folder == "tagdata":
        return len(rest) >= 3
    if folder == "secrets":
        return len(rest) == 1
    return False
