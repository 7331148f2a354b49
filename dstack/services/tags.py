"""Tags: names for artifacts that other workflows depend on. No printing, no exits.

A tag is made from a finished run (``dstack tags add TAG RUN``, or by the runner for
``dstack run -t TAG`` when the run succeeds) or from local folders (``dstack tags add TAG -a
DIR``). A run's tag points at the run's artifacts, so a tagged run cannot be removed until its
tags are deleted; an uploaded tag owns its files, which go when the tag is deleted or replaced.
A tag is created only-if-absent; replacing one is always an explicit request.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from dstack import state
from dstack.errors import (
    AlreadyExistsError,
    DamagedRecordError,
    DstackError,
    InvalidStateError,
    TagExistsError,
    TagNotFoundError,
)
from dstack.models import Dependency, JobStatus, Owner, RunRecord, Tag
from dstack.services.context import Context
from dstack.state import manifest
from dstack.storage.base import ProgressCallback, Storage

# The rule of workflow and dep names in .dstack/workflows.yaml, so every tag can be a dep.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_NAME = 100
#: a run in one of these states can be tagged: its artifacts were saved on purpose
TAGGABLE = frozenset({JobStatus.DONE, JobStatus.STOPPED})


@dataclass(frozen=True)
class UploadFile:
    """A local file of a tag to upload, and its path relative to a consumer's working dir."""

    path: Path
    relative: str
    size: int


def validate_name(name: str) -> str:
    if not name or len(name) > MAX_NAME or not _NAME.match(name):
        raise DstackError(
            f"invalid tag name {name!r}: use letters, digits, '.', '_' and '-', starting with a "
            f"letter or digit, at most {MAX_NAME} characters"
        )
    return name


def list_tags(ctx: Context) -> list[Tag]:
    """The repo's tags; a damaged tag record is left out with a line in ``ctx.warnings``."""
    return state.list_tags(ctx.storage, ctx.repo_id, damaged=ctx.warnings)


def find_tag(ctx: Context, name: str) -> Tag | None:
    return state.read_tag(ctx.storage, ctx.repo_id, validate_name(name))


def get_tag(ctx: Context, name: str) -> Tag:
    tag = find_tag(ctx, name)
    if tag is None:
        raise TagNotFoundError(f"no tag {name!r} in {ctx.repo_id}; see `dstack tags list`")
    return tag


def add_run_tag(ctx: Context, name: str, run_name: str, *, replace: bool = False) -> Tag:
    """Tag a finished run (done or stopped). ``TagExistsError`` if the name is taken and
    ``replace`` is false."""
    from dstack.services.runs import get_run

    validate_name(name)
    view = get_run(ctx, run_name)
    status = view.status
    if not status.is_finished:
        raise InvalidStateError(
            f"run {run_name} is {status.value}: only a finished run can be tagged; wait for it, "
            f"or tag a run as it succeeds with `dstack run WORKFLOW -t {name}`"
        )
    if status not in TAGGABLE:
        raise InvalidStateError(
            f"run {run_name} {status.value}: its artifacts may be incomplete, so it cannot be "
            "tagged; only a run that is done (or was stopped on purpose) can"
        )
    from dstack.repo import read_owner

    tag = _run_tag(ctx.storage, view.run, name, read_owner(ctx.repo_path))
    _create(ctx.storage, tag, replace=replace)
    return tag


def collect_upload(paths: list[Path], base: Path) -> list[UploadFile]:
    """The files of ``paths`` (folders or files), each relative to ``base`` when inside it, or
    to the folder that holds it otherwise. A consumer finds them at these relative paths."""
    files: dict[str, UploadFile] = {}
    base = base.resolve()
    for given in paths:
        root = given.resolve() if given.is_absolute() else (base / given).resolve()
        if not root.exists():
            raise DstackError(f"-a {given}: no such file or folder")
        anchor = base if root == base or base in root.parents else root.parent
        for path in _walk(root):
            relative = path.relative_to(anchor).as_posix()
            files[relative] = UploadFile(path, relative, path.stat().st_size)
    if not files:
        raise DstackError(f"nothing to upload: {', '.join(str(p) for p in paths)} holds no files")
    return sorted(files.values(), key=lambda f: f.relative)


