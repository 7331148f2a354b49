"""Walking a run's offers: when AWS has no instance to give for the offer tried, the next one.

A job's offers (``offers``) are tried in their order: spot before on-demand for ``auto``, the
cheapest first within a market, each in its availability zone. A try is one create of the run
stack; when ``up`` fails with an error that says *this offer* cannot be had now — no capacity
in the zone, a spot price or spot count limit, a type the zone does not offer, a vCPU limit
(``MOVES_ON``) — the driver has destroyed what the try created, and the failed job moves on to
its next offer. Each move is one line in the job's output. Only when a job has no offer left
does the start fail (with the ``no-capacity`` class, so ``retry: no-capacity`` starts a later
attempt, which walks the offers again from the first).

Zones: an offer priced live names its zone. Without a configured subnet or VPC, the instance
is placed in that zone of the default VPC (EC2 picks the zone's default subnet); with one, in
the VPC's subnet of that zone (``vpc_subnets``: the configured subnet for its own zone, others
only if they reach the internet as the boot needs), and offers in zones the VPC has no usable
subnet in are not tried. An offer priced from the catalog names no zone: EC2 (or the
configured subnet) picks it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from dstack.compute.aws.choice import JobChoice
from dstack.compute.aws.failures import CODES, FailureClass, classify
from dstack.compute.aws.offers import Offer
from dstack.errors import ComputeError

#: the error codes after which the next offer may succeed where this one did not
MOVES_ON = CODES[FailureClass.CAPACITY] | {"VcpuLimitExceeded", "InstanceLimitExceeded"}

#: the engine names the failed resource, ``aws:ec2/instance:Instance (RUN-job-N)``
_FAILED_JOB = re.compile(r"Instance \([^)]*-job-(\d+)\)")


def moves_on(error: BaseException) -> str | None:
    """The AWS error code when ``error`` (a failed try) says the offer tried cannot be had
    now; None when another offer would fail the same way (a permission, a bad program)."""
    for candidate in (error.__cause__, error):
        if candidate is None:
            continue
        _, code = classify(candidate)
        if code in MOVES_ON:
            return code
    return None


def failed_jobs(error: BaseException, job_indices: list[int]) -> list[int]:
    """The jobs whose instance the failed try could not create: those the engine's error
    names, else every job of the stack."""
    text = f"{error} {error.__cause__ or ''}"
    named = sorted({int(n) for n in _FAILED_JOB.findall(text)} & set(job_indices))
    return named or list(job_indices)


def why_text(code: str) -> str:
    if code in ("VcpuLimitExceeded", "InstanceLimitExceeded"):
        return f"over the account's vCPU limit ({code})"
    if code in ("SpotMaxPriceTooLow", "MaxSpotInstanceCountExceeded"):
        return f"spot refused ({code})"
    if code == "Unsupported":
        return "not offered there (Unsupported)"
    return f"no capacity ({code})"


def next_text(tried: Offer, following: Offer) -> str:
    """What the next try is, said as briefly as it differs: ``us-east-1b``, ``on-demand in
    us-east-1a``, or the whole offer."""
    zone = following.availability_zone or "any zone"
    if following.instance_type == tried.instance_type and following.market == tried.market:
        return zone
    if following.instance_type == tried.instance_type:
        return f"{following.market} in {zone}"
    return f"{following.instance_type} {following.market} in {zone}"


def offer_text(offer: Offer) -> str:
    return f"{offer.instance_type} {offer.market} in {offer.availability_zone or 'any zone'}"


@dataclass
class Walk:
    """Where each cloud job of one start is in its offers (only those it can be placed on)."""

    choices: dict[int, JobChoice]
    #: zone -> subnet of the configured VPC; None: the default VPC (any zone, no subnet named)
    zone_subnets: dict[str, str] | None = None
    position: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for index, choice in list(self.choices.items()):
            usable = [o for o in choice.offers if self.placeable(o)]
            if not usable:
                zones = ", ".join(sorted(self.zone_subnets or {})) or "none"
                raise ComputeError(
                    f"workflow '{choice.job.workflow}': none of its offers is in a zone where "
                    f"the configured VPC has a subnet that reaches the internet (zones: "
                    f"{zones}): add such a subnet, or configure another subnet"
                )
            self.choices[index] = replace(choice, offers=usable)
            self.position.setdefault(index, 0)

    def placeable(self, offer: Offer) -> bool:
        zone = offer.availability_zone
        return zone is None or self.zone_subnets is None or zone in self.zone_subnets

    def current(self, job_index: int) -> Offer:
        return self.choices[job_index].offers[self.position[job_index]]

    def choice(self, job_index: int) -> JobChoice:
        """The job's choice with its current offer first (what the stack is made from)."""
        choice = self.choices[job_index]
        return replace(choice, offers=choice.offers[self.position[job_index] :])

    def subnet_for(self, offer: Offer) -> str | None:
        if offer.availability_zone is None or self.zone_subnets is None:
            return None
        return self.zone_subnets.get(offer.availability_zone)

    def advance(self, job_index: int, code: str) -> str | None:
        """Move the job to its next offer: the line that says so, or None when it has none
        left (the line saying that is the caller's)."""
        choice = self.choices[job_index]
        tried = self.current(job_index)
        if self.position[job_index] + 1 >= len(choice.offers):
            return None
        self.position[job_index] += 1
        following = self.current(job_index)
        return f"{offer_text(tried)}: {why_text(code)}; trying {next_text(tried, following)}"

    def tried_count(self, job_index: int) -> int:
        return self.position[job_index] + 1


def vpc_subnets(
    ec2: Any, subnet_id: str | None, vpc_id: str | None, check: Callable[[str], None]
) -> dict[str, str] | None:
    """Zone -> subnet of the configured VPC (the configured subnet's, or ``vpc_id``): the
    configured subnet for its zone, and for each other zone a subnet of the VPC that passes
    ``check`` (the network preflight, which raises ``ComputeError``). None without either."""
    if not subnet_id and not vpc_id:
        return None
    by_zone: dict[str, str] = {}
    if subnet_id:
        mine = ec2.ask("describe_subnets", f"find subnet {subnet_id}", SubnetIds=[subnet_id])
        subnet = mine["Subnets"][0]
        by_zone[subnet["AvailabilityZone"]] = subnet_id
        vpc_id = vpc_id or subnet["VpcId"]
    others = ec2.ask("describe_subnets", f"list the subnets of {vpc_id}",
                     Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]  # fmt: skip
    for subnet in sorted(others, key=lambda s: s["SubnetId"]):
        zone = subnet["AvailabilityZone"]
        if zone in by_zone:
            continue
        try:
            check(subnet["SubnetId"])
        except ComputeError:
            continue  # no way out to the package index: not a place for a dstack instance
        by_zone[zone] = subnet["SubnetId"]
    return by_zone
