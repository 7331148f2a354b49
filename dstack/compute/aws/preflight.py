"""What the account must offer before a run's stack is created, checked with one clear message
each instead of an engine error half-way through a create:

- the network: with a subnet configured, the subnet exists and its instances can reach the
  package index the boot script installs from — a route to ``0.0.0.0/0`` through a NAT gateway
  (or another gateway), or through an internet gateway when the instance gets a public address
  (the subnet maps one on launch, or the run opens ports); without a subnet, the region has a
  default VPC (accounts made since some years may have none);
- spot: EC2 launches spot instances through the service-linked role
  ``AWSServiceRoleForEC2Spot``; if the account lacks it, it is created (once per account), and
  when these credentials may not, the message says who must and how.

Each check runs once per ``AwsCompute``; EC2 and IAM are asked through boto3. Also here: the
jobs an instance cannot serve (an app whose server it lacks), refused at submit, and the
submitter's public address for a run that opens ports.
"""

from __future__ import annotations

from typing import Any

from dstack.errors import ComputeError
from dstack.storage.s3 import aws_errors

SPOT_ROLE = "AWSServiceRoleForEC2Spot"
#: what tells this machine its public address, as AWS sees it
CHECKIP_URL = "https://checkip.amazonaws.com"
SPOT_SERVICE = "spot.amazonaws.com"


def check_run(compute: Any, args: Any) -> None:
    """Raise ``ComputeError`` when the account cannot take the run stack ``args``."""
    done: set[str] = compute.__dict__.setdefault("_preflight_done", set())
    network = f"network:{args.subnet_id}:{bool(args.ports)}"
    if network not in done:
        check_network(compute.ec2(), args.subnet_id, public_ip=bool(args.ports))
        done.add(network)
    if any(i.interruptible for i in args.instances) and "spot" not in done:
        ensure_spot_role(compute.iam())
        done.add("spot")


def require_credentials(profile: str | None) -> None:
    """ComputeError saying how to get AWS credentials when there are none (read locally,
    nothing sent): what a user must fix first, before the Pulumi engine."""
    from dstack.storage import aws_credentials_problem

    problem = aws_credentials_problem(profile)
    if problem:
        raise ComputeError(f"{problem}; `dstack run --plan WORKFLOW` works without them")


def iam_client(profile: str | None, endpoint_url: str | None = None) -> Any:
    import boto3

    session = boto3.session.Session(profile_name=profile)
    return session.client("iam", endpoint_url=endpoint_url)


def check_network(ec2: Any, subnet_id: str | None, *, public_ip: bool) -> None:
    region = ec2.region
    if not subnet_id:
        vpcs = ec2.ask("describe_vpcs", "find the default VPC",
                       Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]  # fmt: skip
        if not vpcs:
            raise ComputeError(
                f"{region} has no default VPC: name a subnet for the instances "
                "(`dstack config --subnet subnet-…`, or compute.subnet_id)"
            )
        return
    try:
        subnets = ec2.ask("describe_subnets", f"find subnet {subnet_id}", SubnetIds=[subnet_id])
    except ComputeError as exc:
        raise ComputeError(f"subnet {subnet_id} not found in {region} ({exc})") from None
    subnet = subnets["Subnets"][0]
    gateway = _default_route(ec2, subnet)
    public = public_ip or bool(subnet.get("MapPublicIpOnLaunch"))
    if gateway is None or (gateway.startswith("igw-") and not public):
        why = (
            "has no route to the internet"
            if gateway is None
            else f"reaches the internet through {gateway} but gives instances no public address"
        )
        raise ComputeError(
            f"subnet {subnet_id} {why}: the instances could not reach the package index their "
            "boot installs from. Use a subnet with a NAT gateway, or one that maps public "
            "addresses on launch"
        )


