"""The run stack: what one dstack run creates on AWS, and destroys once its artifacts landed.

Per run: a security group (no ingress but the workflow's ``ports``, from the caller only), the
runner's IAM role scoped to this run's keys (or the bootstrap's shared profile), and one
instance per job (IMDSv2, encrypted root volume, shutdown terminates it). Every taggable
resource carries the store, repo, run and user tags; instances also ``dstack:lifetime``, which
`dstack prune` enforces. Each resource and its defaults: docs/design/stacks.md.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from stacks import defaults, policies
from stacks import tags as tagging


@dataclass(frozen=True)
class InstanceArgs:
    """One job's instance."""

    job_index: int
    instance_type: str
    interruptible: bool
    #: the boot script (``dstack.compute.aws.userdata`` renders it)
    user_data: str
    gpu: bool = False
    root_volume_gb: int = defaults.ROOT_VOLUME_GB
    #: the availability zone of the offer this instance is tried on (None: EC2 picks, or the
    #: subnet's zone)
    availability_zone: str | None = None
    #: the subnet of that zone, when it is not the run's ``subnet_id`` (one VPC for the run)
    subnet_id: str | None = None

    def __post_init__(self) -> None:
        if self.root_volume_gb < 8:
            raise ValueError(f"job {self.job_index}: root_volume_gb must be at least 8")


@dataclass(frozen=True)
class RunStackArgs:
    """What the run stack needs to know. Nothing here is a secret."""

    bucket_name: str
    repo_id: str
    run_name: str
    user: str
    instances: Sequence[InstanceArgs]
    #: the keys of the store this run's own role may touch
    scope: policies.StoreScope
    #: the store's key prefix in the bucket ("" for the whole bucket)
    store_prefix: str = ""
    #: TCP ports to open, only to ``caller_cidr``
    ports: Sequence[int] = ()
    #: the caller's public address as a /32 (or /128) network; required with ``ports``
    caller_cidr: str | None = None
    ami_id: str | None = None
    ami_parameter: str = defaults.AMI_PARAMETER
    gpu_ami_parameter: str = defaults.GPU_AMI_PARAMETER
    #: use this (bootstrap) instance profile instead of declaring a role for the run
    instance_profile_name: str | None = None
    subnet_id: str | None = None
    vpc_id: str | None = None
    #: KMS key for the root volumes; None means the account's default EBS key
    volume_kms_key_id: str | None = None
    #: the bucket's customer-managed KMS key (ARN): runners need its data keys
    bucket_kms_key_arn: str | None = None
    #: IAM fences an administrator may require (see ``stacks.policies``)
    role_path: str | None = None
    role_name_prefix: str | None = None
    permissions_boundary: str | None = None
    #: how long an instance may live, in seconds from its launch (tagged ``dstack:lifetime``)
    lifetime_seconds: int | None = None
    partition: str = "aws"
    extra_tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.instances:
            raise ValueError("run stack: at least one instance is required")
        for port in self.ports:
            if not 1 <= port <= 65535:
                raise ValueError(f"run stack: port {port} is not a TCP port")
        if self.ports:
            if not self.caller_cidr:
                raise ValueError("run stack: ports are open only to the caller: set caller_cidr")
            network = ipaddress.ip_network(self.caller_cidr, strict=True)
            if network.prefixlen != network.max_prefixlen:
                raise ValueError(
                    f"run stack: caller_cidr must be one address (/32 or /128), "
                    f"not {self.caller_cidr}"
                )
        policies.check_role_fences(self.role_path, self.role_name_prefix, self.permissions_boundary)


class RunStack(pulumi.ComponentResource):
    """A run's security group, runner role and instances."""

    security_group_id: pulumi.Output[str]
    role_name: pulumi.Output[str] | None
    instance_ids: dict[str, pulumi.Output[str]]
    public_ips: dict[str, pulumi.Output[str]]

    def __init__(
        self, name: str, args: RunStackArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("dstack:aws:RunStack", name, None, opts)
        tags = tagging.merged(
            tagging.resource_tags(
                bucket=args.bucket_name,
                prefix=args.store_prefix,
                repo=args.repo_id,
                run=args.run_name,
                user=args.user,
                component="run",
            ),
            args.extra_tags,
        )
        child = pulumi.ResourceOptions(parent=self)
        group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            description=f"dstack run {tagging.clean(args.run_name)}: no inbound but its ports",
            vpc_id=_vpc(args),
            ingress=_ingress(args),
            egress=_all_egress(),
            revoke_rules_on_delete=True,
            tags=tags,
            opts=child,
        )
        self.role_name = None
        profile_name: pulumi.Input[str]
        if args.instance_profile_name:
            profile_name = args.instance_profile_name
        else:
            role = aws.iam.Role(
                f"{name}-runner",
                description=f"dstack runner of run {tagging.clean(args.run_name)}",
                assume_role_policy=json.dumps(policies.ec2_trust_policy()),
                path=args.role_path,
                name_prefix=_name_prefix(args.role_name_prefix, args.run_name),
                permissions_boundary=args.permissions_boundary,
                tags=tags,
                opts=child,
            )
            arn = policies.bucket_arn(args.bucket_name, args.partition)
            document = policies.runner_access_policy(
                arn, args.scope, kms_key_arn=args.bucket_kms_key_arn
            )
            policy = aws.iam.RolePolicy(
                f"{name}-store",
                role=role.id,
                policy=policies.compact_json(document),
                opts=child,
            )
            profile = aws.iam.InstanceProfile(
                f"{name}-profile",
                role=role.name,
                path=args.role_path,
                name_prefix=_name_prefix(args.role_name_prefix, args.run_name),
                tags=tags,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
            )
            self.role_name = role.name
            profile_name = profile.name
        self.instance_ids = {}
        self.public_ips = {}
        for spec in args.instances:
            instance = _instance(name, spec, args, group, profile_name, tags, self)
            self.instance_ids[str(spec.job_index)] = instance.id
            self.public_ips[str(spec.job_index)] = instance.public_ip
        self.security_group_id = group.id
        self.register_outputs(
            {
                "security_group_id": self.security_group_id,
                "instance_ids": self.instance_ids,
                "public_ips": self.public_ips,
            }
        )


