"""``AwsCompute.plan``: the run stack ``start`` would create, rendered offline.

Each job's offers are made (``choice``: the catalog's types priced live or from the catalog,
the first offer being the one it starts on), the run's worst case is summed, and the run stack is rendered through
Pulumi's mock runtime (``plan``). Nothing is written to the store and no cloud API is called,
so no credentials are needed. What only a real submit knows is stood in for, and said so in the
plan's notes: a region or bucket not configured yet, the caller's public address.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dstack.compute.aws.choice import JobChoice, check_budget, cost_arithmetic, run_max_cost
from dstack.compute.aws.config import PROJECT, state_backend_url
from dstack.compute.aws.prices import CATALOG
from dstack.compute.base import PlannedJob, RunPlan
from dstack.errors import ComputeError
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
    choices = [compute.choice_for(job) for job in jobs]
    for job, choice in zip(jobs, choices, strict=True):
        offer = choice.offer
        planned.append(
            PlannedJob(
                job_index=job.job_index,
                workflow=job.workflow,
                instance_type=offer.instance_type,
                instance=offer.instance.describe(),
                spot=offer.market == "spot",
                price_per_hour=offer.price_per_hour,
                request=choice.request.describe(),
                market=offer.market,
                availability_zone=offer.availability_zone,
                price_source=choice.book.source,
                spot_policy=choice.policy,
                offers=[o.as_dict() for o in choice.offers],
                max_duration_hours=choice.hours,
                max_cost=round(choice.max_cost, 4),
                gpu_count=offer.instance.gpu_count,
                gpu_name=offer.instance.gpu_name,
                vcpus=offer.instance.vcpus,
                memory_mib=offer.instance.memory_mib,
                requested_gpus=job.resources.gpu_count,
            )
        )
    notes.extend(_price_notes(choices))
    try:
        check_budget(compute.config, choices, spent_this_month=None)
    except ComputeError as exc:
        notes.append(f"submit refuses this run: {exc}")
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
        max_cost=run_max_cost(choices),
        cost=cost_arithmetic(choices),
    )


def _price_notes(choices: list[JobChoice]) -> list[str]:
    notes = []
    for reason in sorted({c.book.reason for c in choices if c.book.source == CATALOG}):
        spot = any(o.market == "spot" for c in choices for o in c.offers)
        also = "; a spot offer is priced at the on-demand price, the most it can cost"
        notes.append(f"prices are the catalog's list prices ({reason}){also if spot else ''}")
    if any(c.offer.availability_zone is None for c in choices):
        notes.append("the zone is the configured subnet's (or the default VPC's choice)")
    else:
        notes.append(
            "the instance starts in the configured subnet's zone (or the default VPC's "
            "choice); an offer's zone is where its price applies"
        )
    return notes


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