def _default_route(ec2: Any, subnet: dict[str, Any]) -> str | None:
    """The gateway of the subnet's route to 0.0.0.0/0 (its own route table, else its VPC's
    main one), or None."""
    tables = ec2.ask("describe_route_tables", "read the subnet's routes", Filters=[
        {"Name": "association.subnet-id", "Values": [subnet["SubnetId"]]}])["RouteTables"]  # fmt: skip
    if not tables:
        tables = ec2.ask("describe_route_tables", "read the VPC's main routes", Filters=[
            {"Name": "vpc-id", "Values": [subnet["VpcId"]]},
            {"Name": "association.main", "Values": ["true"]}])["RouteTables"]  # fmt: skip
    for table in tables:
        for route in table.get("Routes", []):
            if (
                route.get("DestinationCidrBlock") != "0.0.0.0/0"
                or route.get("State") == "blackhole"
            ):
                continue
            for key in ("NatGatewayId", "GatewayId", "TransitGatewayId", "InstanceId",
                        "NetworkInterfaceId", "VpcPeeringConnectionId"):  # fmt: skip
                if route.get(key) and route[key] != "local":
                    return str(route[key])
    return None


def ensure_spot_role(iam: Any) -> None:
    """Create the spot service-linked role unless the account has it."""
    try:
        iam.get_role(RoleName=SPOT_ROLE)
        return
    except Exception as exc:
        if aws_errors.error_code(exc) not in ("NoSuchEntity", "AccessDenied"):
            raise ComputeError(
                f"cannot check the spot role {SPOT_ROLE}: {aws_errors.brief(exc)}"
            ) from exc
    try:
        iam.create_service_linked_role(AWSServiceName=SPOT_SERVICE)
    except Exception as exc:
        if "has been taken" in str(exc) or aws_errors.error_code(exc) == "EntityAlreadyExists":
            return  # it exists (these credentials could not read it)
        raise ComputeError(
            f"spot instances need the service-linked role {SPOT_ROLE}, which these credentials "
            f"cannot create ({aws_errors.brief(exc)}): an administrator runs `aws iam "
            f"create-service-linked-role --aws-service-name {SPOT_SERVICE}` once per account, "
            "or the workflow drops `interruptible`"
        ) from exc


def refuse_unserved_apps(job: Any) -> None:
    """An app whose server must already be on the machine (``AppSpec.needs``: ``code``'s VS
    Code server) cannot run on an instance: the user data installs none, and the one server
    there is (openvscode-server) is released only on GitHub, which the instance's package
    indexes do not serve. Refused at submit, before anything is created or paid for."""
    for app in job.apps:
        if app.needs:
            raise ComputeError(
                f"workflow '{job.workflow}': provider {job.provider} needs "
                f"{' or '.join(app.needs)} on the machine, and AWS instances have none (dstack "
                "installs it from no package index): use provider lab, or run it on this "
                "machine with `resources: {local: true}`"
            )


def require_caller(cidr: str | None) -> str:
    """The submitter's address a run's ports open to; ComputeError saying how to name it when
    it could not be found."""
    if cidr is None:
        raise ComputeError(
            "the run opens ports, only to your public address, which could not be found "
            f"({CHECKIP_URL} did not answer): name it with DSTACK_CALLER_IP or "
            "compute.caller_ip in the config"
        )
    return cidr


def lookup_public_ip() -> str | None:
    """This machine's public address as AWS sees it; only on a real submit with ports."""
    import urllib.request

    try:
        with urllib.request.urlopen(CHECKIP_URL, timeout=5) as response:
            return str(response.read().decode().strip()) or None
    except OSError:
        return None


def caller_cidr(raw: str | None, *, lookup: bool) -> str | None:
    """``raw`` (an address, or None to ask AWS's checkip service when ``lookup``) as a /32
    (/128); ComputeError if it is not an IP address."""
    import ipaddress

    if not raw and lookup:
        raw = lookup_public_ip()
    if not raw:
        return None
    try:
        address = ipaddress.ip_address(raw.strip().split("/")[0])
    except ValueError:
        raise ComputeError(f"caller address {raw!r} is not an IP address") from None
    return f"{address}/{address.max_prefixlen}"
