"""Checksums of stored files, recorded by their producer and verified by their consumers.

A job's runner, once its last artifacts are saved, writes ``jobs/<i>/manifest.json``: the size
and SHA-256 of every artifact file. ``dstack tags add -a`` writes the same for an upload,
beside its files (``tagdata/<tag>/<upload>.manifest.json``). Whoever downloads those files (a
job's dependencies, ``dstack artifacts download``) checks each against the manifest and stops
with one line at the first mismatch; a file not in the manifest, or a manifest that cannot be
read, is a mismatch too. Files of runs saved before manifests existed (or of a run still
running) have none and are taken as they are.

What this catches: a file changed, truncated or replaced in the store after it was saved —
by accident or by a bucket user who did not also rewrite the manifest. It is not a signature:
anyone who may write the bucket may rewrite both.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from dstack.errors import StorageError
from dstack.state.keys import job_manifest_key, upload_manifest_key
from dstack.storage.base import Storage

Entry = tuple[int, str]  # (size, sha256 hex)
__all__ = [  # the keys live in state.keys, re-exported for the producers and consumers
    "Entry", "entries_of", "file_sha256", "job_manifest_key", "read_manifest",
    "upload_manifest_key", "verify_file", "write_manifest",
]  # fmt: skip


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def entries_of(files: dict[str, Path]) -> dict[str, Entry]:
    """``{relative path: (size, sha256)}`` of local files."""
    return {rel: (path.stat().st_size, file_sha256(path)) for rel, path in files.items()}


def write_manifest(storage: Storage, key: str, entries: dict[str, Entry]) -> None:
    files = {rel: {"size": size, "sha256": sha} for rel, (size, sha) in sorted(entries.items())}
    storage.put(key, json.dumps({"files": files}, indent=1).encode())


def read_manifest(storage: Storage, key: str) -> dict[str, Entry] | None:
    """The manifest at ``key``; None if there is none; StorageError if it is damaged."""
    data = storage.get_or_none(key)
    if data is None:
        return None
    try:
        files = json.loads(data)["files"]
        return {rel: (int(e["size"]), str(e["sha256"])) for rel, e in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StorageError(
            f"the checksums {key} in the state store are unreadable: the files they cover "
            "cannot be verified"
        ) from exc


def verify_file(path: Path, relative: str, manifest: dict[str, Entry], what: str) -> None:
    """StorageError unless the downloaded ``path`` is the file the manifest records."""
    entry = manifest.get(relative)
    if entry is None:
        raise StorageError(
            f"{what}: {relative} is in the store but not among the files its producer saved "
            "(added by someone else): not used"
        )
    size, sha = entry
    actual = path.stat().st_size
    if actual != size or file_sha256(path) != sha:
        raise StorageError(
            f"{what}: {relative} does not match the checksum its producer recorded "
            f"({actual:,} bytes, expected {size:,}): the stored file was changed or damaged"
        )
