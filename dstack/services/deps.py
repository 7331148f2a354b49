"""Resolving a workflow's deps to concrete runs (or uploads) at submit time. No printing.

``- tag: NAME`` (``:NAME``) is the run or the upload the tag points at now; ``- workflow: NAME``
(``NAME``) is the newest run of that workflow that is ``done``; ``owner/repo/NAME`` looks in
``<host>/owner/repo``, the host being the current repo's. The result is recorded on the run and
on each job, so a run always receives what it was submitted with, even if the tag moves later,
and ``dstack ps RUN`` shows what it consumed. Resolution only reads the store.
"""

from __future__ import annotations

from collections.abc import Sequence

from dstack import state
from dstack.errors import SpecError
from dstack.models import Dependency, JobStatus
from dstack.spec.models import DepRef
from dstack.storage.base import Storage


def resolve(
    storage: Storage, repo_id: str, refs: Sequence[DepRef], *, where: str = "deps"
) -> list[Dependency]:
    """The dependencies ``refs`` mean now, in order, without duplicates. ``where`` starts
    every error line (the file and workflow, or ``--dep``)."""
    resolved: list[Dependency] = []
    checked_repos: set[str] = set()
    for ref in refs:
        target = other_repo_id(repo_id, ref.repo, where=where) if ref.repo else repo_id
        if target != repo_id and target not in checked_repos:
            if not state.repo_exists(storage, target):
                raise SpecError(f"{where}: {ref}: no repo {target} in the store")
            checked_repos.add(target)
        if ref.kind == "tag":
            dep = _resolve_tag(storage, target, ref, where)
        else:
            dep = _resolve_workflow(storage, target, ref, where)
        if all(_identity(dep) != _identity(seen) for seen in resolved):
            resolved.append(dep)
    return resolved


def other_repo_id(repo_id: str, owner_and_name: str, *, where: str = "deps") -> str:
    """``<host of repo_id>/<owner>/<name>``."""
    parts = repo_id.split("/")
    if len(parts) < 3 or parts[0] == "local":
        raise SpecError(
            f"{where}: {owner_and_name}: deps on another repo need this repo to have a remote "
            "(`git remote add origin URL`), so that dstack knows the host"
        )
    return f"{parts[0]}/{owner_and_name}"


def _resolve_tag(storage: Storage, repo_id: str, ref: DepRef, where: str) -> Dependency:
    tag = state.read_tag(storage, repo_id, ref.name)
    if tag is None:
        raise SpecError(
            f"{where}: no tag {ref.name!r} in {repo_id}; make it with `dstack run WORKFLOW -t "
            f"{ref.name}` or `dstack tags add {ref.name} -a DIR` (see `dstack tags list`)"
        )
    if (
        tag.run_name is not None
        and storage.get_or_none(state.run_key(repo_id, tag.run_name)) is None
    ):
        raise SpecError(
            f"{where}: tag {ref.name!r} points at run {tag.run_name}, which no longer exists"
        )
    return tag.as_dependency()


def _resolve_workflow(storage: Storage, repo_id: str, ref: DepRef, where: str) -> Dependency:
    run = state.latest_run(storage, repo_id, ref.name, JobStatus.DONE)
    if run is None:
        hint = f"; run it first (`dstack run {ref.name}`)" if ref.repo is None else ""
        raise SpecError(f"{where}: no successful run of workflow {ref.name!r} in {repo_id}{hint}")
    return Dependency(repo_id=repo_id, run_name=run.run_name, workflow=run.workflow)


def _identity(dep: Dependency) -> tuple[str, str | None, str | None]:
    return (dep.repo_id, dep.run_name, dep.upload_id)
