"""clickstream.infra.network and .iam: the network as EC2 reports it (describe_network on an in-process moto VPC),
and as the templates declare it (placement, the reachability model, each Lambda's grants), on the real templates
and on broken copies, where the answers must change."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from clickstream.infra import breakages, iam, network
from clickstream.infra.checks import ENI_ACTIONS, Templates

TEMPLATES = Path(__file__).resolve().parents[2] / "cloudformation"


@pytest.fixture(scope="module")
def real() -> Templates:
    return Templates(TEMPLATES)


def broken(tmp_path: Path, change) -> Templates:
    return Templates(breakages.broken_copy(TEMPLATES, tmp_path / "broken", change))


# --- describe_network on moto ------------------------------------------------------------------------------
@pytest.fixture
def vpc(aws_credentials):
    """A small VPC like the network stack's: a public and a private subnet, an internet gateway routed from the
    public table, an S3 gateway endpoint on the private one, an interface endpoint, two chained groups."""
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="us-east-1")
        vpc_id = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
        tier = lambda name: [{"ResourceType": "subnet", "Tags": [{"Key": "clickstream:tier", "Value": name}]}]  # noqa: E731
        public = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.20.0.0/24", AvailabilityZone="us-east-1a",
                                   TagSpecifications=tier("public"))["Subnet"]["SubnetId"]
        private = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.20.10.0/24", AvailabilityZone="us-east-1b",
                                    TagSpecifications=tier("private"))["Subnet"]["SubnetId"]
        igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
        ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc_id)
        public_table = ec2.create_route_table(VpcId=vpc_id)["RouteTable"]["RouteTableId"]
        ec2.create_route(RouteTableId=public_table, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
        ec2.associate_route_table(RouteTableId=public_table, SubnetId=public)
        private_table = ec2.create_route_table(VpcId=vpc_id)["RouteTable"]["RouteTableId"]
        ec2.associate_route_table(RouteTableId=private_table, SubnetId=private)
        s3 = ec2.create_vpc_endpoint(VpcId=vpc_id, ServiceName="com.amazonaws.us-east-1.s3", VpcEndpointType="Gateway",
                                     RouteTableIds=[private_table])["VpcEndpoint"]["VpcEndpointId"]
        etl = ec2.create_security_group(GroupName="sg_etl", Description="etl", VpcId=vpc_id)["GroupId"]
        dw = ec2.create_security_group(GroupName="sg_dw", Description="dw", VpcId=vpc_id)["GroupId"]
        ec2.authorize_security_group_ingress(GroupId=dw, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "UserIdGroupPairs": [{"GroupId": etl}]},
            {"IpProtocol": "tcp", "FromPort": 8000, "ToPort": 8100, "IpRanges": [{"CidrIp": "10.20.0.0/16"}]}])
        ssm = ec2.create_vpc_endpoint(VpcId=vpc_id, ServiceName="com.amazonaws.us-east-1.ssm", VpcEndpointType="Interface",
                                      SubnetIds=[private], SecurityGroupIds=[dw], PrivateDnsEnabled=True)["VpcEndpoint"]["VpcEndpointId"]
        names = {vpc_id: "Vpc", public: "PublicSubnetA", private: "PrivateSubnetB", igw: "InternetGateway",
                 public_table: "PublicRouteTable", private_table: "PrivateRouteTableB", s3: "S3GatewayEndpoint",
                 ssm: "SsmEndpoint"}
        yield ec2, vpc_id, names


def test_describe_network_names_subnets_routes_and_endpoints_by_logical_id(vpc):
    ec2, vpc_id, names = vpc
    described = network.describe_network(ec2, vpc_id, names)
    assert described.vpc["CIDR"] == "10.20.0.0/16" and described.vpc.name == "Vpc"
    assert described.subnets[["tier", "AZ", "CIDR"]].to_dict("index") == {
        "PrivateSubnetB": {"tier": "private", "AZ": "us-east-1b", "CIDR": "10.20.10.0/24"},
        "PublicSubnetA": {"tier": "public", "AZ": "us-east-1a", "CIDR": "10.20.0.0/24"}}
    routes = {(r["route table"], r["target"]) for r in described.routes.to_dict("records")}
    assert ("PublicRouteTable", "internet gateway InternetGateway") in routes
    assert ("PrivateRouteTableB", "gateway endpoint S3GatewayEndpoint") in routes
    assert ("PrivateRouteTableB", "local (inside the VPC)") in routes
    defaults = described.routes[described.routes["destination"] == "0.0.0.0/0"]
    assert list(defaults["route table"]) == ["PublicRouteTable"]
    s3_route = described.routes[described.routes["target"] == "gateway endpoint S3GatewayEndpoint"]
    assert s3_route["destination"].str.startswith("prefix list pl-").all()
    assert described.endpoints.loc["S3GatewayEndpoint", "route tables"] == "PrivateRouteTableB"
    assert described.endpoints.loc["SsmEndpoint", ["type", "subnets", "security groups", "private DNS"]].tolist() == [
        "Interface", "PrivateSubnetB", "sg_dw", True]
    assert described.nat_gateways == []


def test_describe_network_lists_each_rule_with_its_peer_and_ports(vpc):
    ec2, vpc_id, names = vpc
    described = network.describe_network(ec2, vpc_id, names)
    ingress = described.ingress()
    assert sorted(map(tuple, ingress[["group", "protocol", "port", "peer"]].values.tolist())) == [
        ("sg_dw", "tcp", "5432", "sg_etl"), ("sg_dw", "tcp", "8000-8100", "10.20.0.0/16")]
    assert list(described.rules_covering(8080)["port"]) == ["8000-8100"]
    assert described.rules_covering(22).empty
    out_of_etl = described.rules[(described.rules["group"] == "sg_etl") & (described.rules["direction"] == "egress")]
    assert out_of_etl[["protocol", "port", "peer"]].values.tolist() == [["all", "all", "0.0.0.0/0"]]
    assert sorted(described.rules_covering(22, "egress")["group"]) == ["default", "sg_dw", "sg_etl"]


def test_compare_rules_puts_declared_and_read_back_rules_side_by_side(vpc):
    ec2, vpc_id, names = vpc
    described = network.describe_network(ec2, vpc_id, names)
    declared = [{"group": "sg_etl", "direction": "egress", "protocol": "tcp", "port": "5432", "peer": "sg_dw"},
                {"group": "sg_etl", "direction": "egress", "protocol": "tcp", "port": "443", "peer": "S3 (prefix list)"},
                {"group": "sg_dw", "direction": "ingress", "protocol": "tcp", "port": "5432", "peer": "sg_etl"}]
    outbound = network.compare_rules(declared, described)
    assert outbound.to_dict("index") == {"sg_etl": {
        "outbound (template)": "tcp 443 to S3 (prefix list); tcp 5432 to sg_dw",
        "outbound (read back)": "all traffic to 0.0.0.0/0"}}
    inbound = network.compare_rules(declared, described, "ingress")
    assert inbound.loc["sg_dw", "inbound (read back)"] == "tcp 5432 from sg_etl; tcp 8000-8100 from 10.20.0.0/16"


def test_logical_names_keep_only_what_ec2_names():
    resources = [{"type": "AWS::EC2::InternetGateway", "physical_id": "igw-1", "logical_id": "InternetGateway"},
                 {"type": "AWS::EC2::VPCGatewayAttachment", "physical_id": "igw-1", "logical_id": "InternetGatewayAttachment"},
                 {"type": "AWS::EC2::Route", "physical_id": "rtb-1", "logical_id": "PublicDefaultRoute"},
                 {"type": "AWS::EC2::RouteTable", "physical_id": "rtb-1", "logical_id": "PublicRouteTable"}]
    assert network.logical_names(resources) == {"igw-1": "InternetGateway", "rtb-1": "PublicRouteTable"}


def test_route_targets_and_peers_for_people():
    assert network.route_target({"GatewayId": "local"}, {}) == "local (inside the VPC)"
    assert network.route_target({"NatGatewayId": "nat-0abc"}, {"nat-0abc": "Nat"}) == "NAT gateway Nat"
    assert network.route_target({"GatewayId": "vgw-1"}, {}) == "target vgw-1"
    assert network.destination({"DestinationPrefixListId": "pl-63a5400a"}) == "prefix list pl-63a5400a"
    permission = {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}], "PrefixListIds": [{"PrefixListId": "pl-1"}],
                  "UserIdGroupPairs": [{"GroupId": "sg-1"}, {"GroupId": "sg-2"}]}
    assert network.permission_peers(permission, {"sg-1": "sg_a"}) == ["0.0.0.0/0", "sg_a", "sg-2", "prefix list pl-1"]
    assert network.permission_ports(permission) == "all"
    assert network.permission_ports({"IpProtocol": "tcp", "FromPort": 1024, "ToPort": 65535}) == "1024-65535"


# --- the templates: placement, reachability -------------------------------------------------------------------
def test_placement_puts_the_warehouse_in_a_private_subnet_and_the_web_tier_in_a_public_one(real):
    dw = network.placement(real, "analytics", "DwInstance")
    assert (dw["Name tag"], dw["subnet"], dw["security groups"], dw["private subnet"]) == (
        "SBW_EC2_ShinyDWH", "PrivateSubnetA", "sg_analytics_ShinyDWH", True)
    web = network.placement(real, "frontend", "OltpInstance")
    assert not web["private subnet"] and "MapPublicIpOnLaunch" in web["why not private"]
    assert web["security groups"] == "sg_oltp_webDB"


def test_a_nat_route_makes_the_warehouse_subnet_no_longer_private(tmp_path):
    dw = network.placement(broken(tmp_path, breakages.nat_gateway), "analytics", "DwInstance")
    assert not dw["private subnet"] and "NatGateway" in dw["why not private"]


PATHS = [network.Connection(*path) for path in [
    ("CloudFront", "sg_oltp_webDB", 80, "page", True),
    ("sg_Lambda_ETL", "sg_analytics_ShinyDWH", 5432, "load", True),
    ("sg_Lambda_ETL", "S3", 443, "raw events", True),
    ("internet", "sg_oltp_webDB", 22, "ssh", False),
    ("sg_oltp_webDB", "sg_analytics_ShinyDWH", 5432, "web to warehouse", False),
    ("sg_analytics_ShinyDWH", "internet", 443, "warehouse out", False),
    ("sg_vpc_endpoints", "sg_analytics_ShinyDWH", 5432, "from the endpoints' group", False),
]]


def test_reachability_allows_only_the_designed_connections(real):
    paths = network.Reachability(real).paths(PATHS).set_index("what")
    assert set(paths.index[paths["allowed"]]) == {"page", "load", "raw events"}
    assert paths.loc["ssh", "out of the source"] and not paths.loc["ssh", "into the target"]
    assert not paths.loc["web to warehouse", "out of the source"] and not paths.loc["web to warehouse", "into the target"]
    assert not paths.loc["warehouse out", "out of the source"]


def test_the_designs_connections_are_allowed_exactly_when_intended(real):
    paths = network.Reachability(real).paths()
    assert len(paths) == len(network.CONNECTIONS) and paths["intended"].any() and not paths["intended"].all()
    assert (paths["allowed"] == paths["intended"]).all(), paths[paths["allowed"] != paths["intended"]]


def test_reachability_follows_a_broken_copy(tmp_path):
    ssh = network.Reachability(broken(tmp_path / "ssh", breakages.ssh_from_anywhere)).paths(PATHS).set_index("what")
    assert ssh.loc["ssh", "allowed"]
    vpc_open = network.Reachability(broken(tmp_path / "vpc", breakages.warehouse_open_to_the_vpc))
    assert vpc_open.allowed("sg_analytics_ShinyDWH", "ingress", 5432, "sg_oltp_webDB")
    assert vpc_open.allowed("sg_analytics_ShinyDWH", "ingress", 5432, "sg_vpc_endpoints")
    assert not vpc_open.allowed("sg_analytics_ShinyDWH", "ingress", 5432, "internet")
    assert not vpc_open.allowed("sg_analytics_ShinyDWH", "ingress", 5433, "sg_Lambda_ETL")


def test_templates_facts_for_session_manager(real, tmp_path):
    assert network.interface_endpoint_services(real) == ["ec2messages", "secretsmanager", "ssm", "ssmmessages"]
    assert network.instances_with_key_pairs(real) == []
    assert network.vpc_cidr(real) == "10.20.0.0/16"
    without = broken(tmp_path, breakages.no_secrets_manager_endpoint)
    assert network.interface_endpoint_services(without) == ["ec2messages", "ssm", "ssmmessages"]


# --- IAM ---------------------------------------------------------------------------------------------------
def test_lambda_permissions_list_each_grant_of_each_function(real):
    grants = iam.lambda_permissions(real)
    actions = {}
    for row in grants:
        actions.setdefault(row["function"], set()).add(row["action"])
    assert actions["IngestFunction (ingest)"] == {"s3:PutObject", "logs:CreateLogStream", "logs:PutLogEvents"}
    assert {"s3:ListBucket", "s3:GetObject", "secretsmanager:GetSecretValue", *ENI_ACTIONS} <= actions["EtlFunction (etl)"]
    listing = next(r for r in grants if r["action"] == "s3:ListBucket")
    assert "events/" in listing["condition"] and listing["role"] == "EtlFunctionRole"
    assert {r["resource"] for r in grants if r["action"] in ENI_ACTIONS} == {"*"}


def test_lambda_permissions_show_a_widened_grant(tmp_path):
    grants = iam.lambda_permissions(broken(tmp_path, breakages.s3_star_for_the_etl))
    assert {r["action"] for r in grants if r["statement"] == "ReadRawEvents"} == {"s3:*"}


def test_trust_and_managed_policies(real):
    assert iam.lambda_trust(real) == {"EtlFunction": [{"Service": "lambda.amazonaws.com"}],
                                      "IngestFunction": [{"Service": "lambda.amazonaws.com"}]}
    assert iam.managed_policies(real, "analytics", "DwInstanceRole") == ["AmazonSSMManagedInstanceCore"]
    assert iam.managed_policies(real, "analytics", "EtlFunctionRole") == []
    assert iam.as_list("a") == ["a"] and iam.as_list(["a", "b"]) == ["a", "b"]
