"""One run, prepared once: the workflow with its overrides, the repo snapshot, the owner, the
jobs. ``submit`` and ``plan_run`` both start here, so they can never disagree on what a run is.

No printing, no exits. The snapshot is taken inside ``prepare_run``'s ``with`` block, which is
where ``submit`` stores it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from dstack import settings
from dstack.models import JobSpec, Owner, RepoSnapshot, RunRecord
from dstack.services.context import Context

if TYPE_CHECKING:  # the workflow files' models are loaded by the services that run them
    from dstack.providers import RunInput
    from dstack.spec.overrides import RunOverrides
    from dstack.spec.workflows import Workflow

#: the name jobs are built under before the real name is allocated (or, for a plan, never is)
DRAFT_NAME = "validating-run-0"


@dataclass
class PreparedRun:
    """What a run is before it has a name: everything ``submit`` checks and then writes."""

    workflow: Workflow
    args: list[str]
    repo: RepoSnapshot
    owner: Owner
    submitted_at: float
    #: the jobs built under ``DRAFT_NAME`` (for the compute's checks)
    draft: list[JobSpec]
    #: the snapshot (its tree and files), for ``store_code``
    snapshot: Any
    warnings: list[str] = field(default_factory=list)

    @property
    def input(self) -> RunInput:
        from dstack.providers import RunInput

        return RunInput(
            workflow=self.workflow,
            run_name=DRAFT_NAME,
            repo=self.repo,
            args=self.args,
            submitted_at=self.submitted_at,
        )

    def jobs(self, run_name: str) -> list[JobSpec]:
        """The run's jobs under its real name. Providers are pure: the same specs as
        ``draft`` but for the name, so the draft's are copied unless the workflow writes the
        run's name into them (``${{ run.name }}``): then they are built again."""
        if not any(DRAFT_NAME in job.model_dump_json(exclude={"run_name"}) for job in self.draft):
            return [job.model_copy(update={"run_name": run_name}, deep=True) for job in self.draft]
        from dstack.providers import build_jobs

        return build_jobs(replace(self.input, run_name=run_name))

    def record(self, run_name: str, *, compute: str, **fields: Any) -> RunRecord:
        """The run's record under ``run_name``; ``fields`` fill the rest (tag, deps…)."""
        return RunRecord(
            run_name=run_name,
            repo_id=self.repo.repo_id,
            workflow=self.workflow.name,
            provider=self.workflow.provider,
            submitted_at=self.submitted_at,
            owner=self.owner,
            args=self.args,
            job_count=len(self.draft),
            compute=compute,
            repo=self.repo,
            **fields,
        )


@contextmanager
def prepare_run(
    ctx: Context,
    workflow_name: str,
    *,
    args: list[str] | None = None,
    overrides: RunOverrides | None = None,
    submitted_at: float | None = None,
) -> Iterator[PreparedRun]:
    """Validate the workflow (with ``overrides``), snapshot the repo and build the jobs; the
    snapshot's archive is removed when the block ends. Raises SpecError, RepoError…"""
    from dstack.providers import RunInput, build_jobs
    from dstack.repo import find_repo_root, read_owner, take_snapshot
    from dstack.spec.adhoc import adhoc_workflow
    from dstack.spec.loader import get_workflow
    from dstack.spec.overrides import apply_overrides

    root = find_repo_root(ctx.repo_path)
    arguments = list(args or [])
    adhoc = adhoc_workflow(root, workflow_name, arguments)
    if adhoc is not None:  # `dstack run bash -c "…"` and the like
        workflow, arguments = adhoc
    else:
        workflow = get_workflow(root, workflow_name)
    notes = list(workflow.notes)
    if overrides is not None:
        workflow = apply_overrides(workflow, overrides)
    when = time.time() if submitted_at is None else submitted_at
    with take_snapshot(
        root, max_size=settings.max_code_size(), cache_dir=settings.cache_dir(),
        progress=ctx.code_progress.hashing if ctx.code_progress else None, is_root=True,
    ) as snapshot:  # fmt: skip
        check_files_shipped(workflow, snapshot.paths)
        owner = snapshot.owner or read_owner(root)
        if snapshot.unshared and _worth_saying_unshared(ctx, workflow, snapshot.repo.repo_id):
            notes.append(snapshot.unshared)
        draft = build_jobs(
            RunInput(workflow=workflow, run_name=DRAFT_NAME, repo=snapshot.repo,
                     args=arguments, submitted_at=when)
        )  # fmt: skip
        yield PreparedRun(
            workflow=workflow,
            args=arguments,
            repo=snapshot.repo,
            owner=owner,
            submitted_at=when,
            draft=draft,
            snapshot=snapshot,
            warnings=[*notes, *snapshot.warnings],
        )


def check_files_shipped(workflow: Workflow, shipped: frozenset[str]) -> None:
    """The files the job needs from the repo (`requirements`, a python/torchrun `file`) are in
    the snapshot; a workflow with deps may get them from a dep, so it is let through."""
    import posixpath

    from dstack.errors import SpecError

    if workflow.deps:
        return
    for key in ("requirements", "file"):
        value = getattr(workflow, key, None)
        if not value:
            continue
        path = posixpath.normpath(posixpath.join(workflow.working_dir, value))
        if path not in shipped:
            raise SpecError(
                f"{workflow.source}: workflow {workflow.name!r}: {key}: {path} is not in the "
                "snapshot (missing, or excluded by .gitignore): create it or fix the path"
            )


def _worth_saying_unshared(ctx: Context, workflow: Workflow, repo_id: str) -> bool:
    """ "This repo's runs cannot be shared" matters with a shared store or another repo's deps;
    otherwise it is said once per repo on this machine (a marker under ``DSTACK_HOME``)."""
    import hashlib

    from dstack.storage.local import LocalStorage

    if not isinstance(ctx.storage, LocalStorage) or any(d.repo for d in workflow.deps):
        return True
    marker = settings.dstack_home() / "notices" / hashlib.sha256(repo_id.encode()).hexdigest()[:16]
    if marker.exists():
        return False
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(repo_id + "\n")
    except OSError:
        pass
    return True
