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
        from_flag = overrides is not None and overrides.working_dir is not None
        check_working_dir(workflow, snapshot.paths, from_flag=from_flag)
        check_files_shipped(workflow, snapshot.paths)
        owner = snapshot.owner or read_owner(root)
        if snapshot.unshared and _worth_saying_unshared(ctx, workflow, snapshot.repo.repo_id):
            notes.append(snapshot.unshared)
        if identity := identity_notice(owner, snapshot.repo.repo_id):
            notes.append(identity)
        if not ctx.compute.is_cloud and (ignored := _cloud_only(workflow)):
            *others, last = ignored
            said = f"{', '.join(others)} and {last} apply" if others else f"{last} applies"
            where = "they are" if others else "it is"
            notes.append(
                f"{said} to runs on AWS; this run is on this machine, where {where} ignored"
            )
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


def check_working_dir(workflow: Workflow, shipped: frozenset[str], *, from_flag: bool) -> None:
    """``working_dir`` is a folder of the snapshot (a typo would otherwise be made an empty
    folder, and the job fail later on a missing file). A workflow with deps may get the folder
    from a dep's artifacts, so it is let through."""
    import difflib
    import posixpath

    from dstack.errors import SpecError

    folder = posixpath.normpath(workflow.working_dir)
    if folder == "." or workflow.deps:
        return
    every: set[str] = set()  # every folder that holds a shipped file, however deep
    for path in shipped:
        parent = posixpath.dirname(path)
        while parent and parent not in every:
            every.add(parent)
            parent = posixpath.dirname(parent)
    if folder in every:
        return
    where = "-w" if from_flag else f"{workflow.source}: workflow {workflow.name!r}: working_dir"
    if folder in shipped:
        raise SpecError(f"{where}: {folder} is a file, not a folder of the repo")
    close = difflib.get_close_matches(folder, sorted(every), n=1)
    top = sorted(f for f in every if "/" not in f)[:5]
    if close:
        hint = f"did you mean {close[0]}?"
    elif top:
        hint = f"the repo's folders are {', '.join(top)}{', …' if len(top) == 5 else ''} (or .)"
    else:
        hint = "the repo has no folders: leave working_dir out"
    raise SpecError(
        f"{where}: {folder} is not a folder of the repo (none of its files is under it, and "
        f"dstack would run the job in an empty folder); {hint}"
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
    otherwise it is said once per repo on this machine."""
    from dstack.services.notices import unshared_repo_due

    return any(d.repo for d in workflow.deps) or unshared_repo_due(ctx.storage, repo_id)


def identity_notice(owner: Owner, repo_id: str) -> str | None:
    """Once per repo on this machine, when git has no ``user.name``: whose name the runs get
    instead, and how to set one (in a shared store every such run shows as the OS user)."""
    from dstack.services.notices import first_time

    if owner.git_name or not first_time("identity", repo_id):
        return None
    return (
        f"git has no user.name here, so runs are recorded as {owner.user!r} (this machine's "
        "user) with no email; set yours with `git config --global user.name 'Your Name'` and "
        "`git config --global user.email you@example.com`"
    )


def _cloud_only(workflow: Workflow) -> list[str]:
    """The cloud market's settings the workflow (or its command line) gives."""
    keys = ("spot_policy", "max_price", "on_demand_after")
    return [key for key in keys if getattr(workflow, key, None) is not None]
