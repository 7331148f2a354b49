"""Tags: names for artifacts that other workflows depend on. No printing, no exits.

A tag is made from a finished run (``dstack tags add TAG RUN``, or by the runner for
``dstack run -t TAG`` when the run succeeds) or from local folders (``dstack tags add TAG -a
DIR``). A run's tag points at the run's artifacts, so a tagged run cannot be removed until its
tags are deleted; an uploaded tag owns its files, which go when the tag is deleted or replaced.
A tag is created only-if-absent; replacing one is always an explicit request.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from dstack import state
from dstack.errors import (
    DamagedRecordError,
    DstackError,
    InvalidStateError,
    TagExistsError,
    TagNotFoundError,
)
from dstack.models import JobStatus, Tag
from dstack.services.context import Context
from dstack.state import manifest
from dstack.state.filenames import to_key
from dstack.storage.base import ProgressCallback

# The rule of workflow and dep names in .dstack/workflows.yaml, so every tag can be a dep.
#: a run in one of these states can be tagged: its artifacts were saved on purpose
TAGGABLE = frozenset({JobStatus.DONE, JobStatus.STOPPED})


@dataclass(frozen=True)
class UploadFile:
    """A local file of a tag to upload, and its path relative to a consumer's working dir."""

    path: Path
    relative: str
    size: int


#: a tag's name: letters, digits, '.', '_' and '-' (``state.validate_tag_name``)
validate_name = state.validate_tag_name
MAX_NAME = state.MAX_TAG_NAME


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

    tag = state.run_tag(ctx.storage, view.run, name, read_owner(ctx.repo_path))
    state.create_tag(ctx.storage, tag, replace=replace)
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
            relative = to_key(path.relative_to(anchor).as_posix())  # the key form of its name
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
        raise state.tag_exists_error(name, repo_id)
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
        state.create_tag(ctx.storage, tag, replace=replace)
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


#: ``{run name: [tag names]}`` of the repo's run tags (``state.tags_by_run``)
tags_by_run = state.tags_by_run


#: ``run bold-bee-1 (train)`` or ``uploaded files``, for messages
describe = state.describe_tag


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
