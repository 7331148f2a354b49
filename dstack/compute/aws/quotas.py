"""The account's EC2 vCPU quotas, checked against a run's offers before any stack is created.

EC2 caps the vCPUs an account runs per region, per market (on-demand; spot requests) and per
family of instance types: the standard families share one quota, the GPU and accelerator
families have their own (``QUOTAS``: Service Quotas' codes and names). What is free in a quota
is its value (``servicequotas:GetServiceQuota``) minus the vCPUs of the account's pending and
running instances of that market and family (``ec2:DescribeInstances``).

``fit`` drops the offers whose quota has no room for their type (the job's output says which
quota), and refuses the run, in one line naming the quota, its code and how to raise it, when a
job has no offer left. A quota that cannot be read (a policy without
``servicequotas:GetServiceQuota``, an older user policy) is warned about once per process, and
the run goes on unchecked: EC2 itself still refuses what does not fit, and the walk moves on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from dstack.compute.aws.offers import ON_DEMAND, SPOT, Offer
from dstack.errors import ComputeError
from dstack.storage.s3 import aws_errors

SERVICE = "ec2"


@dataclass(frozen=True)
class Quota:
    code: str
    name: str


#: (family prefix, market) -> its vCPU quota; a family not named here is "standard"
QUOTAS: dict[tuple[str, str], Quota] = {
    ("standard", ON_DEMAND): Quota("L-1216C47A", "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"),
    ("standard", SPOT): Quota("L-34B43A08", "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests"),
    ("g", ON_DEMAND): Quota("L-DB2E81BA", "Running On-Demand G and VT instances"),
    ("g", SPOT): Quota("L-3819A6DF", "All G and VT Spot Instance Requests"),
    ("p", ON_DEMAND): Quota("L-417A185B", "Running On-Demand P instances"),
    ("p", SPOT): Quota("L-7212CCBC", "All P Spot Instance Requests"),
    ("f", ON_DEMAND): Quota("L-74FC7D96", "Running On-Demand F instances"),
    ("f", SPOT): Quota("L-88CF9481", "All F Spot Instance Requests"),
    ("inf", ON_DEMAND): Quota("L-1945791B", "Running On-Demand Inf instances"),
    ("inf", SPOT): Quota("L-B5D1601B", "All Inf Spot Instance Requests"),
    ("x", ON_DEMAND): Quota("L-7295265B", "Running On-Demand X instances"),
    ("x", SPOT): Quota("L-E3A00192", "All X Spot Instance Requests"),
    ("dl", ON_DEMAND): Quota("L-6E869C2A", "Running On-Demand DL instances"),
    ("dl", SPOT): Quota("L-85EED4F7", "All DL Spot Instance Requests"),
    ("trn", ON_DEMAND): Quota("L-2C3B7624", "Running On-Demand Trn instances"),
    ("trn", SPOT): Quota("L-6B0D517C", "All Trn Spot Instance Requests"),
}  # fmt: skip
#: families that share another's quota
_SAME_AS = {"vt": "g"}

#: quotas that could not be read in this process were warned about once
_warned: set[str] = set()


def family(instance_type: str) -> str:
    """The quota family of a type: ``p3.2xlarge`` → ``p``, ``g4dn.xlarge`` → ``g``,
    ``vt1.3xlarge`` → ``g`` (G and VT share one), ``m5.large`` → ``standard``."""
    letters = re.match(r"[a-z]+", instance_type.split(".")[0])
    prefix = letters.group(0) if letters else ""
    prefix = _SAME_AS.get(prefix, prefix)
    for candidate in (prefix, prefix[:1] if prefix[:1] in ("g", "p", "f", "x") else ""):
        if (candidate, ON_DEMAND) in QUOTAS:
            return candidate
    return "standard"


def quota_of(instance_type: str, market: str) -> Quota:
    return QUOTAS[(family(instance_type), SPOT if market == SPOT else ON_DEMAND)]


def raise_hint(quota: Quota, region: str, desired: float) -> str:
    return (
        f"raise it in the Service Quotas console (https://console.aws.amazon.com/servicequotas/"
        f"home/services/ec2/quotas/{quota.code}) or with `aws service-quotas "
        f"request-service-quota-increase --service-code ec2 --quota-code {quota.code} "
        f"--desired-value {desired:g} --region {region}`"
    )


class QuotaBook:
    """What each quota allows and what already runs against it, asked once per quota."""

    def __init__(self, client: Any, ec2: Any, vcpus_of: dict[str, int], say: Any) -> None:
        self._client = client
        self._ec2 = ec2
        self._vcpus_of = vcpus_of
        self._say = say
        self._limits: dict[str, float | None] = {}
        self._used: dict[str, float] | None = None
        self.readable = True

    def limit(self, quota: Quota) -> float | None:
        """The quota's value; None when it cannot be read (then it is not checked)."""
        if not self.readable:
            return None
        if quota.code not in self._limits:
            try:
                answer = self._client.get_service_quota(ServiceCode=SERVICE, QuotaCode=quota.code)
                self._limits[quota.code] = float(answer["Quota"]["Value"])
            except Exception as exc:
                code = aws_errors.error_code(exc)
                if code == "NoSuchResourceException":  # not known in this region: unchecked
                    self._limits[quota.code] = None
                    return None
                self.readable = False
                key = code or type(exc).__name__
                if key not in _warned:
                    _warned.add(key)
                    self._say(
                        f"warning: the account's vCPU quotas could not be read "
                        f"({aws_errors.brief(exc)}); going on without checking them (grant "
                        "servicequotas:GetServiceQuota to check them before a run)"
                    )
                return None
        return self._limits[quota.code]

    def used(self, quota: Quota) -> float:
        """vCPUs of the account's pending and running instances counted against ``quota``."""
        if self._used is None:
            self._used = {}
            try:
                answer = self._ec2.ask(
                    "describe_instances", "count the vCPUs in use",
                    Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}],
                )  # fmt: skip
            except ComputeError as exc:
                self._say(f"warning: the vCPUs in use could not be counted ({exc})")
                return 0
            for reservation in answer.get("Reservations", []):
                for instance in reservation.get("Instances", []):
                    market = SPOT if instance.get("InstanceLifecycle") == "spot" else ON_DEMAND
                    code = quota_of(instance["InstanceType"], market).code
                    cpu = instance.get("CpuOptions") or {}
                    vcpus = (
                        cpu["CoreCount"] * cpu.get("ThreadsPerCore", 1)
                        if cpu.get("CoreCount")
                        else self._vcpus_of.get(instance["InstanceType"], 0)
                    )
                    self._used[code] = self._used.get(code, 0) + vcpus
        return self._used.get(quota.code, 0)


