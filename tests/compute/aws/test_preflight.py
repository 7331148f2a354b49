"""The account checks before a run's stack is created (``preflight``), against moto EC2 and IAM:
a subnet that cannot reach the package index, a region without a default VPC, and the spot
service-linked role created or explained."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from dstack.compute.aws import preflight
from dstack.compute.aws.ec2 import Ec2
from dstack.errors import ComputeError
from tests.moto_server import MotoServer


@pytest.fixture
def ec2(moto_server: MotoServer) -> Ec2:
    return Ec2("us-east-1", endpoint_url=moto_server.endpoint_url)


def _subnet(moto: MotoServer, *, route: str | None, public: bool = False) -> str:
    client = moto.client("ec2")
    vpc = client.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = client.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    if public:
        client.modify_subnet_attribute(SubnetId=subnet, MapPublicIpOnLaunch={"Value": True})
    table = client.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    client.associate_route_table(RouteTableId=table, SubnetId=subnet)
    if route == "igw":
        igw = client.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
        client.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
        client.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    elif route == "nat":
        nat = client.create_nat_gateway(SubnetId=subnet, AllocationId=client.allocate_address(
            Domain="vpc")["AllocationId"])["NatGateway"]["NatGatewayId"]  # fmt: skip
        client.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nat)
    return subnet


def test_a_subnet_without_a_route_out_is_refused(moto_server: MotoServer, ec2: Ec2) -> None:
    subnet = _subnet(moto_server, route=None)
    with pytest.raises(ComputeError, match=f"subnet {subnet} has no route to the internet"):
        preflight.check_network(ec2, subnet, public_ip=False)


def test_an_internet_gateway_needs_a_public_address(moto_server: MotoServer, ec2: Ec2) -> None:
    private = _subnet(moto_server, route="igw")
    with pytest.raises(ComputeError, match=r"no public address.*package index"):
        preflight.check_network(ec2, private, public_ip=False)
    preflight.check_network(ec2, private, public_ip=True)  # a run with ports gets one
    preflight.check_network(ec2, _subnet(moto_server, route="igw", public=True), public_ip=False)


def test_a_nat_gateway_is_enough(moto_server: MotoServer, ec2: Ec2) -> None:
    preflight.check_network(ec2, _subnet(moto_server, route="nat"), public_ip=False)


def test_an_unknown_subnet_is_named(ec2: Ec2) -> None:
    with pytest.raises(ComputeError, match="subnet subnet-0000000000000dead not found"):
        preflight.check_network(ec2, "subnet-0000000000000dead", public_ip=False)


def test_a_region_without_a_default_vpc_asks_for_a_subnet(moto_server: MotoServer) -> None:
    region = "ap-southeast-3"
    import boto3

    client = boto3.client("ec2", endpoint_url=moto_server.endpoint_url, region_name=region)
    ec2 = Ec2(region, endpoint_url=moto_server.endpoint_url)
    preflight.check_network(ec2, None, public_ip=False)  # moto's default VPC
    (vpc,) = client.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    for subnet in client.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])[
        "Subnets"
    ]:
        client.delete_subnet(SubnetId=subnet["SubnetId"])
    igws = client.describe_internet_gateways(
        Filters=[{"Name": "attachment.vpc-id", "Values": [vpc["VpcId"]]}])["InternetGateways"]  # fmt: skip
    for igw in igws:
        client.detach_internet_gateway(
            InternetGatewayId=igw["InternetGatewayId"], VpcId=vpc["VpcId"]
        )
        client.delete_internet_gateway(InternetGatewayId=igw["InternetGatewayId"])
    client.delete_vpc(VpcId=vpc["VpcId"])
    with pytest.raises(ComputeError, match=f"{region} has no default VPC: name a subnet"):
        preflight.check_network(ec2, None, public_ip=False)


def test_the_spot_role_is_created_once(moto_server: MotoServer) -> None:
    iam = moto_server.client("iam")
    preflight.ensure_spot_role(iam)
    # (moto names the role after the service, not AWSServiceRoleForEC2Spot: found by its path)
    roles = iam.list_roles(PathPrefix="/aws-service-role/spot.amazonaws.com/")["Roles"]
    assert len(roles) == 1
    preflight.ensure_spot_role(iam)  # there already: nothing to do
    assert len(iam.list_roles(PathPrefix="/aws-service-role/spot.amazonaws.com/")["Roles"]) == 1


class DeniedIam:
    """A test double for IAM as a user without IAM rights sees it: every call is denied."""

    class Denied(Exception):
        response: ClassVar[dict[str, Any]] = {
            "Error": {"Code": "AccessDenied", "Message": "denied"}
        }

    def get_role(self, **_: Any) -> None:
        raise self.Denied("An error occurred (AccessDenied) when calling GetRole")

    def create_service_linked_role(self, **_: Any) -> None:
        raise self.Denied("An error occurred (AccessDenied) when calling CreateServiceLinkedRole")


def test_without_rights_the_message_says_who_creates_the_spot_role() -> None:
    with pytest.raises(ComputeError, match="create-service-linked-role --aws-service-name spot"):
        preflight.ensure_spot_role(DeniedIam())


def test_a_run_is_checked_once_per_compute(moto_server: MotoServer) -> None:
    class Args:
        subnet_id = None
        ports: ClassVar[list[int]] = []
        instances: ClassVar[list[Any]] = [type("I", (), {"interruptible": True})()]

    calls: list[str] = []

    class Compute:
        def ec2(self) -> Ec2:
            calls.append("ec2")
            return Ec2("us-east-1", endpoint_url=moto_server.endpoint_url)

        def iam(self) -> Any:
            calls.append("iam")
            return moto_server.client("iam")

    compute = Compute()
    preflight.check_run(compute, Args())
    preflight.check_run(compute, Args())
    assert calls == ["ec2", "iam"]
