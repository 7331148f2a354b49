"""`dstack run --plan`: what a run would create on AWS, rendered offline. No printing, no exits.

The jobs are built exactly as ``submit`` builds them — the workflow validated, the overrides
applied, the repository snapshotted (its digest computed, nothing uploaded), each job's
instance type chosen from the catalog — and the run stack is rendered through Pulumi's mock
runtime (``dstack.backends.aws.plan``). Nothing is written to the store and no cloud API is
called, so no credentials are needed. What is only known at submit is shown as such: the run's
name, and the values noted in ``RunPlan.notes``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from dstack import settings
from dstack.services.context import Context
from dstack.spec.overrides import RunOverrides

#: the name a planned run is shown under (the real one is allocated at submit)
PLAN_RUN_NAME = "planned-run-1"
#: RFC 5737 documentation address, standing in for the caller's own
PLACEHOLDER_CALLER = "192.0.2.1/32"
PLACEHOLDER_BUCKET = "your-state-bucket"
PLACEHOLDER_REGION = "your-region"


@dataclass
class PlannedJob:
    job_index: int
    workflow: str
    instance_type: str
    instance: str
    spot: bool
    price_per_hour: float


@dataclass
class RunPlan:
    workflow: str
    run_name: str
    stack: str
    project: str
    backend_url: str
    region: str
    jobs: list[PlannedJob]
    resources: list[Any]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def cloud_resources(self) -> list[Any]:
        return [r for r in self.resources if not r.component]

    def as_dict(self) -> dict[str, Any]:
        return {
            "workflow": self.workflow,
            "run": self.run_name,
            "stack": self.stack,
            "project": self.project,
            "backend_url": self.backend_url,
            "region": self.region,
            "jobs": [job.__dict__ for job in self.jobs],
            "resources": [r.as_dict() for r in self.resources],
            "notes": self.notes,
        }


def plan_run(
    ctx: Context,
    workflow_name: str,
    *,
    args: list[str] | None = None,
    overrides: RunOverrides | None = None,
    tag: str | None = None,
    compute: Any = None,
    wheel_key: str | None = None,
    submitted_at: float | None = None,
) -> RunPlan:
    """The run stack ``submit`` would create for this workflow, rendered offline.

    ``compute`` is the ``AwsCompute`` to plan for (default: one from the config file);
    ``wheel_key`` and ``submitted_at`` pin values that change between calls (tests).
    """
    from dstack.backends.aws import plan as offline
    from dstack.backends.aws.config import PROJECT, state_backend_url
    from dstack.backends.aws_compute import program_of
    from dstack.errors import ComputeError
    from dstack.models import RunRecord
    from dstack.providers import build_jobs
    from dstack.repo import find_repo_root, read_owner, take_snapshot
    from dstack.spec.loader import get_workflow
    from dstack.spec.overrides import apply_overrides

    args = list(args or [])
    root = find_repo_root(ctx.repo_path)
    workflow = get_workflow(root, workflow_name)
    if overrides is not None:
        workflow = apply_overrides(workflow, overrides)
    submitted_at = time.time() if submitted_at is None else submitted_at
    with take_snapshot(root, max_size=settings.max_code_size()) as snapshot:
        owner = read_owner(root)
        jobs = build_jobs(
            workflow, run_name=PLAN_RUN_NAME, repo=snapshot.repo, args=args,
            submitted_at=submitted_at,
        )  # fmt: skip
        repo = snapshot.repo
        warnings = list(snapshot.warnings)
    cloud = [job for job in jobs if not job.resources.local]
    if not cloud:
        raise ComputeError(
            f"workflow '{workflow.name}' runs on this machine (resources.local): "
            "there is nothing to plan on AWS"
        )
    notes: list[str] = []
    compute = _compute(ctx, compute, notes)
    store = _store(ctx, compute, notes)
    planned = []
    for job in cloud:
        itype = compute.instance_for(job)
        planned.append(
            PlannedJob(
                job_index=job.job_index,
                workflow=job.workflow,
                instance_type=itype.name,
                instance=itype.describe(),
                spot=job.resources.interruptible,
                price_per_hour=itype.price,
            )
        )
    caller = None
    if any(job.ports for job in cloud):
        caller = compute.caller_cidr(lookup=False)
        if caller is None:
            caller = PLACEHOLDER_CALLER
            notes.append(
                f"ports open to your public address, found at submit (or DSTACK_CALLER_IP); "
                f"{PLACEHOLDER_CALLER} stands in for it here"
            )
    run = RunRecord(
        run_name=PLAN_RUN_NAME,
        repo_id=repo.repo_id,
        workflow=workflow.name,
        provider=workflow.provider,
        submitted_at=submitted_at,
        owner=owner,
        args=args,
        tag=tag,
        job_count=len(jobs),
        compute=compute.name,
        repo=repo,
    )
    if workflow.deps:
        notes.append("deps are resolved at submit: their artifacts become read-only grants")
    if wheel_key is None:
        from dstack.backends.aws.wheel import build_wheel

        wheel_key = build_wheel().key
    stack_args = compute.stack_args(store, run, cloud, wheel_key, caller_cidr=caller)
    region = compute.config.require_region()
    rendering = offline.render(program_of(stack_args), project=PROJECT, stack=PLAN_RUN_NAME)
    notes.append(f"the run's name is chosen at submit; {PLAN_RUN_NAME} stands in for it")
    return RunPlan(
        workflow=workflow.name,
        run_name=PLAN_RUN_NAME,
        stack=PLAN_RUN_NAME,
        project=PROJECT,
        backend_url=state_backend_url(store, region),
        region=region,
        jobs=planned,
        resources=rendering.resources,
        notes=notes,
        warnings=warnings,
    )


def _compute(ctx: Context, compute: Any, notes: list[str]) -> Any:
    """The AwsCompute to plan with: given, the context's, or one from the config file."""
    import dataclasses

    from dstack.backends.aws.config import AwsComputeConfig
    from dstack.backends.aws_compute import AwsCompute

    if compute is None:
        compute = (
            ctx.compute
            if isinstance(ctx.compute, AwsCompute)
            else AwsCompute(AwsComputeConfig.from_config(settings.load_config()))
        )
    if compute.config.resolved_region() is None:
        notes.append(f"no AWS region is configured; {PLACEHOLDER_REGION} stands in for it")
        config = dataclasses.replace(compute.config, region=PLACEHOLDER_REGION)
        compute = AwsCompute(config, catalog=compute.catalog)
    return compute


def _store(ctx: Context, compute: Any, notes: list[str]) -> dict[str, Any]:
    config = ctx.storage.config()
    if config.get("type") == "s3":
        return dict(config)
    notes.append(
        f"the state store is {ctx.storage.describe()}; AWS runs need an S3 bucket "
        f"(`dstack config --backend aws`): {PLACEHOLDER_BUCKET} stands in for it"
    )
    return {
        "type": "s3",
        "bucket": PLACEHOLDER_BUCKET,
        "region": compute.config.resolved_region(),
        "profile": None,
        "endpoint_url": None,
        "prefix": "",
    }