def fit(compute: Any, walk: Any) -> dict[int, str]:
    """Keep, for each job of ``walk``, the offers its quota has room for (the jobs of a run
    run at once: each job's first fitting offer is counted against the ones after it). The
    lines to tell each job whose offers were dropped; ``ComputeError`` when one has none."""
    book = QuotaBook(
        client(compute), compute.ec2(), {t.name: t.vcpus for t in compute.catalog.types},
        compute._say,
    )  # fmt: skip
    region = compute.config.require_region()
    reserved: dict[str, float] = {}
    lines: dict[int, str] = {}
    for index, choice in walk.choices.items():
        kept: list[Offer] = []
        dropped: dict[Quota, tuple[float, float, int]] = {}
        for offer in choice.offers:
            quota = quota_of(offer.instance_type, offer.market)
            limit = book.limit(quota)
            if limit is None:  # unreadable: not checked
                kept.append(offer)
                continue
            free = limit - book.used(quota) - reserved.get(quota.code, 0)
            if offer.instance.vcpus <= free:
                kept.append(offer)
            else:
                dropped.setdefault(quota, (free, limit, offer.instance.vcpus))
        if not kept:
            first = choice.offers[0]
            quota = quota_of(first.instance_type, first.market)
            free, limit, need = dropped[quota]
            used = limit - free
            raise ComputeError(
                f"workflow '{choice.job.workflow}' does not fit the account's vCPU quotas in "
                f"{region}: {first.instance_type} {first.market} needs {need} vCPUs of quota "
                f"{quota.code} ({quota.name}), which allows {limit:g} with {max(used, 0):g} in "
                f"use or asked for by this run; {raise_hint(quota, region, used + need)}"
            )
        if dropped:
            said = "; ".join(
                f"{q.code} ({q.name}) has {max(free, 0):g} of {limit:g} vCPUs free"
                for q, (free, limit, _) in dropped.items()
            )
            lines[index] = f"offers skipped for lack of vCPU quota: {said}"
        walk.choices[index] = replace(choice, offers=kept)
        quota = quota_of(kept[0].instance_type, kept[0].market)
        reserved[quota.code] = reserved.get(quota.code, 0) + kept[0].instance.vcpus
    return lines


def refuse_unfit(compute: Any, choices: list[Any]) -> None:
    """``ComputeError`` naming the quota when a job of the run has no offer that fits."""
    from types import SimpleNamespace

    fit(compute, SimpleNamespace(choices={c.job.job_index: c for c in choices}))


def client(compute: Any) -> Any:
    """The Service Quotas client of the compute's region (a test may set
    ``compute.service_quotas``)."""
    injected = getattr(compute, "service_quotas", None)
    if injected is not None:
        return injected
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(profile_name=compute.config.profile)
    return session.client(
        "service-quotas",
        region_name=compute.config.require_region(),
        # where EC2 is asked of an endpoint of its own (a test's), so is Service Quotas
        endpoint_url=compute.ec2().endpoint_url,
        config=Config(connect_timeout=5, read_timeout=15, retries={"max_attempts": 2}),
    )
