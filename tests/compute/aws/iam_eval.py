"""A test double standing in for IAM's evaluation of identity-based policies on S3 requests.

It follows AWS's documented logic for one principal with identity policies only (no SCP, no
resource policy, no boundary): a request is allowed when some ``Allow`` statement matches its
action, its resource and its conditions, and no ``Deny`` statement does; otherwise it is
implicitly denied. Matching, as documented: actions case-insensitively with ``*``/``?``
wildcards; resources case-sensitively with ``*`` (any run of characters, ``/`` included) and
``?`` (one character); ``StringLike``/``StringEquals``/``ArnEquals`` (no wildcard) on a condition key the request lacks do not
match (so a statement conditioned on ``s3:prefix`` never allows a listing without a prefix).
Only what dstack's policies use is modelled; anything else raises, rather than guessing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_SUPPORTED = {"Sid", "Effect", "Action", "Resource", "Condition"}


def allowed(
    policy: Mapping[str, Any], action: str, resource: str, context: Mapping[str, str] | None = None
) -> bool:
    context = context or {}
    allow = False
    for statement in policy["Statement"]:
        unknown = set(statement) - _SUPPORTED
        if unknown:
            raise NotImplementedError(f"the evaluator does not model {sorted(unknown)}")
        if not _matches(statement, action, resource, context):
            continue
        if statement["Effect"] == "Deny":
            return False
        allow = True
    return allow


def _matches(
    statement: Mapping[str, Any], action: str, resource: str, context: Mapping[str, str]
) -> bool:
    actions = _list(statement["Action"])
    if not any(_glob(a, action, case=False) for a in actions):
        return False
    if not any(_glob(r, resource, case=True) for r in _list(statement["Resource"])):
        return False
    for operator, keys in (statement.get("Condition") or {}).items():
        for key, values in keys.items():
            if key not in context:
                return False
            if operator == "StringLike":
                ok = any(_glob(v, context[key], case=True) for v in _list(values))
            elif operator in ("StringEquals", "ArnEquals"):
                ok = context[key] in _list(values)
            else:
                raise NotImplementedError(f"condition operator {operator}")
            if not ok:
                return False
    return True


def _glob(pattern: str, value: str, *, case: bool) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
