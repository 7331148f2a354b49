"""A start's tries: which offers its jobs walk, and the walk itself.

``plan_walk`` sets the offers each cloud job of a start may be tried on: its choice's offers,
only on-demand ones once the job was interrupted ``on_demand_after`` times (or the config's
``compute.on_demand_after``), only those in zones the VPC can place it in, and only those
the account's vCPU quotas leave room for (``quotas``); each such decision is one line of the
job's output. ``walk_offers`` makes the tries: one stack create per try, the next offer of the
jobs whose instance AWS could not give (``walk``), until one succeeds or a job has none left.

Pulumi: a failed try is destroyed (the driver does it before the error leaves) and the next
one creates the stack again, rather than updating the failed one with another type or zone. A
failed create leaves the security group and role half made; destroying them means each try
starts from nothing, each has its own recorded plan, and nothing of a failed try is left for
`dstack prune` (a try whose destroy failed ends the walk: it is not tried again on top).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from dstack import state
from dstack.compute.aws.choice import JobChoice
from dstack.compute.aws.driver import ProvisioningInterrupted
from dstack.compute.aws.offers import ON_DEMAND, fitting_types, make_offers
from dstack.compute.aws.walk import Walk, failed_jobs, moves_on, offer_text, vpc_subnets, why_text
from dstack.errors import ComputeError
from dstack.models import JobSpec, JobStatus, RunRecord
from dstack.storage.base import Storage


def plan_walk(compute: Any, storage: Storage, run: RunRecord, cloud: list[JobSpec]) -> Walk:
    """The offers each cloud job of this start walks (see the module's docstring)."""
    from dstack.compute.aws import preflight, quotas

    choices: dict[int, JobChoice] = {}
    for job in cloud:
        choice = compute.choice_for(job)
        choices[job.job_index] = on_demand_if_due(compute, storage, job, choice)
    public = any(job.ports for job in cloud)
    config = compute.config
    subnets = None
    if config.subnet_id or config.vpc_id:
        ec2 = compute.ec2()
        subnets = vpc_subnets(
            ec2, config.subnet_id, config.vpc_id,
            check=lambda subnet: preflight.check_network(ec2, subnet, public_ip=public),
        )  # fmt: skip
    walk = Walk(choices, subnets)
    for index, line in quotas.fit(compute, walk).items():
        tell(storage, _job(cloud, index), line)
    return walk


def on_demand_if_due(compute: Any, storage: Storage, job: JobSpec, choice: JobChoice) -> JobChoice:
    """The job's choice, with only on-demand offers once its earlier attempts were
    interrupted ``on_demand_after`` times (the line of the job's output says so)."""
    after = job.on_demand_after or compute.config.on_demand_after
    if not after or choice.policy == ON_DEMAND:
        return choice
    interrupted = sum(
        1 for ended in state.list_attempts(storage, job) if ended.status is JobStatus.INTERRUPTED
    )
    if interrupted < after:
        return choice
    types = fitting_types(compute.catalog, choice.request)
    offers = make_offers(types, choice.book, policy=ON_DEMAND, max_price=job.max_price)
    times = f"{interrupted} interruption{'s' if interrupted != 1 else ''}"
    if not offers:
        tell(storage, job, f"{times} (on_demand_after: {after}), but no on-demand offer is "
             f"left within max_price: staying on spot")  # fmt: skip
        return choice
    tell(storage, job, f"{times} (on_demand_after: {after}): this attempt goes on-demand, "
         f"on {offer_text(offers[0])} at ${offers[0].price_per_hour:.4g}/h")  # fmt: skip
    return replace(choice, policy=ON_DEMAND, offers=offers)


def walk_offers(
    walk: Walk,
    storage: Storage,
    cloud: list[JobSpec],
    *,
    attempt: Callable[[], None],
    cleaned: Callable[[], bool],
) -> None:
    """Try until a try succeeds; raise the last try's error when it does not say the offer
    is unavailable, when it left something behind, or when a failed job has no offer left."""
    indices = [job.job_index for job in cloud]
    while True:
        try:
            attempt()
            return
        except ProvisioningInterrupted:
            raise
        except ComputeError as exc:
            code = moves_on(exc)
            if code is None or not cleaned():
                raise
            for index in failed_jobs(exc, indices):
                job = _job(cloud, index)
                tried = walk.current(index)
                line = walk.advance(index, code)
                if line is None:
                    count = walk.tried_count(index)
                    tell(storage, job, f"{offer_text(tried)}: {why_text(code)}; no offer left "
                         f"({count} tried)")  # fmt: skip
                    raise ComputeError(
                        f"{exc}; every offer of workflow '{job.workflow}' was tried ({count})"
                    ) from exc.__cause__
                tell(storage, job, line)


def tell(storage: Storage, job: JobSpec, line: str) -> None:
    """One ``[dstack]`` line in the job's output."""
    marker = f"[dstack] {line}\n".encode()
    state.write_log_chunk(storage, job, state.next_log_seq(storage, job), marker)


def _job(jobs: list[JobSpec], index: int) -> JobSpec:
    return next(job for job in jobs if job.job_index == index)
