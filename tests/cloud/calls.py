"""Every AWS call of the box tier, recorded and checked against the real policies.

Moto checks a call's action against the caller's policies, and its resource only for S3; it
evaluates no condition. So the policies moto holds are the real ones loosened (``conftest``'s
``moto_policy``, ``standins.as_moto_enforces``), and a call the real policy would deny for its
resource or a condition (a security group not tagged with the bucket, a role created without
the boundary, a listing outside the run's prefixes) would pass here. ``Recorder`` closes that
gap: it wraps moto's authorization (``IAMRequestBase.check_action_permitted``, in this process:
the moto server is a thread of the test process) and, for every call of the dstack user and of
a run role, writes down what AWS would authorize for that request — each resource ARN it
touches, with the condition keys AWS fills in (``aws:RequestTag/*`` from the request's tag
specifications, ``aws:ResourceTag/*`` from the resource's tags as moto holds them at the call,
``iam:PermissionsBoundary``, ``iam:PassedToService``, ``ec2:CreateAction``, ``s3:prefix``) —
while the resources still exist. ``violations()`` then evaluates each with
``tests.compute.aws.iam_eval`` against the policy the caller really holds: the dstack user's
``iam/dstack-user-policy.json``; a run role's own policy as dstack wrote it (conditions kept,
handed over by the RolePolicy stand-in) under the runner boundary. A call moto let through that
the real policy denies is a violation; so is a call this module cannot model (it says which,
rather than guessing). The administrator's set-up and checks are recorded and not evaluated.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.cloud.standins import MOTO_S3_NAMES
from tests.compute.aws import iam_eval

#: moto's names of S3 operations, back to the IAM action AWS authorizes them by
_S3_ACTION = {name: action for action, names in MOTO_S3_NAMES.items() for name in names}
#: actions AWS authorizes on ``*`` only (no resource-level permission): EC2's Describe* but
#: DescribeInstanceAttribute, and these
_STAR = {"iam:ListRoles", "iam:ListInstanceProfiles", "iam:ListPolicies", "iam:ListUsers",
         "pricing:GetProducts"}  # fmt: skip
Authorization = tuple[str, str, dict[str, str]]


#: a job's deliberate attempts (scenario f's probe sends it in its User-Agent): judged by the
#: test that makes them, not counted as dstack's own violations
PROBE_AGENT = "dstack-box-probe"
PolicyOf = Callable[["Call"], "list[Mapping[str, Any]] | None"]


@dataclass
class Call:
    caller: str  # the principal's ARN: a user, or an assumed role
    action: str  # as moto names it (``s3:HeadObject``)
    permitted: bool = False  # the verdict the caller got
    authorizations: list[Authorization] = field(default_factory=list)
    unmodelled: str | None = None  # why no authorization could be written down
    #: moto allowed it, the real policies deny it (and so the caller was denied, as on AWS)
    real_denied: str | None = None
    agent: str = ""

    @property
    def role(self) -> str | None:
        """The role name of an assumed-role caller."""
        if ":assumed-role/" not in self.caller:
            return None
        return self.caller.split(":assumed-role/", 1)[1].split("/")[0]


class Recorder:
    """Records the calls moto authorizes and judges each against the caller's real policies
    (``policy_of``: the policies that must all allow a call of that caller, or None for a
    caller not judged). A call moto allows and the real policies deny is refused, as AWS
    would refuse it, and kept as a violation. ``install()`` once."""

    def __init__(self, account: str, region: str, policy_of: PolicyOf | None = None) -> None:
        self.account = account
        self.region = region
        self.policy_of = policy_of
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._original: Any = None

    def install(self) -> None:
        from moto.iam.access_control import IAMRequestBase

        original = IAMRequestBase.check_action_permitted
        recorder = self

        def check_action_permitted(request: Any, resource: str) -> None:
            call = recorder._describe(request, resource)
            try:
                original(request, resource)
            except BaseException:
                recorder._add(call)
                raise
            call.real_denied = recorder._judge(call)
            call.permitted = call.real_denied is None
            recorder._add(call)
            if call.real_denied:
                request._raise_access_denied()

        self._original = original
        IAMRequestBase.check_action_permitted = check_action_permitted  # type: ignore[method-assign]

    def uninstall(self) -> None:
        if self._original is not None:
            from moto.iam.access_control import IAMRequestBase

            IAMRequestBase.check_action_permitted = self._original  # type: ignore[method-assign]
            self._original = None

    def _add(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def _judge(self, call: Call) -> str | None:
        """Why the caller's real policies deny ``call`` (None: they allow it, or it is not
        judged: an unmodelled call is reported by ``violations``, not refused)."""
        policies = self.policy_of(call) if self.policy_of else None
        if policies is None or call.unmodelled:
            return None
        for action, resource, context in call.authorizations:
            if not all(iam_eval.allowed(p, action, resource, context) for p in policies):
                return f"{action} on {resource} with {json.dumps(context, sort_keys=True)}"
        return None

    def _describe(self, request: Any, resource: str) -> Call:
        caller = str(getattr(request._access_key, "arn", "?"))
        agent = str(request._headers.get("User-Agent") or request._headers.get("user-agent") or "")
        call = Call(caller, request._action, agent=agent)
        try:
            call.authorizations = authorizations(
                request._action, resource, _params(request), self.account, self.region
            )
        except Unmodelled as exc:
            call.unmodelled = str(exc)
        except Exception as exc:  # never break moto: say it, the check fails on it
            call.unmodelled = f"{type(exc).__name__}: {exc}"
        return call


class Unmodelled(Exception):
    """A call whose authorization this module does not know."""


def violations(calls: list[Call], policy_of: PolicyOf) -> list[str]:
    """One line for each call of a judged caller (``policy_of`` not None) that moto allowed and
    the real policies deny, or that could not be evaluated; a job's deliberate attempts
    (``PROBE_AGENT``) are left to the test that makes them."""
    found = []
    for call in calls:
        if PROBE_AGENT in call.agent or policy_of(call) is None:
            continue
        if call.real_denied:
            found.append(f"{call.caller} {call.action}: the real policy denies {call.real_denied}")
        elif call.permitted and call.unmodelled:
            found.append(f"{call.caller} {call.action}: not modelled ({call.unmodelled})")
    return found


# ---- what AWS authorizes for one request ----------------------------------------------------


def _params(request: Any) -> dict[str, str]:
    """The request's parameters, flattened (``TagSpecification.1.Tag.1.Key``); a JSON
    protocol's body (SSM, KMS) parsed."""
    headers = request._headers
    if headers.get("X-Amz-Target") or headers.get("x-amz-target"):
        body = request._body or b"{}"
        return {k: str(v) for k, v in json.loads(body).items()}
    data = request._data or {}
    return {k: (v[0] if isinstance(v, list) and v else str(v)) for k, v in data.items()}


