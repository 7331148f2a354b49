"""What AWS and the AWS provider refuse, checked over what a program declared under the mocks.

The mock runtime never runs the provider, so a stack the provider rejects at preview (or AWS at
create) would pass every other test. These checks stand in for the rules that matter for the
resources dstack declares; each names its source:

- security groups: a group's description and every rule's description are at most 255
  characters of ``a-zA-Z0-9``, space and ``._-:/()#,@[]+=&;{}!$*`` (the provider's
  ``validSecurityGroupRuleDescription``, EC2's ``IpRange.Description``); a group holds at most
  60 inbound and 60 outbound rules per address family (each CIDR and each group reference
  counts as one rule; EC2's default quota);
- IAM: a role name at most 64 characters of ``[\\w+=,.@-]``, a ``name_prefix`` at most 38 (the
  provider appends a 26-character unique suffix), an instance profile name at most 128, a path
  ``/`` or ``/…/`` of printable ASCII up to 512, a description at most 1,000 characters of
  tab, newline and ``U+0020``-``U+007E``/``U+00A1``-``U+00FF``; the inline policies of one
  role together at most 10,240 characters, whitespace not counted (IAM's quota);
- tags: at most 50 per resource; a key 1-128 characters, a value at most 256, no key starting
  with ``aws:``; IAM and S3 accept only letters, digits, spaces and ``_.:/=+-@``;
- EC2 user data at most 16 KB before base64.

A name the provider makes up (no ``name`` given) is the resource's name, a dash and seven
characters: ``autoname`` says so.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable
from typing import Any

from tests.stacks.harness import Declared

SG_DESCRIPTION = re.compile(r"^[A-Za-z0-9 ._\-:/()#,@\[\]+=&;{}!$*]*$")
SG_DESCRIPTION_MAX = 255
SG_RULES_PER_DIRECTION = 60
IAM_NAME = re.compile(r"^[\w+=,.@-]+$", re.ASCII)
ROLE_NAME_MAX = 64
ROLE_NAME_PREFIX_MAX = 38
PROFILE_NAME_MAX = 128
IAM_PATH = re.compile(r"^/([\x21-\x7e]+/)?$")
IAM_PATH_MAX = 512
IAM_DESCRIPTION = re.compile(r"^[\t\n\r\x20-\x7e\xa1-\xff]*$")
IAM_DESCRIPTION_MAX = 1000
INLINE_POLICIES_MAX = 10_240
TAGS_MAX = 50
TAG_KEY_MAX = 128
TAG_VALUE_MAX = 256
TAG_CHARS = re.compile(r"^[\w .:/=+\-@]*$", re.UNICODE)
USER_DATA_MAX = 16 * 1024
AUTONAME_SUFFIX = 8  # "-" and seven random characters


class ProviderRefused(AssertionError):
    """A declared resource the AWS provider (or AWS) would refuse."""


def autoname(resource: Declared) -> str:
    """The physical name: the given one, or what the provider would make up."""
    name = resource.inputs.get("name")
    if name:
        return str(name)
    prefix = resource.inputs.get("namePrefix")
    if prefix:
        return f"{prefix}{'x' * 26}"
    return f"{resource.name}-{'x' * (AUTONAME_SUFFIX - 1)}"


def violations(declared: list[Declared]) -> list[str]:
    """Every rule broken, one line each (empty when AWS would accept the stack)."""
    found: list[str] = []
    inline: dict[str, int] = {}
    for resource in declared:
        if not resource.custom:
            continue
        kind = resource.type.split(":")[-1]
        found += [f"{resource.name}: {v}" for v in _tag_violations(resource)]
        if kind == "SecurityGroup":
            found += [f"{resource.name}: {v}" for v in _group_violations(resource.inputs)]
        elif kind in ("SecurityGroupRule", "SecurityGroupIngressRule", "SecurityGroupEgressRule"):
            found += [f"{resource.name}: {v}" for v in _description(resource.inputs)]
        elif kind == "Role" and resource.type.startswith("aws:iam/"):
            found += [f"{resource.name}: {v}" for v in _role_violations(resource)]
        elif kind == "InstanceProfile":
            found += [f"{resource.name}: {v}" for v in _profile_violations(resource)]
        elif kind == "RolePolicy":
            role = str(resource.inputs.get("role"))
            inline[role] = inline.get(role, 0) + policy_size(resource.inputs.get("policy"))
        elif kind == "Instance" and resource.type.startswith("aws:ec2/"):
            size = len(str(resource.inputs.get("userData") or "").encode())
            if size > USER_DATA_MAX:
                found.append(f"{resource.name}: user data is {size} bytes, over 16 KB")
    for role, size in inline.items():
        if size > INLINE_POLICIES_MAX:
            found.append(
                f"role {role}: inline policies total {size} characters, over {INLINE_POLICIES_MAX}"
            )
    return found


def check(declared: list[Declared]) -> None:
    """Raise ``ProviderRefused`` listing every rule the declared stack breaks."""
    found = violations(declared)
    if found:
        raise ProviderRefused("the AWS provider would refuse:\n  " + "\n  ".join(found))


def policy_size(document: Any) -> int:
    """A policy's size as IAM counts it: its characters without whitespace."""
    if document is None:
        return 0
    text = document if isinstance(document, str) else json.dumps(document)
    return len(re.sub(r"\s", "", text))


