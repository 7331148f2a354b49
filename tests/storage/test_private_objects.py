"""``put(private=True)``: what secrets are stored with — owner-only on disk, SSE-KMS on S3."""

from __future__ import annotations

import stat

import pytest

from dstack.errors import AlreadyExistsError
from dstack.storage.base import Storage
from dstack.storage.local import LocalStorage


def test_a_private_object_reads_back_and_can_be_replaced(storage: Storage) -> None:
    storage.put("repos/r/secrets/A", b"one", private=True)
    assert storage.get("repos/r/secrets/A") == b"one"
    storage.put("repos/r/secrets/A", b"two", private=True)
    assert storage.get("repos/r/secrets/A") == b"two"
    with pytest.raises(AlreadyExistsError):
        storage.put("repos/r/secrets/A", b"three", if_absent=True, private=True)
    assert [info.key for info in storage.list_objects("repos/r/secrets/")] == ["repos/r/secrets/A"]


def test_a_private_object_is_protected_at_rest(storage: Storage) -> None:
    storage.put("repos/r/secrets/A", b"plain")  # an ordinary object first: replaced below
    storage.put("repos/r/secrets/A", b"secret", private=True)
    storage.put("repos/r/other", b"public")
    if isinstance(storage, LocalStorage):
        private = storage.root / "repos/r/secrets/A"
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
        # the local store is owner-only throughout; a private object is no exception
        assert stat.S_IMODE((storage.root / "repos/r/other").stat().st_mode) & 0o077 == 0
        assert not list(private.parent.glob(".tmp-*"))
        return
    client = storage._client()  # type: ignore[attr-defined]
    head = client.head_object(Bucket=storage.bucket, Key="repos/r/secrets/A")  # type: ignore[attr-defined]
    assert head["ServerSideEncryption"] == "aws:kms"
    other = client.head_object(Bucket=storage.bucket, Key="repos/r/other")  # type: ignore[attr-defined]
    assert other.get("ServerSideEncryption") != "aws:kms"
