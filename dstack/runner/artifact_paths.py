"""Where a job's declared artifacts are on disk, and what is done with them around the job.

- Before the job: each artifact folder is made (as the 2022 runner did), so
  ``echo hi > output/hello.txt`` works; a path that looks like a file (``model.pt``) gets its
  parent folder only.
- An absolute artifact (``/root/.cache/huggingface/hub``) is read from that path and saved
  under ``_absolute/`` among the job's artifacts (``_absolute/root/.cache/…``). Placed back
  (as a dep, or for a retry) it lands at its own path only where the runner owns the machine
  (a fresh cloud instance); elsewhere it stays in ``<working dir>/_absolute/…`` and the log
  says so: dstack never writes outside a job's folder on a machine someone works on.
- After the job: a declared path the job never created is named in a warning.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path, PurePosixPath

from dstack.models import JobSpec
from dstack.spec.fields import ABSOLUTE_FOLDER


def on_disk(workdir: Path, path: str) -> Path:
    """Where the artifact ``path`` is while the job runs."""
    return Path(path) if path.startswith("/") else workdir / path


def stored_as(path: str) -> str:
    """The artifact's path among the job's saved files (relative to the working directory)."""
    return ABSOLUTE_FOLDER + path if path.startswith("/") else path


def make_folders(spec: JobSpec, workdir: Path, *, own_machine: bool) -> None:
    """Make each artifact's folder before the job starts (its parent, for a file-like path);
    an absolute one only on a machine that is the job's own."""
    for artifact in spec.artifacts:
        if artifact.path.startswith("/") and not own_machine:
            continue
        target = on_disk(workdir, artifact.path)
        folder = target.parent if PurePosixPath(artifact.path).suffix else target
        with contextlib.suppress(OSError):  # an absolute path the user may not write: the job's
            folder.mkdir(parents=True, exist_ok=True)


def missing(spec: JobSpec, workdir: Path) -> list[str]:
    """The declared artifact paths with nothing in them after the job."""
    result = []
    for artifact in spec.artifacts:
        target = on_disk(workdir, artifact.path)
        if not target.exists() or (target.is_dir() and not any(target.iterdir())):
            result.append(artifact.path)
    return result


def place_absolute(workdir: Path, *, own_machine: bool) -> str | None:
    """After deps or a restore placed ``_absolute/…`` under ``workdir``: move it to its own
    paths when ``own_machine``; return a line for the log saying where the files are."""
    folder = workdir / ABSOLUTE_FOLDER
    if not folder.is_dir():
        return None
    tops = sorted("/" + p.relative_to(folder).as_posix() for p in _leaves(folder))
    if not own_machine:
        return (
            f"absolute artifact paths ({', '.join(tops[:3])}{'…' if len(tops) > 3 else ''}) "
            f"placed under {folder}/ instead: on this machine dstack writes nothing outside "
            "the job's folder"
        )
    for source in sorted(folder.rglob("*")):
        if source.is_file() or source.is_symlink():
            target = Path("/") / source.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(source), target)
    shutil.rmtree(folder, ignore_errors=True)
    return f"absolute artifact paths placed back at {', '.join(tops[:3])}"


def _leaves(folder: Path) -> list[Path]:
    """The absolute paths placed, as deep as they go alone: ``_absolute/root/.cache/hf/…``
    → ``root/.cache/hf`` when nothing else is beside them."""
    result = []
    for top in folder.iterdir():
        while top.is_dir() and len(children := list(top.iterdir())) == 1 and children[0].is_dir():
            top = children[0]
        result.append(top)
    return result