def _instance(
    name: str,
    spec: InstanceArgs,
    args: RunStackArgs,
    group: aws.ec2.SecurityGroup,
    profile_name: pulumi.Input[str],
    tags: dict[str, str],
    parent: pulumi.Resource,
) -> aws.ec2.Instance:
    market = None
    if spec.interruptible:
        market = aws.ec2.InstanceInstanceMarketOptionsArgs(
            market_type="spot",
            spot_options=aws.ec2.InstanceInstanceMarketOptionsSpotOptionsArgs(
                spot_instance_type="one-time",
                instance_interruption_behavior="terminate",
            ),
        )
    return aws.ec2.Instance(
        f"{name}-job-{spec.job_index}",
        ami=_ami(args, spec),
        instance_type=spec.instance_type,
        iam_instance_profile=profile_name,
        vpc_security_group_ids=[group.id],
        subnet_id=spec.subnet_id or args.subnet_id,
        # without a subnet, EC2 launches into the default VPC's subnet of this zone
        availability_zone=None if spec.subnet_id or args.subnet_id else spec.availability_zone,
        associate_public_ip_address=True if args.ports else None,
        user_data=spec.user_data,
        user_data_replace_on_change=True,
        instance_initiated_shutdown_behavior="terminate",
        instance_market_options=market,
        metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
            http_endpoint="enabled",
            http_tokens="required",
            http_put_response_hop_limit=1,
        ),
        root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
            encrypted=True,
            kms_key_id=args.volume_kms_key_id,
            volume_size=spec.root_volume_gb,
            volume_type="gp3",
            delete_on_termination=True,
        ),
        tags={
            **tags,
            **({tagging.LIFETIME: str(args.lifetime_seconds)} if args.lifetime_seconds else {}),
            "Name": f"dstack {tagging.clean(args.run_name)} job {spec.job_index}",
        },
        volume_tags=tags,
        opts=pulumi.ResourceOptions(parent=parent),
    )


def _ami(args: RunStackArgs, spec: InstanceArgs) -> pulumi.Input[str]:
    if args.ami_id:
        return args.ami_id
    parameter = args.gpu_ami_parameter if spec.gpu else args.ami_parameter
    return aws.ssm.get_parameter_output(name=parameter).value


def _ingress(args: RunStackArgs) -> list[aws.ec2.SecurityGroupIngressArgs]:
    """The asked ports from the caller only; and, for a multi-node run, its nodes from each
    other (members of this same group: the rendezvous port is chosen at run time)."""
    rules = []
    if len(args.instances) > 1:
        rules.append(
            aws.ec2.SecurityGroupIngressArgs(
                # EC2 refuses apostrophes (and most punctuation) in rule descriptions
                description="nodes of this run reach each other",
                protocol="-1",
                from_port=0,
                to_port=0,
                self=True,
            )
        )
    if not args.ports or not args.caller_cidr:
        return rules
    v6 = ipaddress.ip_network(args.caller_cidr).version == 6
    return rules + [
        aws.ec2.SecurityGroupIngressArgs(
            description=f"port {port} from the submitter of the run only",
            protocol="tcp",
            from_port=port,
            to_port=port,
            cidr_blocks=None if v6 else [args.caller_cidr],
            ipv6_cidr_blocks=[args.caller_cidr] if v6 else None,
        )
        for port in args.ports
    ]


def _vpc(args: RunStackArgs) -> pulumi.Input[str] | None:
    """The configured VPC, else the subnet's own (a group in another VPC than its instance's
    subnet fails at launch), else None: the region's default VPC."""
    if args.vpc_id:
        return args.vpc_id
    if args.subnet_id:
        return aws.ec2.get_subnet_output(id=args.subnet_id).vpc_id
    return None


def _name_prefix(prefix: str | None, run_name: str) -> str | None:
    """An administrator's name prefix, followed by as much of the run name as IAM allows (the
    provider appends 26 characters, and names are at most 64)."""
    if not prefix:
        return None
    room = policies.NAME_PREFIX_MAX - len(prefix)
    return prefix + re.sub(r"[^A-Za-z0-9+=,.@_-]", "-", run_name)[: max(room, 0)]


def _all_egress() -> list[aws.ec2.SecurityGroupEgressArgs]:
    return [
        aws.ec2.SecurityGroupEgressArgs(
            description="the runner reaches the state store and package indexes",
            protocol="-1",
            from_port=0,
            to_port=0,
            cidr_blocks=["0.0.0.0/0"],
            ipv6_cidr_blocks=["::/0"],
        )
    ]