def _description(inputs: dict[str, Any]) -> Iterable[str]:
    description = inputs.get("description")
    if description is None:
        return
    if len(description) > SG_DESCRIPTION_MAX:
        yield f"description longer than {SG_DESCRIPTION_MAX} characters"
    if not SG_DESCRIPTION.match(description):
        bad = sorted({c for c in description if not SG_DESCRIPTION.match(c)})
        yield f"description {description!r} holds characters EC2 refuses: {bad}"


def _group_violations(inputs: dict[str, Any]) -> Iterable[str]:
    yield from _description(inputs)
    name = inputs.get("name")
    if name and len(name) > 255:
        yield "security group name longer than 255 characters"
    for direction in ("ingress", "egress"):
        counts = {4: 0, 6: 0}
        for rule in inputs.get(direction) or []:
            yield from (f"{direction} rule: {v}" for v in _description(rule))
            for cidr in rule.get("cidrBlocks") or []:
                counts[ipaddress.ip_network(cidr).version] += 1
            counts[6] += len(rule.get("ipv6CidrBlocks") or [])
            references = len(rule.get("securityGroups") or []) + (1 if rule.get("self") else 0)
            counts[4] += references + len(rule.get("prefixListIds") or [])
        for family, count in counts.items():
            if count > SG_RULES_PER_DIRECTION:
                yield f"{count} IPv{family} {direction} rules, over {SG_RULES_PER_DIRECTION}"


def _role_violations(resource: Declared) -> Iterable[str]:
    inputs = resource.inputs
    prefix = inputs.get("namePrefix")
    if prefix is not None and len(prefix) > ROLE_NAME_PREFIX_MAX:
        yield f"role name prefix {prefix!r} longer than {ROLE_NAME_PREFIX_MAX} characters"
    name = autoname(resource)
    if len(name) > ROLE_NAME_MAX:
        yield f"role name {name!r} longer than {ROLE_NAME_MAX} characters"
    if not IAM_NAME.match(name):
        yield f"role name {name!r} holds characters IAM refuses"
    path = inputs.get("path")
    if path is not None and (len(path) > IAM_PATH_MAX or not IAM_PATH.match(path)):
        yield f"role path {path!r} is not /, nor /…/ of printable characters"
    description = inputs.get("description")
    if description is not None and (
        len(description) > IAM_DESCRIPTION_MAX or not IAM_DESCRIPTION.match(description)
    ):
        yield f"role description {description!r} is refused by IAM"
    boundary = inputs.get("permissionsBoundary")
    if boundary is not None and not str(boundary).startswith("arn:"):
        yield f"permissions boundary {boundary!r} is not a policy ARN"


def _profile_violations(resource: Declared) -> Iterable[str]:
    name = autoname(resource)
    if len(name) > PROFILE_NAME_MAX or not IAM_NAME.match(name):
        yield f"instance profile name {name!r} is refused by IAM"
    path = resource.inputs.get("path")
    if path is not None and not IAM_PATH.match(path):
        yield f"instance profile path {path!r} is refused by IAM"


def _tag_violations(resource: Declared) -> Iterable[str]:
    for field in ("tags", "volumeTags"):
        tags = resource.inputs.get(field)
        if not tags:
            continue
        if len(tags) > TAGS_MAX:
            yield f"{len(tags)} {field}, over {TAGS_MAX}"
        for key, value in tags.items():
            if not 1 <= len(key) <= TAG_KEY_MAX:
                yield f"tag key {key!r} is not 1-{TAG_KEY_MAX} characters"
            if key.lower().startswith("aws:"):
                yield f"tag key {key!r} uses the reserved aws: prefix"
            if len(str(value)) > TAG_VALUE_MAX:
                yield f"tag {key} value longer than {TAG_VALUE_MAX} characters"
            if not TAG_CHARS.match(key) or not TAG_CHARS.match(str(value)):
                yield f"tag {key!r}={value!r} holds characters IAM and S3 refuse"
