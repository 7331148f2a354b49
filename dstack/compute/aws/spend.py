"""Recording what a cloud run spent once its stack is destroyed (``RunSpend``, see
``dstack.state.spend``): the store's estimate refined with what EC2 says of each instance.

- the instances: every attempt's (its job state names it) and the stack's last ``up`` outputs
  (an instance whose runner never started still cost its boot);
- start: the instance's ``LaunchTime`` (else the runner's first heartbeat);
- end: its termination time from EC2's state transition reason (it powered itself off, or
  was terminated), else its job's end (the instance powers off then), else the destroy;
- price: for a spot instance, the zone's spot price history over its life averaged by time,
  when it can be read; else the price of the offer it was created on (the run's plan records
  say which, after a walk across offers); else the price quoted at submit.

EC2 forgets a terminated instance after about an hour, and calls can be denied: then the
estimate's times stand. Recording never fails a release; a problem is said in one line.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from typing import Any

from dstack import state
from dstack.compute.aws.ec2 import Ec2, InstanceFacts
from dstack.errors import DstackError
from dstack.models import InfraRecord, RunRecord
from dstack.state import spend
from dstack.state.spend import NodeSpend, RunSpend
from dstack.storage.base import Storage


def record_spend(
    storage: Storage,
    run: RunRecord,
    ec2: Ec2,
    say: Callable[[str], None],
    now: float | None = None,
) -> RunSpend | None:
    """Write the run's final spend; None (said, not raised) if it could not be made."""
    now = time.time() if now is None else now
    try:
        found = spend.estimate(storage, run, now)
        records = state.read_infra_records(storage, run.repo_id, run.run_name)
        up = next((r for r in reversed(records) if r.kind == "up" and r.ok), None)
        destroy = next((r for r in records if r.kind == "destroy"), None)
        nodes = _with_stack_instances(storage, run, found.nodes, up.outputs if up else {})
        try:
            facts = ec2.describe(n.instance_id for n in nodes if n.instance_id)
        except DstackError as exc:
            say(f"could not read the instances of run {run.run_name} from EC2 ({exc}); "
                "its spend is from its runners' times")  # fmt: skip
            facts = {}
        end_bound = destroy.at if destroy is not None else now
        refined = [_refine(node, facts.get(node.instance_id or ""), end_bound) for node in nodes]
        plans = [r for r in reversed(records) if r.kind == "plan" and r.offers]
        refined = [_offer_priced(node, plans) for node in refined]
        refined = [_spot_priced(node, ec2, now) for node in refined]
        result = RunSpend(
            repo_id=run.repo_id,
            run_name=run.run_name,
            recorded_at=now,
            final=True,
            nodes=[n for n in refined if n.started_at > 0],
            owner=found.owner,
            submitted_at=found.submitted_at,
        )
        spend.write_spend(storage, result)
    except DstackError as exc:
        say(f"could not record what run {run.run_name} spent: {exc}")
        return None
    return result


def _with_stack_instances(
    storage: Storage, run: RunRecord, nodes: list[NodeSpend], outputs: dict[str, Any]
) -> list[NodeSpend]:
    """The estimate's nodes and the stack's instances that no runner reported (they are
    priced as their job was quoted; their times come from EC2 alone)."""
    known = {n.instance_id for n in nodes if n.instance_id}
    added = list(nodes)
    ids = outputs.get("instance_ids") if isinstance(outputs, dict) else None
    for index, instance_id in (ids or {}).items() if isinstance(ids, dict) else []:
        if not isinstance(instance_id, str) or instance_id in known:
            continue
        try:
            spec = state.read_job_spec(storage, run.repo_id, run.run_name, int(index))
            attempt = state.read_job_state(storage, run.repo_id, run.run_name, int(index)).attempt
        except (DstackError, ValueError):
            continue
        if spec.price_per_hour is None:
            continue
        added.append(
            NodeSpend(
                job_index=spec.job_index,
                attempt=attempt,
                instance_id=instance_id,
                price_per_hour=spec.price_per_hour,
                started_at=0.0,  # unknown until EC2 says: left out if it cannot
            )
        )
    return added


def _refine(node: NodeSpend, facts: InstanceFacts | None, end_bound: float) -> NodeSpend:
    update: dict[str, Any] = {}
    if facts is not None:
        update["instance_type"] = facts.instance_type
        update["availability_zone"] = facts.availability_zone
        update["market"] = "spot" if facts.spot else "on-demand"
        if facts.launched_at is not None:
            update["started_at"] = facts.launched_at
            update["start_from"] = "launch"
        if facts.ended_at is not None:
            update["ended_at"] = facts.ended_at
            update["end_from"] = "ec2"
    if "ended_at" not in update and node.ended_at is None:
        update["ended_at"] = end_bound  # the destroy terminated whatever was left
        update["end_from"] = "destroy"
    return node.model_copy(update=update)


def _offer_priced(node: NodeSpend, plans: list[InfraRecord]) -> NodeSpend:
    """A node priced as the offer its instance was created on (the walk may have moved it to
    another type, zone or market than its job was quoted on): the newest plan whose offer for
    the job has the instance's type and market."""
    if node.instance_type is None:
        return node
    for plan in plans:
        offer = plan.offers.get(str(node.job_index)) or {}
        price = offer.get("price_per_hour")
        if (
            offer.get("instance_type") == node.instance_type
            and offer.get("market") == (node.market or offer.get("market"))
            and isinstance(price, int | float)
        ):
            return node.model_copy(update={"price_per_hour": float(price), "price_source": "offer"})
    return node


def _spot_priced(node: NodeSpend, ec2: Ec2, now: float) -> NodeSpend:
    """A spot node priced from its zone's spot price history, when EC2 gives it."""
    if node.market != "spot" or not node.instance_type or not node.availability_zone:
        return node
    end = node.ended_at if node.ended_at is not None else now
    try:
        answer = ec2.ask(
            "describe_spot_price_history",
            "read the spot price history",
            InstanceTypes=[node.instance_type],
            Filters=[{"Name": "availability-zone", "Values": [node.availability_zone]}],
            ProductDescriptions=["Linux/UNIX"],
            StartTime=_utc(node.started_at),
            EndTime=_utc(end),
        )
    except DstackError:
        return node
    points = []
    for item in answer.get("SpotPriceHistory", []):
        try:
            stamp = item["Timestamp"]
            at = stamp.timestamp() if hasattr(stamp, "timestamp") else float(stamp)
            points.append((at, float(item["SpotPrice"])))
        except (KeyError, TypeError, ValueError):
            continue
    price = time_weighted(points, node.started_at, end)
    if price is None:
        return node
    return node.model_copy(update={"price_per_hour": price, "price_source": "spot-history"})


def time_weighted(points: list[tuple[float, float]], start: float, end: float) -> float | None:
    """The average price over [start, end] of a price that changes at ``points`` (time,
    price); the price in force at ``start`` is the last one before it (else the first)."""
    if not points:
        return None
    points = sorted(points)
    if end <= start:
        before = [p for t, p in points if t <= start]
        return before[-1] if before else points[0][1]
    total = 0.0
    current = points[0][1]
    for at, price in points:
        if at <= start:
            current = price
    cursor = start
    for at, price in points:
        if at <= start:
            continue
        if at >= end:
            break
        total += current * (at - cursor)
        cursor, current = at, price
    total += current * (end - cursor)
    return total / (end - start)


def _utc(at: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(at, datetime.UTC)
