"""Tags and what artifacts point at: tag records, the files of uploaded tags, the markers of
jobs that succeeded in a run to be tagged, and where a dependency's files are."""

from __future__ import annotations

from dataclasses import dataclass

from dstack.errors import DamagedRecordError
from dstack.models import Dependency, Tag, dump
from dstack.state.keys import (
    artifacts_prefix,
    succeeded_prefix,
    tag_data_prefix,
    tag_key,
    tags_prefix,
)
from dstack.state.manifest import job_manifest_key, upload_manifest_key
from dstack.state.records import _load
from dstack.state.runs import read_run
from dstack.storage.base import Storage


def read_tag(storage: Storage, repo_id: str, name: str) -> Tag | None:
    key = tag_key(repo_id, name)
    data = storage.get_or_none(key)
    return _load(Tag, data, key) if data is not None else None


def write_tag(storage: Storage, tag: Tag, *, replace: bool = False) -> None:
    """Create ``tag``; ``AlreadyExistsError`` if the name is taken, unless ``replace``."""
    storage.put(tag_key(tag.repo_id, tag.name), dump(tag), if_absent=not replace)


def list_tags(storage: Storage, repo_id: str, damaged: list[str] | None = None) -> list[Tag]:
    """Every tag of a repo, by name: one list request and one read per tag. A damaged tag
    record is left out, with a line for the user in ``damaged``."""
    prefix = tags_prefix(repo_id)
    tags = []
    for info in storage.list_objects(prefix):
        name = info.key[len(prefix) :]
        if name.endswith(".json") and "/" not in name:
            try:
                tag = read_tag(storage, repo_id, name.removesuffix(".json"))
            except DamagedRecordError:
                if damaged is not None:
                    damaged.append(damaged_tag_line(name.removesuffix(".json")))
                continue
            if tag is not None:
                tags.append(tag)
    return sorted(tags, key=lambda t: t.name)


def damaged_tag_line(name: str) -> str:
    return f"tag {name}: its record is unreadable (damaged); `dstack tags delete {name}` removes it"


def delete_damaged_tag(storage: Storage, repo_id: str, name: str) -> None:
    """Remove a tag whose record cannot be read, and every file uploaded under its name."""
    storage.delete(tag_key(repo_id, name))
    storage.delete_prefix(tag_data_prefix(repo_id, name, "").rstrip("/") + "/")


def delete_tag(storage: Storage, tag: Tag) -> None:
    """Remove a tag, then the uploaded files it alone points at (a run's artifacts stay)."""
    storage.delete(tag_key(tag.repo_id, tag.name))
    delete_tag_data(storage, tag)


def delete_tag_data(storage: Storage, tag: Tag) -> None:
    if tag.upload_id:
        storage.delete_prefix(tag_data_prefix(tag.repo_id, tag.name, tag.upload_id))
        storage.delete(upload_manifest_key(tag.repo_id, tag.name, tag.upload_id))


def mark_job_succeeded(storage: Storage, repo_id: str, run_name: str, job_index: int) -> None:
    storage.put(succeeded_prefix(repo_id, run_name) + str(job_index), b"")


def succeeded_jobs(storage: Storage, repo_id: str, run_name: str) -> int:
    """How many jobs of the run have marked themselves succeeded (one list request)."""
    return sum(1 for _ in storage.list_objects(succeeded_prefix(repo_id, run_name)))


@dataclass(frozen=True)
class ArtifactSource:
    """One folder of artifacts in the store: files are ``prefix + <path>``, ``<path>`` relative
    to the working directory of the job that wrote them. ``identity`` names the content for
    good (a finished run's job, or one upload), so machines can cache it under that name."""

    prefix: str
    identity: str
    job_index: int = 0
    manifest_key: str | None = None  # the producer's checksums (``state.manifest``)


def dependency_sources(storage: Storage, dep: Dependency) -> list[ArtifactSource]:
    """Where a dependency's files are, in job order. ``RunNotFoundError`` if its run is gone."""
    if dep.run_name is None:
        if dep.tag is None or dep.upload_id is None:
            raise ValueError(f"dependency {dep!r} names neither a run nor an upload")
        prefix = tag_data_prefix(dep.repo_id, dep.tag, dep.upload_id)
        manifest = upload_manifest_key(dep.repo_id, dep.tag, dep.upload_id)
        identity = f"{dep.repo_id}/tagdata/{dep.tag}/{dep.upload_id}"
        return [ArtifactSource(prefix, identity, 0, manifest)]
    run = read_run(storage, dep.repo_id, dep.run_name)
    # A run name may be reused after `rm`: its submit time makes the identity unique.
    identity = f"{dep.repo_id}/runs/{run.run_name}@{int(run.submitted_at * 1000)}"
    return [
        ArtifactSource(
            artifacts_prefix(dep.repo_id, run.run_name, i),
            f"{identity}/{i}",
            i,
            job_manifest_key(dep.repo_id, run.run_name, i),
        )
        for i in range(run.job_count)
    ]
