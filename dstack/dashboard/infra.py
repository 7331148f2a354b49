"""A cloud run's recorded plan as rows of a table: each resource, its type, and the inputs a
reviewer looks for (instance type, spot or on-demand, open ports, what IAM lets it reach).

Plans hold no secret (job variables and secrets never enter a stack), and the full inputs are
shown too, folded, as `dstack infra -v` prints them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dstack.models import InfraRecord


@dataclass
class ResourceRow:
    name: str
    type: str
    key_inputs: list[tuple[str, str]]
    inputs_json: str


def resource_rows(record: InfraRecord) -> list[ResourceRow]:
    rows = []
    for resource in record.resources:
        if resource.get("component"):
            continue
        inputs = resource.get("inputs") or {}
        kind = str(resource.get("type", ""))
        rows.append(
            ResourceRow(
                name=str(resource.get("name", "")),
                type=kind,
                key_inputs=key_inputs(kind, inputs),
                inputs_json=json.dumps(inputs, indent=2, sort_keys=True, default=str),
            )
        )
    return rows


def key_inputs(kind: str, inputs: dict[str, Any]) -> list[tuple[str, str]]:
    short = kind.rsplit(":", 1)[-1]
    if short == "Instance":
        market = (inputs.get("instanceMarketOptions") or {}).get("marketType")
        volume = inputs.get("rootBlockDevice") or {}
        metadata = inputs.get("metadataOptions") or {}
        return [
            ("instance type", str(inputs.get("instanceType", "?"))),
            ("market", "spot" if market == "spot" else "on-demand"),
            ("root volume", f"{volume.get('volumeSize', '?')} GB {volume.get('volumeType', '')}"
             f"{', encrypted' if volume.get('encrypted') else ', NOT encrypted'}"),
            ("IMDSv2", "required" if metadata.get("httpTokens") == "required" else "optional"),
        ]  # fmt: skip
    if short == "SecurityGroup":
        ingress = inputs.get("ingress") or []
        return [("ingress", "; ".join(_rule(r) for r in ingress) if ingress else "none")]
    if short in ("RolePolicy", "Policy"):
        return [("IAM scope", line) for line in _policy_scope(inputs.get("policy"))]
    if short == "Role":
        return [("trusted by", ", ".join(_principals(inputs.get("assumeRolePolicy"))) or "?")]
    if short == "InstanceProfile":
        return [("role", str(inputs.get("role", "?")))]
    return [(k, _scalar(v)) for k, v in sorted(inputs.items()) if k != "tags"][:4]


def _rule(rule: dict[str, Any]) -> str:
    ports = f"{rule.get('fromPort')}" + (
        f"-{rule.get('toPort')}" if rule.get("toPort") != rule.get("fromPort") else ""
    )
    sources = ", ".join(rule.get("cidrBlocks") or []) or "?"
    return f"{rule.get('protocol', 'tcp')} {ports} from {sources}"


def _policy_scope(policy: Any) -> list[str]:
    document = _document(policy)
    lines = []
    for statement in document.get("Statement", []):
        actions = statement.get("Action", [])
        resources = statement.get("Resource", [])
        actions = [actions] if isinstance(actions, str) else actions
        resources = [resources] if isinstance(resources, str) else resources
        effect = statement.get("Effect", "Allow")
        lines.append(f"{effect} {', '.join(actions)} on {', '.join(resources)}")
    return lines or ["?"]


def _principals(policy: Any) -> list[str]:
    found: list[str] = []
    for statement in _document(policy).get("Statement", []):
        principal = statement.get("Principal", {})
        for value in principal.values() if isinstance(principal, dict) else [principal]:
            found.extend([value] if isinstance(value, str) else value)
    return found


def _document(policy: Any) -> dict[str, Any]:
    if isinstance(policy, str):
        try:
            policy = json.loads(policy)
        except ValueError:
            return {}
    return policy if isinstance(policy, dict) else {}


def _scalar(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."
