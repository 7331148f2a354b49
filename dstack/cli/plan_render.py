"""Rendering planned resources and infrastructure records as plain text (`run --plan`, `infra`).

Deterministic (golden-file tested): resources in the order given, inputs sorted by name,
policy documents pretty-printed, multi-line strings (the user data) shown whole and indented.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

_INDENT = "    "
_POLICY_KEYS = ("assumeRolePolicy", "policy")


def resources_text(resources: Iterable[Any], *, inputs: bool = True) -> list[str]:
    """``+ type  name`` per resource, then its inputs (components: the line only)."""
    lines = []
    for resource in resources:
        mark = "=" if getattr(resource, "import_id", None) else "+"
        suffix = f"  (adopts {resource.import_id})" if getattr(resource, "import_id", None) else ""
        lines.append(f"{mark} {resource.type}  {resource.name}{suffix}")
        if inputs and not resource.component:
            for key in sorted(resource.inputs):
                lines.extend(_input_lines(key, resource.inputs[key]))
    return lines


def plan_text(plan: Any) -> str:
    """The text of a ``services.plan.RunPlan``."""
    cloud = plan.cloud_resources
    lines = [
        f"Plan of a run of {plan.workflow}: offline, through Pulumi's mock runtime; "
        "nothing is created",
        f"  stack {plan.project}/{plan.stack}, its state in {plan.backend_url}",
    ]
    for job in plan.jobs:
        market = "spot" if job.spot else "on-demand"
        lines.append(f"  job {job.job_index}: {job.instance}, {market}")
        if job.request:
            lines.append(f"    for a request of {job.request}")
        lines.extend(_price_lines(job))
    lines.extend(instances_summary(plan.jobs))
    if plan.cost:
        lines.append(f"  max_cost: {plan.cost} (the worst case: every node for max_duration)")
    lines.append("")
    lines.extend(resources_text(plan.resources))
    lines.append("")
    groups = len(list(plan.resources)) - len(cloud)
    grouped = f", in {groups} component(s) that group them" if groups else ""
    lines.append(f"{len(cloud)} AWS resources to create{grouped}")
    if plan.notes:
        lines.append("Notes:")
        lines.extend(f"  - {note}" for note in plan.notes)
    return "\n".join(lines) + "\n"


def _price_lines(job: Any) -> list[str]:
    """The job's price and, when there are more, the offers tried after the first."""
    if not job.price_source:
        return []
    zone = job.availability_zone or "any zone"
    lines = [
        f"    ${job.price_per_hour:.4g}/h per node ({job.price_source} price, {zone}), "
        f"spot_policy {job.spot_policy}, max_duration {job.max_duration_hours:g}h"
    ]
    rest = job.offers[1:]
    if rest:
        shown = ", ".join(
            f"{o['instance_type']} {o['market']} {o['availability_zone'] or ''} "
            f"${o['price_per_hour']:.4g}".replace("  ", " ")
            for o in rest[:4]
        )
        more = f" and {len(rest) - 4} more" if len(rest) > 4 else ""
        lines.append(f"    then: {shown}{more}")
    return lines


def instances_summary(jobs: list[Any]) -> list[str]:
    """What will be paid for, GPUs first: ``p3dn.24xlarge (8× V100, 96 vCPU, 768 GiB) × 1``,
    and a warning when an instance has more GPUs than its job asked for (all are paid)."""
    if not jobs:
        return []
    counts: dict[tuple[str, str, float], int] = {}
    for job in jobs:
        key = (job.instance_type, instance_shape(job), job.price_per_hour)
        counts[key] = counts.get(key, 0) + 1
    total = sum(job.price_per_hour for job in jobs)
    each = "; ".join(f"{name} ({shape}) × {n}" for (name, shape, _), n in counts.items())
    lines = [f"  instances: {each}; ${total:g}/h in all"]
    for job in jobs:
        if job.requested_gpus and job.gpu_count > job.requested_gpus:
            lines.append(
                f"  note: job {job.job_index} asks for {job.requested_gpus} GPU(s); "
                f"{job.instance_type} has {job.gpu_count}× {job.gpu_name}, and all "
                f"{job.gpu_count} are paid for"
            )
    return lines


def instance_shape(job: Any) -> str:
    """``8× V100, 96 vCPU, 768 GiB``: GPUs first, then CPUs and memory."""
    parts = [f"{job.gpu_count}× {job.gpu_name}"] if job.gpu_count else ["no GPU"]
    if job.vcpus:
        parts.append(f"{job.vcpus} vCPU")
    if job.memory_mib:
        parts.append(f"{job.memory_mib / 1024:g} GiB")
    return ", ".join(parts)


def record_text(record: Any, *, verbose: bool = False) -> list[str]:
    """A few lines for one ``InfraRecord``; with ``verbose`` its resources and engine text."""
    from dstack.cli.render import iso

    status = "ok" if record.ok else "failed"
    head = f"{record.kind}: {status} at {iso(record.at)}" + (
        f" by {record.by}" if record.by else ""
    )
    if record.summary:
        head += " — " + ", ".join(f"{n} to {op}" for op, n in sorted(record.summary.items()))
    lines = [head]
    if record.error:
        lines.append(f"  error: {record.error}")
    for index, offer in sorted(record.offers.items()):
        zone = offer.get("availability_zone") or "any zone"
        lines.append(
            f"  job {index} on {offer.get('instance_type')} {offer.get('market')} in {zone} "
            f"at ${offer.get('price_per_hour', 0):.4g}/h"
        )
    if record.outputs:
        for key in sorted(record.outputs):
            lines.append(f"  {key}: {_compact(record.outputs[key])}")
    if record.resources:
        planned = [_Planned(item) for item in record.resources]
        lines.extend("  " + line for line in resources_text(planned, inputs=verbose))
    if verbose and record.diff.strip():
        lines.append("  engine output:")
        lines.extend(f"    {line}" for line in record.diff.rstrip().splitlines())
    return lines


class _Planned:
    """A recorded resource (a dict) with the attributes ``resources_text`` reads."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.type = data.get("type", "?")
        self.name = data.get("name", "?")
        self.component = bool(data.get("component"))
        self.import_id = data.get("import")
        self.inputs = data.get("inputs") or {}


def _input_lines(key: str, value: Any) -> list[str]:
    if key in _POLICY_KEYS and isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            pass
    if isinstance(value, str) and "\n" in value:
        body = [f"{_INDENT}{_INDENT}{line}" for line in value.rstrip("\n").splitlines()]
        return [f"{_INDENT}{key}: |", *body]
    text = _compact(value)
    if len(text) + len(key) <= 90:
        return [f"{_INDENT}{key}: {text}"]
    if isinstance(value, str):
        return [f"{_INDENT}{key}:", f"{_INDENT}{_INDENT}{value}"]
    pretty = json.dumps(value, indent=2, sort_keys=True).splitlines()
    return [f"{_INDENT}{key}:", *(f"{_INDENT}{_INDENT}{line}" for line in pretty)]


def _compact(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value, sort_keys=True, separators=(", ", ": "))