def authorizations(
    action: str, resource: str, params: Mapping[str, str], account: str, region: str
) -> list[Authorization]:
    """The (action, resource ARN, condition keys) AWS authorizes for one request."""
    service, name = action.split(":", 1)
    if service == "s3":
        return [_s3(action, resource, params)]
    if action == "sts:GetCallerIdentity":
        return []  # needs no permission
    if action in _STAR or (
        action.startswith("ec2:Describe") and action != "ec2:DescribeInstanceAttribute"
    ):
        return [(action, "*", {})]
    if service == "ec2":
        return _ec2(name, params, account, region)
    if service == "iam":
        return _iam(name, params, account)
    if action == "sts:AssumeRole":
        return [(action, params["RoleArn"], {})]
    if action == "ssm:GetParameter":
        return [(action, f"arn:aws:ssm:{region}:{account}:parameter{params['Name']}", {})]
    if action == "servicequotas:GetServiceQuota":  # a quota is a resource of its own
        quota = f"{params.get('ServiceCode', '')}/{params.get('QuotaCode', '')}"
        return [(action, f"arn:aws:servicequotas:{region}:{account}:{quota}", {})]
    if service == "kms":
        key = params.get("KeyId", "")
        arn = key if key.startswith("arn:") else f"arn:aws:kms:{region}:{account}:key/{key}"
        return [(action, arn, {})]
    raise Unmodelled(f"no model of {action}")


