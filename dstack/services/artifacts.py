"""Artifacts of a run or a tag: listing them and downloading them to a folder."""

from __future__ import annotations

import filecmp
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dstack import state
from dstack.errors import DstackError
from dstack.models import Tag
from dstack.services.context import Context
from dstack.services.runs import RunView
from dstack.state import manifest
from dstack.state.filenames import from_key
from dstack.storage.base import ProgressCallback


@dataclass(frozen=True)
class ArtifactFile:
    job_index: int
    path: str  # relative to the job's working directory, in key form (``state.filenames``)
    size: int
    key: str
    manifest_key: str | None = None  # the producer's checksums (``state.manifest``)


def list_artifacts(ctx: Context, view: RunView) -> list[ArtifactFile]:
    files = []
    for job in view.jobs:
        prefix = state.artifacts_prefix(job.repo.repo_id, job.run_name, job.job_index)
        checks = manifest.job_manifest_key(job.repo.repo_id, job.run_name, job.job_index)
        for info in ctx.storage.list_objects(prefix):
            relative = info.key[len(prefix) :]
            files.append(ArtifactFile(job.job_index, relative, info.size, info.key, checks))
    return files


def list_tag_artifacts(ctx: Context, tag: Tag) -> list[ArtifactFile]:
    """The files a tag points at: its run's artifacts, or its uploaded files."""
    files = []
    for source in state.dependency_sources(ctx.storage, tag.as_dependency()):
        for info in ctx.storage.list_objects(source.prefix):
            relative = info.key[len(source.prefix) :]
            files.append(
                ArtifactFile(source.job_index, relative, info.size, info.key, source.manifest_key)
            )
    return files


def download_artifacts(
    ctx: Context,
    files: list[ArtifactFile],
    output: Path,
    *,
    multi_job: bool,
    progress: ProgressCallback | None = None,
    force: bool = False,
) -> list[Path]:
    """Download ``files`` under ``output`` at their job paths (``job-<i>/`` first when the run
    has several jobs). Refuses paths that would land outside ``output``.

    The files go to a staging folder in ``output`` first; an existing file whose content
    differs (one the user edited) is replaced only with ``force``, otherwise DstackError names
    it and nothing is written."""
    root = output.resolve()
    items: list[tuple[str, Path]] = []
    for file in files:
        name = from_key(file.path)  # the name the job wrote (``state.filenames``)
        relative = f"job-{file.job_index}/{name}" if multi_job else name
        target = (root / relative).resolve()
        if root not in target.parents:
            raise DstackError(f"artifact {file.path!r} would be written outside {output}")
        items.append((file.key, target))
    sizes = {file.key: file.size for file in files}
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".dstack-download-", dir=root) as staging:
        staged = [(key, Path(staging) / f"{i}") for i, (key, _) in enumerate(items)]
        ctx.storage.download_tree(staged, progress=progress, sizes=sizes)
        manifests: dict[str, dict[str, manifest.Entry] | None] = {}
        for file, (_, new) in zip(files, staged, strict=True):  # against the producer's sums
            if file.manifest_key is None:
                continue
            if file.manifest_key not in manifests:
                manifests[file.manifest_key] = manifest.read_manifest(
                    ctx.storage, file.manifest_key
                )
            recorded = manifests[file.manifest_key]
            if recorded is not None:
                manifest.verify_file(new, file.path, recorded, f"artifact of job {file.job_index}")
        pairs = [(new, target) for (_, new), (_, target) in zip(staged, items, strict=True)]
        changed = [t for new, t in pairs if t.exists() and not filecmp.cmp(new, t, shallow=False)]
        if changed and not force:
            shown = ", ".join(str(t.relative_to(root)) for t in changed[:3])
            more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
            raise DstackError(
                f"{len(changed)} file(s) in {output} differ from the artifacts ({shown}{more}); "
                "nothing was written: use --force to replace them, or -o another folder"
            )
        for new, target in pairs:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(new, target)
    return [target for _, target in items]


def missing_artifacts(ctx: Context, view: RunView) -> list[str]:
    """The artifact paths the run declared and saved nothing under (the master job's: only it
    saves artifacts in a multi-node run)."""
    from dstack.spec.fields import ABSOLUTE_FOLDER

    saved = [file.path for file in list_artifacts(ctx, view) if file.job_index == 0]
    missing = []
    for artifact in view.jobs[0].artifacts if view.jobs else []:
        stored = ABSOLUTE_FOLDER + artifact.path if artifact.path.startswith("/") else artifact.path
        if not any(path == stored or path.startswith(stored + "/") for path in saved):
            missing.append(artifact.path)
    return missing
