"""How what a run spent is shown: the COST cell of `dstack ps`, its lines in `ps RUN`, and
its JSON."""

from __future__ import annotations

import datetime
from typing import Any

from dstack.services.spend import cost_note, money
from dstack.state.spend import NodeSpend, RunSpend


def cost_json(found: RunSpend | None, now: float, *, nodes: bool = False) -> dict[str, Any]:
    """``cost_usd`` (null for a run that cost nothing), whether it still runs and whether it
    is the final record; with ``nodes``, each node's detail."""
    if found is None:
        return {"cost_usd": None}
    data: dict[str, Any] = {
        "cost_usd": round(found.total(now), 4),
        "cost_running": found.running,
        "cost_final": found.final,
    }
    if nodes:
        data["spend"] = [
            {**node.model_dump(), "hours": round(node.hours(now), 4),
             "cost_usd": round(node.cost(now), 4)}
            for node in found.nodes
        ]  # fmt: skip
    return data


def spend_lines(found: RunSpend | None, now: float) -> list[str]:
    """`ps RUN`'s account: the total, then one line per node and attempt."""
    if found is None:
        return [f"cost: - ({cost_note(found)})"]
    lines = [f"cost: {money(found.total(now))} ({cost_note(found)})"]
    for node in found.nodes:
        lines.append("  " + node_line(node, now))
    if not found.nodes:
        lines.append("  no instance has started yet")
    return lines


def node_line(node: NodeSpend, now: float) -> str:
    where = " ".join(
        part for part in (node.instance_type, node.market, node.availability_zone) if part
    )
    end = _clock(node.ended_at) if node.ended_at is not None else "now"
    price = "spot price history" if node.price_source == "spot-history" else "quoted at submit"
    return (
        f"job {node.job_index} attempt {node.attempt}: {where or node.instance_id or 'instance'}"
        f", {_clock(node.started_at)}–{end} ({_duration(node.hours(now))}) × "
        f"${node.price_per_hour:,.4g}/h ({price}) = {money(node.cost(now))}"
    )


def _clock(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _duration(hours: float) -> str:
    minutes = round(hours * 60)
    return f"{minutes // 60}h {minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"
