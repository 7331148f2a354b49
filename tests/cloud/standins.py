"""``install()``: the engine tier's stand-in resources (``tests.engine.cloudless``), with the
run stack's IAM and EC2 resources made real in moto, for the box tier.

Stands in for terraform-provider-aws (which cannot be built here): each resource makes, with
the credentials of the process (the dstack user's, under moto's IAM enforcement), the calls the
provider makes for it — create, the read after create, and the reads and deletes of a destroy,
as ``internal/service/{iam,ec2}`` of the provider does — so a permission the user's policy
lacks fails the run as it would on AWS. The Instance's create also asks the box's hypervisor
(``$DSTACK_BOX_HYPERVISOR``, ``tests.cloud.box``) to boot it with its user data; its delete
terminates it (and the hypervisor kills its processes). ``$DSTACK_BOX_NO_CAPACITY`` makes
the Instance's create fail as RunInstances does when EC2 has no capacity for a type (or a
type in a zone).

What stays with ``cloudless`` (files in ``$DSTACK_STANDIN_CLOUD``): the bootstrap's S3
resources, which the tier's set-up creates itself.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
import uuid
from typing import Any

from pulumi import dynamic

from tests.engine import cloudless

#: moto authorizes some S3 requests by their operation's name, where IAM uses the action that
#: operation needs (AWS: HeadBucket and ListObjectsV2 need s3:ListBucket): those names are
#: granted with the action
MOTO_S3_NAMES = {
    "s3:ListBucket": ["s3:HeadBucket", "s3:ListObjectsV2", "s3:ListObjects"],
    "s3:GetObject": ["s3:HeadObject"],
    "s3:PutObject": ["s3:CreateMultipartUpload", "s3:UploadPart", "s3:CompleteMultipartUpload",
                     "s3:CopyObject"],
    "s3:DeleteObject": ["s3:DeleteObjects"],
}  # fmt: skip


def as_moto_enforces(policy: dict[str, Any]) -> dict[str, Any]:
    """A policy as moto can enforce it: no conditions (moto evaluates none: a statement with
    one would deny), and moto's S3 operation names granted with their IAM actions."""
    policy = json.loads(json.dumps(policy))
    for statement in policy["Statement"]:
        statement.pop("Condition", None)
        action = statement["Action"]
        actions = action if isinstance(action, list) else [action]
        statement["Action"] = actions + [n for a in actions for n in MOTO_S3_NAMES.get(a, [])]
    return policy


def _client(service: str) -> Any:
    import boto3

    return boto3.client(service, endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))


def _tags(props: dict[str, Any]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": str(v)} for k, v in (props.get("tags") or {}).items()]


def _get(value: Any, *names: str) -> Any:
    """A nested input as the engine hands it (snake_case or camelCase keys)."""
    for name in names:
        if isinstance(value, dict) and value.get(name) is not None:
            return value[name]
    return None


def _named(props: dict[str, Any]) -> str:
    if props.get("name"):
        return str(props["name"])
    return f"{props.get('name_prefix') or 'standin-'}{uuid.uuid4().hex[:26]}"[:64]


class MotoResource(dynamic.ResourceProvider):
    kind = ""

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        changed = [
            key for key in set(olds) | set(news)
            if key != "__provider" and news.get(key) is not None and olds.get(key) != news.get(key)
        ]  # fmt: skip
        return dynamic.DiffResult(changes=bool(changed), replaces=changed)


class Role(MotoResource):
    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        iam = _client("iam")
        name = _named(props)
        extra = {"PermissionsBoundary": props["permissions_boundary"]} if props.get(
            "permissions_boundary") else {}  # fmt: skip
        role = iam.create_role(
            RoleName=name, Path=props.get("path") or "/",
            AssumeRolePolicyDocument=props["assume_role_policy"],
            Description=props.get("description") or "", Tags=_tags(props), **extra,
        )["Role"]  # fmt: skip
        self._read(name)
        return dynamic.CreateResult(id_=name, outs={**props, "name": name, "arn": role["Arn"]})

    @staticmethod
    def _read(name: str) -> None:  # resourceRoleRead
        iam = _client("iam")
        iam.get_role(RoleName=name)
        iam.list_role_policies(RoleName=name)
        iam.list_attached_role_policies(RoleName=name)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:  # resourceRoleDelete
        iam = _client("iam")
        for profile in iam.list_instance_profiles_for_role(RoleName=_id)["InstanceProfiles"]:
            iam.remove_role_from_instance_profile(
                InstanceProfileName=profile["InstanceProfileName"], RoleName=_id
            )
        iam.delete_role(RoleName=_id)


class RolePolicy(MotoResource):
    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        iam = _client("iam")
        name = _named(props)
        document = json.dumps(as_moto_enforces(json.loads(props["policy"])))
        iam.put_role_policy(RoleName=props["role"], PolicyName=name, PolicyDocument=document)
        iam.get_role_policy(RoleName=props["role"], PolicyName=name)
        # the policy as written, conditions kept: the box checks the role's calls against it
        _hypervisor("policy", {"role": props["role"], "document": json.loads(props["policy"])})
        return dynamic.CreateResult(id_=f"{props['role']}:{name}", outs={**props, "name": name})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        role, name = _id.split(":", 1)
        _client("iam").delete_role_policy(RoleName=role, PolicyName=name)


class InstanceProfile(MotoResource):
    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        iam = _client("iam")
        name = _named(props)
        profile = iam.create_instance_profile(
            InstanceProfileName=name, Path=props.get("path") or "/", Tags=_tags(props)
        )["InstanceProfile"]
        iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=props["role"])
        iam.get_instance_profile(InstanceProfileName=name)
        return dynamic.CreateResult(id_=name, outs={**props, "name": name, "arn": profile["Arn"]})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        iam = _client("iam")
        for role in iam.get_instance_profile(InstanceProfileName=_id)["InstanceProfile"]["Roles"]:
            iam.remove_role_from_instance_profile(
                InstanceProfileName=_id, RoleName=role["RoleName"]
            )
        iam.delete_instance_profile(InstanceProfileName=_id)


