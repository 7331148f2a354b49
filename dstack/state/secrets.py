"""A repo's secrets: private records that only runners and ``dstack secrets`` read."""

from __future__ import annotations

from dstack.models import SecretRecord, dump
from dstack.state.keys import secret_key, secrets_prefix
from dstack.state.records import load_record
from dstack.storage.base import Storage


def write_secret(storage: Storage, repo_id: str, secret: SecretRecord) -> None:
    """Store a secret owner-only / encrypted (``private``), replacing one of the same name."""
    storage.put(secret_key(repo_id, secret.name), dump(secret), private=True)


def read_secret(storage: Storage, repo_id: str, name: str) -> SecretRecord | None:
    key = secret_key(repo_id, name)
    data = storage.get_or_none(key)
    return None if data is None else load_record(SecretRecord, data, key)


def list_secret_names(storage: Storage, repo_id: str) -> list[str]:
    """The names of the repo's secrets, sorted (one list request; no value is read)."""
    prefix = secrets_prefix(repo_id)
    return sorted(
        name
        for info in storage.list_objects(prefix)
        if "/" not in (name := info.key[len(prefix) :])
    )


def delete_secret(storage: Storage, repo_id: str, name: str) -> None:
    storage.delete(secret_key(repo_id, name))
