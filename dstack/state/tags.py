"""Tags and what artifacts point at: tag records (made from a run, created or replaced), the
files of uploaded tags, the markers of jobs that succeeded in a run to be tagged, and where a
dependency's files are."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from dstack.errors import AlreadyExistsError, DamagedRecordError, DstackError, TagExistsError
from dstack.models import Dependency, Owner, RunRecord, Tag, dump
from dstack.state.keys import (
    artifacts_prefix,
    succeeded_prefix,
    tag_data_prefix,
    tag_key,
    tags_prefix,
)
from dstack.state.manifest import job_manifest_key, upload_manifest_key
from dstack.state.records import load_record
from dstack.state.runs import read_run
from dstack.storage.base import Storage

MAX_TAG_NAME = 100
_TAG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def read_tag(storage: Storage, repo_id: str, name: str) -> Tag | None:
    key = tag_key(repo_id, name)
    data = storage.get_or_none(key)
    return load_record(Tag, data, key) if data is not None else None


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


def run_tag(storage: Storage, run: RunRecord, name: str, owner: Owner) -> Tag:
    """A tag of ``run`` with the count and size of its artifacts."""
    files = size = 0
    top: set[str] = set()
    for source in dependency_sources(
        storage, Dependency(repo_id=run.repo_id, run_name=run.run_name)
    ):
        for info in storage.list_objects(source.prefix):
            files += 1
            size += info.size
            top.add(info.key[len(source.prefix) :].split("/", 1)[0])
    return Tag(
        name=name,
        repo_id=run.repo_id,
        run_name=run.run_name,
        workflow=run.workflow,
        job_count=run.job_count,
        owner=owner,
        created_at=time.time(),
        artifacts=sorted(top),
        files=files,
        size=size,
    )


def create_tag(storage: Storage, tag: Tag, *, replace: bool) -> None:
    """Write ``tag`` unless the same target already holds the name (idempotent, for the jobs
    of one run racing to tag it); replace another target only when asked. The files of an
    uploaded tag that was replaced are deleted."""
    try:
        write_tag(storage, tag)
        return
    except AlreadyExistsError:
        pass
    try:
        existing = read_tag(storage, tag.repo_id, tag.name)
    except DamagedRecordError:
        existing = None  # a damaged record: replaced when asked, like any other
    if existing is not None and (existing.run_name, existing.upload_id) == (
        tag.run_name,
        tag.upload_id,
    ):
        return
    if not replace:
        raise tag_exists_error(tag.name, tag.repo_id, existing)
    write_tag(storage, tag, replace=True)
    if existing is not None:
        delete_tag_data(storage, existing)


def tag_exists_error(name: str, repo_id: str, existing: Tag | None = None) -> TagExistsError:
    target = f" ({describe_tag(existing)})" if existing else ""
    return TagExistsError(f"tag {name!r} already exists in {repo_id}{target}")


def describe_tag(tag: Tag) -> str:
    """``run bold-bee-1 (train)`` or ``uploaded files``, for messages."""
    if tag.run_name:
        return f"run {tag.run_name}" + (f" ({tag.workflow})" if tag.workflow else "")
    return "uploaded files"


def validate_tag_name(name: str) -> str:
    if not name or len(name) > MAX_TAG_NAME or not _TAG_NAME.match(name):
        raise DstackError(
            f"invalid tag name {name!r}: use letters, digits, '.', '_' and '-', starting with a "
            f"letter or digit, at most {MAX_TAG_NAME} characters"
        )
    return name


def tags_by_run(
    storage: Storage, repo_id: str, damaged: list[str] | None = None
) -> dict[str, list[str]]:
    """``{run name: [tag names]}`` of the repo's run tags, for ``rm`` to refuse tagged runs
    (a damaged tag record is skipped, with a line in ``damaged``)."""
    held: dict[str, list[str]] = {}
    for tag in list_tags(storage, repo_id, damaged=damaged):
        if tag.run_name:
            held.setdefault(tag.run_name, []).append(tag.name)
    return held