class SecurityGroup(MotoResource):
    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        ec2 = _client("ec2")
        extra = {"VpcId": props["vpc_id"]} if props.get("vpc_id") else {}
        group = ec2.create_security_group(
            GroupName=_named(props), Description=props.get("description") or "dstack",
            TagSpecifications=[{"ResourceType": "security-group", "Tags": _tags(props)}], **extra,
        )["GroupId"]  # fmt: skip
        described = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]
        # the provider replaces the default egress rule by the declared ones
        if described.get("IpPermissionsEgress"):
            ec2.revoke_security_group_egress(
                GroupId=group, IpPermissions=described["IpPermissionsEgress"]
            )
        egress = [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
        ec2.authorize_security_group_egress(GroupId=group, IpPermissions=egress)
        ingress = [self._rule(rule, group) for rule in props.get("ingress") or []]
        if ingress:
            ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=ingress)
        ec2.describe_security_groups(GroupIds=[group])
        arn = f"arn:aws:ec2:us-east-1:123456789012:security-group/{group}"
        return dynamic.CreateResult(id_=group, outs={**props, "arn": arn, "name": group})

    @staticmethod
    def _rule(rule: dict[str, Any], group: str) -> dict[str, Any]:
        protocol = str(_get(rule, "protocol") or "tcp")
        permission: dict[str, Any] = {"IpProtocol": protocol}
        if protocol != "-1":
            permission["FromPort"] = int(_get(rule, "from_port", "fromPort") or 0)
            permission["ToPort"] = int(_get(rule, "to_port", "toPort") or 0)
        cidrs = _get(rule, "cidr_blocks", "cidrBlocks") or []
        permission["IpRanges"] = [{"CidrIp": c} for c in cidrs]
        v6 = _get(rule, "ipv6_cidr_blocks", "ipv6CidrBlocks") or []
        permission["Ipv6Ranges"] = [{"CidrIpv6": c} for c in v6]
        if _get(rule, "self"):  # the members of this group (a multi-node run's nodes)
            permission["UserIdGroupPairs"] = [{"GroupId": group}]
        return permission

    def delete(self, _id: str, props: dict[str, Any]) -> None:  # revoke_rules_on_delete
        ec2 = _client("ec2")
        group = ec2.describe_security_groups(GroupIds=[_id])["SecurityGroups"][0]
        if group.get("IpPermissions"):
            ec2.revoke_security_group_ingress(GroupId=_id, IpPermissions=group["IpPermissions"])
        if group.get("IpPermissionsEgress"):
            ec2.revoke_security_group_egress(
                GroupId=_id, IpPermissions=group["IpPermissionsEgress"]
            )
        deadline = time.monotonic() + 120  # the provider retries DependencyViolation
        while True:
            try:
                ec2.delete_security_group(GroupId=_id)
                return
            except Exception as exc:
                if "DependencyViolation" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(1)