def add_upload_tag(
    ctx: Context,
    name: str,
    files: list[UploadFile],
    *,
    replace: bool = False,
    progress: ProgressCallback | None = None,
) -> Tag:
    """Upload ``files`` as a new tag: files first (under a fresh upload id), then the tag, so
    no one ever sees a tag whose files are partly there."""
    from dstack.repo import read_owner

    validate_name(name)
    repo_id = ctx.repo_id
    if not replace and find_tag(ctx, name) is not None:
        raise _exists(name, repo_id)
    upload_id = f"{int(time.time() * 1000)}-{uuid.uuid4().hex[:8]}"
    prefix = state.tag_data_prefix(repo_id, name, upload_id)
    pairs = [(f.path, prefix + f.relative) for f in files]
    manifest_key = manifest.upload_manifest_key(repo_id, name, upload_id)
    try:
        checksums = manifest.entries_of({f.relative: f.path for f in files})
        ctx.storage.upload_tree(pairs, progress=progress)
        manifest.write_manifest(ctx.storage, manifest_key, checksums)
    except BaseException:
        ctx.storage.delete_prefix(prefix)
        ctx.storage.delete(manifest_key)
        raise
    tag = Tag(
        name=name,
        repo_id=repo_id,
        upload_id=upload_id,
        owner=read_owner(ctx.repo_path),
        created_at=time.time(),
        artifacts=sorted({f.relative.split("/", 1)[0] for f in files}),
        files=len(files),
        size=sum(f.size for f in files),
    )
    try:
        _create(ctx.storage, tag, replace=replace)
    except TagExistsError:
        ctx.storage.delete_prefix(prefix)
        ctx.storage.delete(manifest_key)
        raise
    return tag


def delete_tag(ctx: Context, name: str) -> Tag | None:
    """Delete a tag (and an uploaded tag's files). The tagged run and its artifacts stay.
    A tag whose record is damaged is removed too (with every file uploaded under its name);
    then None is returned."""
    try:
        tag = get_tag(ctx, name)
    except DamagedRecordError:
        state.delete_damaged_tag(ctx.storage, ctx.repo_id, name)
        return None
    state.delete_tag(ctx.storage, tag)
    return tag


def tags_by_run(
    storage: Storage, repo_id: str, damaged: list[str] | None = None
) -> dict[str, list[str]]:
    """``{run name: [tag names]}`` of the repo's run tags, for ``rm`` to refuse tagged runs
    (a damaged tag record is skipped, with a line in ``damaged``)."""
    held: dict[str, list[str]] = {}
    for tag in state.list_tags(storage, repo_id, damaged=damaged):
        if tag.run_name:
            held.setdefault(tag.run_name, []).append(tag.name)
    return held


def tag_on_success(storage: Storage, run: RunRecord, job_index: int) -> str | None:
    """Called by the runner of a job of a run submitted with ``-t`` once the job succeeded,
    before it records ``done`` (so whoever sees the run done finds the tag). Each job marks
    itself succeeded, then counts the marks: the last to mark (or several, racing) writes the
    tag, idempotently. Returns a line for the job's log when the tag was not moved."""
    assert run.tag is not None
    state.mark_job_succeeded(storage, run.repo_id, run.run_name, job_index)
    if state.succeeded_jobs(storage, run.repo_id, run.run_name) < run.job_count:
        return None
    tag = _run_tag(storage, run, run.tag, run.owner)
    try:
        _create(storage, tag, replace=run.replace_tag)
    except TagExistsError as exc:
        return f"{exc}; it was not moved (`dstack tags add {run.tag} {run.run_name} -y` moves it)"
    return None


# ---- helpers ----------------------------------------------------------------------------------


def _run_tag(storage: Storage, run: RunRecord, name: str, owner: Owner) -> Tag:
    """A tag of ``run`` with the count and size of its artifacts."""
    files = size = 0
    top: set[str] = set()
    for source in state.dependency_sources(
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


def _create(storage: Storage, tag: Tag, *, replace: bool) -> None:
    """Write ``tag`` unless the same target already holds the name (idempotent, for the jobs
    of one run racing to tag it); replace another target only when asked. The files of an
    uploaded tag that was replaced are deleted."""
    try:
        state.write_tag(storage, tag)
        return
    except AlreadyExistsError:
        pass
    try:
        existing = state.read_tag(storage, tag.repo_id, tag.name)
    except DamagedRecordError:
        existing = None  # a damaged record: replaced when asked, like any other
    if existing is not None and (existing.run_name, existing.upload_id) == (
        tag.run_name,
        tag.upload_id,
    ):
        return
    if not replace:
        raise _exists(tag.name, tag.repo_id, existing)
    state.write_tag(storage, tag, replace=True)
    if existing is not None:
        state.delete_tag_data(storage, existing)


def _exists(name: str, repo_id: str, existing: Tag | None = None) -> TagExistsError:
    target = f" ({describe(existing)})" if existing else ""
    return TagExistsError(f"tag {name!r} already exists in {repo_id}{target}")


def describe(tag: Tag) -> str:
    """``run bold-bee-1 (train)`` or ``uploaded files``, for messages."""
    if tag.run_name:
        return f"run {tag.run_name}" + (f" ({tag.workflow})" if tag.workflow else "")
    return "uploaded files"


def _walk(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    found = []
    for folder, _dirs, names in os.walk(root):
        for filename in names:
            path = Path(folder) / filename
            if path.is_file():
                found.append(path)
    return found