def _s3(action: str, resource: str, params: Mapping[str, str]) -> Authorization:
    action = _S3_ACTION.get(action, action)
    context = {}
    if action == "s3:ListBucket":
        context["s3:prefix"] = params.get("prefix", "")
    return action, resource, context


def _tag_specs(params: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """``TagSpecification.N``: resource type -> its tags."""
    found: dict[str, dict[str, str]] = {}
    for key, value in params.items():
        if key.startswith("TagSpecification.") and key.endswith(".ResourceType"):
            n = key.split(".")[1]
            tags = found.setdefault(value, {})
            i = 1
            while f"TagSpecification.{n}.Tag.{i}.Key" in params:
                tags[params[f"TagSpecification.{n}.Tag.{i}.Key"]] = params.get(
                    f"TagSpecification.{n}.Tag.{i}.Value", ""
                )
                i += 1
    return found


def _listed(params: Mapping[str, str], name: str) -> list[str]:
    return [v for k, v in sorted(params.items()) if k.startswith(f"{name}.")]


def _resource_tags(account: str, region: str, resource_id: str) -> dict[str, str]:
    from moto.ec2.models import ec2_backends

    tags = ec2_backends[account][region].tags.get(resource_id, {})
    return {f"aws:ResourceTag/{k}": v for k, v in tags.items()}


def _request_tags(tags: Mapping[str, str]) -> dict[str, str]:
    return {f"aws:RequestTag/{k}": v for k, v in tags.items()}


def _ec2(name: str, params: Mapping[str, str], account: str, region: str) -> list[Authorization]:
    def arn(kind: str, rid: str) -> str:
        return f"arn:aws:ec2:{region}:{account}:{kind}/{rid}"

    act = f"ec2:{name}"
    if name == "RunInstances":
        specs = _tag_specs(params)
        tags = {**specs.get("volume", {}), **specs.get("instance", {})}
        found: list[Authorization] = [
            (act, arn("instance", "*"), _request_tags(tags)),
            (act, arn("volume", "*"), _request_tags(tags)),
            (act, f"arn:aws:ec2:{region}::image/{params.get('ImageId', '')}", {}),
            (act, arn("subnet", params.get("SubnetId", "default")), {}),
            (act, arn("network-interface", "*"), {}),
        ]
        for group in _listed(params, "SecurityGroupId"):
            found.append((act, arn("security-group", group),
                          _resource_tags(account, region, group)))  # fmt: skip
        for kind in specs:
            found.append(("ec2:CreateTags", arn(kind, "*"), {"ec2:CreateAction": name}))
        profile = params.get("IamInstanceProfile.Name") or params.get("IamInstanceProfile.Arn")
        if profile:
            role = _profile_role_arn(account, profile.rsplit("/", 1)[-1])
            found.append(("iam:PassRole", role, {"iam:PassedToService": "ec2.amazonaws.com"}))
        return found
    if name == "CreateSecurityGroup":
        tags = _tag_specs(params).get("security-group", {})
        found = [
            (act, arn("security-group", "*"), _request_tags(tags)),
            (act, arn("vpc", params.get("VpcId", "default")), {}),
        ]
        if tags:
            found.append(("ec2:CreateTags", arn("security-group", "*"), {"ec2:CreateAction": name}))
        return found
    if name in ("AuthorizeSecurityGroupIngress", "AuthorizeSecurityGroupEgress",
                "RevokeSecurityGroupIngress", "RevokeSecurityGroupEgress", "DeleteSecurityGroup"):  # fmt: skip
        group = params["GroupId"]
        return [(act, arn("security-group", group), _resource_tags(account, region, group))]
    if name in ("TerminateInstances", "StopInstances", "ModifyInstanceAttribute",
                "DescribeInstanceAttribute"):  # fmt: skip
        ids = (
            _listed(params, "InstanceId") if "InstanceId" not in params else [params["InstanceId"]]
        )
        return [(act, arn("instance", i), _resource_tags(account, region, i)) for i in ids]
    if name in ("CreateTags", "DeleteTags"):
        kinds = {"i-": "instance", "sg-": "security-group", "vol-": "volume"}
        found = []
        for rid in _listed(params, "ResourceId"):
            kind = next((k for p, k in kinds.items() if rid.startswith(p)), "*")
            found.append((act, arn(kind, rid), _resource_tags(account, region, rid)))
        return found
    raise Unmodelled(f"no model of ec2:{name}")


def _iam_backend(account: str) -> Any:
    from moto.iam.models import iam_backends

    return iam_backends[account]["aws"]


def _profile_role_arn(account: str, profile: str) -> str:
    roles = _iam_backend(account).get_instance_profile(profile).roles
    return str(roles[0].arn) if roles else f"arn:aws:iam::{account}:role/?"


def _role(account: str, name: str) -> tuple[str, dict[str, str]]:
    """A role's ARN, and its boundary as the condition key (the role as it is now)."""
    try:
        role = _iam_backend(account).get_role(name)
    except Exception:
        return f"arn:aws:iam::{account}:role/{name}", {}
    boundary = role.permissions_boundary_arn
    return str(role.arn), ({"iam:PermissionsBoundary": boundary} if boundary else {})


def _iam(name: str, params: Mapping[str, str], account: str) -> list[Authorization]:
    act = f"iam:{name}"
    if name == "CreateRole":
        role = f"arn:aws:iam::{account}:role{params.get('Path', '/')}{params['RoleName']}"
        boundary = params.get("PermissionsBoundary")
        found: list[Authorization] = [
            (act, role, {"iam:PermissionsBoundary": boundary} if boundary else {})
        ]
        if any(k.startswith("Tags.member.") for k in params):
            found.append(("iam:TagRole", role, {}))
        return found
    if name == "CreateServiceLinkedRole":
        service = params["AWSServiceName"]
        role = {"spot.amazonaws.com": "AWSServiceRoleForEC2Spot"}.get(service, "?")
        arn = f"arn:aws:iam::{account}:role/aws-service-role/{service}/{role}"
        return [(act, arn, {"iam:AWSServiceName": service})]
    if name in ("PutRolePolicy", "DeleteRolePolicy", "DeleteRolePermissionsBoundary",
                "PutRolePermissionsBoundary"):  # fmt: skip
        role, boundary = _role(account, params["RoleName"])
        return [(act, role, boundary)]
    if "InstanceProfileName" in params:
        path = params.get("Path")
        if path is None:
            try:
                path = _iam_backend(account).get_instance_profile(
                    params["InstanceProfileName"]).path  # fmt: skip
            except Exception:
                path = "/"
        profile = f"arn:aws:iam::{account}:instance-profile{path}{params['InstanceProfileName']}"
        found = [(act, profile, {})]
        if name == "CreateInstanceProfile" and any(k.startswith("Tags.member.") for k in params):
            found.append(("iam:TagInstanceProfile", profile, {}))
        return found
    if "RoleName" in params:
        role, _ = _role(account, params["RoleName"])
        return [(act, role, {})]
    if name in ("CreatePolicyVersion", "GetPolicy", "GetPolicyVersion", "DeletePolicy"):
        return [(act, params["PolicyArn"], {})]
    if name in ("CreateUser", "GetUser", "DeleteUser"):
        return [(act, f"arn:aws:iam::{account}:user/{params.get('UserName', '')}", {})]
    raise Unmodelled(f"no model of iam:{name}")