class Instance(MotoResource):
    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        ec2 = _client("ec2")
        spot = bool(props.get("instance_market_options"))
        image = props.get("ami")
        if image == cloudless.STANDIN_AMI:  # the SSM lookup's stand-in: one of moto's AMIs
            image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        launch: dict[str, Any] = {
            "ImageId": image, "InstanceType": props["instance_type"], "MinCount": 1,
            "MaxCount": 1, "UserData": props.get("user_data") or "",
            "SecurityGroupIds": list(props.get("vpc_security_group_ids") or []),
            "InstanceInitiatedShutdownBehavior": "terminate",
            "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
            "TagSpecifications": [{"ResourceType": "instance", "Tags": _tags(props)}],
        }  # fmt: skip
        if props.get("iam_instance_profile"):
            launch["IamInstanceProfile"] = {"Name": props["iam_instance_profile"]}
        if spot:
            launch["InstanceMarketOptions"] = {
                "MarketType": "spot",
                "SpotOptions": {
                    "SpotInstanceType": "one-time",
                    "InstanceInterruptionBehavior": "terminate",
                },
            }
        if props.get("subnet_id"):
            launch["SubnetId"] = props["subnet_id"]
        if props.get("availability_zone"):
            launch["Placement"] = {"AvailabilityZone": props["availability_zone"]}
        _refuse_if_no_capacity(props["instance_type"], props.get("availability_zone"))
        instance_id = ec2.run_instances(**launch)["Instances"][0]["InstanceId"]
        self._read(instance_id, spot)
        _hypervisor("boot", {
            "instance_id": instance_id, "user_data": props.get("user_data") or "",
            "profile": props.get("iam_instance_profile"),
        })  # fmt: skip
        outs = {
            **props, "arn": f"arn:aws:ec2:us-east-1:123456789012:instance/{instance_id}",
            "public_ip": "127.0.0.1", "private_ip": "127.0.0.1",
        }  # fmt: skip
        return dynamic.CreateResult(id_=instance_id, outs=outs)

    @staticmethod
    def _read(instance_id: str, spot: bool) -> None:
        """resourceInstanceRead: the instance, its attributes, its volumes, and for spot its
        spot instance request."""
        ec2 = _client("ec2")
        found = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]
        instance = found["Instances"][0]
        for attribute in ("disableApiTermination", "instanceInitiatedShutdownBehavior",
                          "disableApiStop", "userData"):  # fmt: skip
            ec2.describe_instance_attribute(InstanceId=instance_id, Attribute=attribute)
        ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [instance_id]}])
        request = instance.get("SpotInstanceRequestId")
        if spot and request:
            ec2.describe_spot_instance_requests(SpotInstanceRequestIds=[request])

    def read(self, id_: str, props: dict[str, Any]) -> dynamic.ReadResult:
        """A refresh's read (resourceInstanceRead): an instance EC2 reports ``terminated``,
        or no longer knows, is dropped from the state (the provider's findInstanceByID treats
        ``terminated`` as not found), so the next update creates it again."""
        ec2 = _client("ec2")
        try:
            found = ec2.describe_instances(InstanceIds=[id_])["Reservations"]
        except Exception as exc:
            if "InvalidInstanceID" not in str(exc):
                raise
            found = []
        instances = [i for r in found for i in r["Instances"]]
        if not instances or instances[0]["State"]["Name"] == "terminated":
            return dynamic.ReadResult("", {})
        self._read(id_, bool(props.get("instance_market_options")))
        return dynamic.ReadResult(id_, props)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        ec2 = _client("ec2")
        ec2.terminate_instances(InstanceIds=[_id])
        _hypervisor("terminate", {"instance_id": _id})
        ec2.describe_instances(InstanceIds=[_id])  # the provider waits for `terminated`


def _refuse_if_no_capacity(instance_type: str, zone: str | None) -> None:
    """EC2's answer to a RunInstances it has no capacity for, as the provider reports it, when
    ``$DSTACK_BOX_NO_CAPACITY`` (``TYPE`` or ``TYPE@ZONE``, comma-separated) names this launch.
    moto launches whatever it is asked to: a shortage is the one thing it cannot produce."""
    refused = {x.strip() for x in os.environ.get("DSTACK_BOX_NO_CAPACITY", "").split(",")}
    if instance_type in refused or f"{instance_type}@{zone}" in refused:
        where = zone or "us-east-1a"
        raise Exception(
            "creating EC2 Instance: operation error EC2: RunInstances, https response error "
            "StatusCode: 500, RequestID: box, api error InsufficientInstanceCapacity: We "
            f"currently do not have sufficient {instance_type} capacity in the Availability "
            f"Zone you requested ({where})."
        )


def _hypervisor(action: str, body: dict[str, Any]) -> None:
    url = os.environ["DSTACK_BOX_HYPERVISOR"]
    request = urllib.request.Request(
        f"{url}/{action}", data=json.dumps(body).encode(), method="POST"
    )
    urllib.request.urlopen(request, timeout=120).read()


_REAL = {
    ("iam", "Role"): Role,
    ("iam", "RolePolicy"): RolePolicy,
    ("iam", "InstanceProfile"): InstanceProfile,
    ("ec2", "SecurityGroup"): SecurityGroup,
    ("ec2", "Instance"): Instance,
}


def install() -> None:
    """``cloudless.install()``, then the run stack's IAM and EC2 resources made in moto."""
    import pulumi
    import pulumi_aws as aws

    cloudless.install()
    for (module, name), provider in _REAL.items():
        outputs = next(o for m, n, o in cloudless.REPLACED if (m, n) == (module, name))

        def make(
            provider: type = provider, outputs: tuple[str, ...] = outputs,
            module: str = module, name: str = name,
        ) -> type:  # fmt: skip
            class Standin(dynamic.Resource, module=f"box/{module}", name=name):
                def __init__(
                    self, resource_name: str, opts: pulumi.ResourceOptions | None = None,
                    **kwargs: Any,
                ) -> None:  # fmt: skip
                    props = {k: v for k, v in kwargs.items() if v is not None}
                    for key in outputs:
                        props.setdefault(key, None)
                    super().__init__(provider(), resource_name, props, opts)

            Standin.__name__ = Standin.__qualname__ = name
            return Standin

        setattr(getattr(aws, module), name, make())
