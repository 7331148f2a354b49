"""``AwsCompute.plan``: the run stack ``start`` would create, rendered offline.

Each job's instance type is chosen from the catalog, and the run stack is rendered through
Pulumi's mock runtime (``plan``). Nothing is written to the store and no cloud API is called,
so no credentials are needed. What only a real submit knows is stood in for, and said so in the
plan's notes: a region or bucket not configured yet, the caller's public address.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dstack.compute.aws.config import PROJECT, state_backend_url
from dstack.compute.base import PlannedJob, RunPlan
from dstack.models import JobSpec, RunRecord
from dstack.storage.base import Storage
from dstack.store_config import S3StoreConfig

if TYPE_CHECKING:
    from dstack.compute.aws.compute import AwsCompute

#: RFC 5737 documentation address, standing in for the caller's own
PLACEHOLDER_CALLER = "192.0.2.1/32"
PLACEHOLDER_BUCKET = "your-state-bucket"
PLACEHOLDER_REGION = "your-region"


def plan_run(
    compute: AwsCompute,
    storage: Storage,
    run: RunRecord,
    jobs: list[JobSpec],
    *,
    wheel_key: str | None = None,
) -> RunPlan:
    from dstack.compute.aws import plan as offline
    from dstack.compute.aws.runargs import program_of

    notes: list[str] = []
    compute = _with_region(compute, notes)
    store = _store(storage, compute, notes)
    planned = []
    for job in jobs:
        itype = compute.instance_for(job)
        planned.append(
            PlannedJob(
                job_index=job.job_index,
                workflow=job.workflow,
                instance_type=itype.name,
                instance=itype.describe(),
                spot=job.resources.interruptible,
                price_per_hour=itype.price,
                request=compute.request_for(job).describe(),
                gpu_count=itype.gpu_count,
                gpu_name=itype.gpu_name,
                vcpus=itype.vcpus,
                memory_mib=itype.memory_mib,
                requested_gpus=job.resources.gpu_count,
            )
        )
    caller = None
    if any(job.ports for job in jobs):
        caller = compute.caller_cidr(lookup=False)
        if caller is None:
            caller = PLACEHOLDER_CALLER
            notes.append(
                f"ports open to your public address, found at submit (or DSTACK_CALLER_IP); "
                f"{PLACEHOLDER_CALLER} stands in for it here"
            )
    if wheel_key is None:
        from dstack.compute.aws.wheel import build_wheel

        wheel_key = build_wheel().key
    stack_args = compute.stack_args(store, run, jobs, wheel_key, caller_cidr=caller)
    region = compute.config.require_region()
    rendering = offline.render(program_of(stack_args), project=PROJECT, stack=run.run_name)
    return RunPlan(
        workflow=run.workflow,
        run_name=run.run_name,
        stack=run.run_name,
        project=PROJECT,
        backend_url=state_backend_url(store, region),
        region=region,
        jobs=planned,
        resources=rendering.resources,
        notes=notes,
    )


def _with_region(compute: AwsCompute, notes: list[str]) -> AwsCompute:
    """The compute, with a stand-in region when none is configured."""
    if compute.config.resolved_region() is not None:
        return compute
    notes.append(f"no AWS region is configured; {PLACEHOLDER_REGION} stands in for it")
    config = compute.config.model_copy(update={"region": PLACEHOLDER_REGION})
    return type(compute)(config, catalog=compute.catalog)


def _store(storage: Storage, compute: AwsCompute, notes: list[str]) -> S3StoreConfig:
    config = storage.config()
    if isinstance(config, S3StoreConfig):
        return config
    notes.append(
        f"the state store is {storage.describe()}; AWS runs need an S3 bucket "
        f"(`dstack config --backend aws`): {PLACEHOLDER_BUCKET} stands in for it"
    )
    return S3StoreConfig(bucket=PLACEHOLDER_BUCKET, region=compute.config.resolved_region())
