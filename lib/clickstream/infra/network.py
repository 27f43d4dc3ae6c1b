"""The network, for people, read two ways.

- As deployed: `describe_network` asks EC2 (moto locally, AWS otherwise) about one VPC and returns DataFrames of
  its subnets, routes, VPC endpoints and security-group rules, with the templates' logical ids for names.
- As declared: `placement` says where the templates put an instance and whether that subnet is private, and
  `Reachability` answers "may this connection happen?" from the templates' security-group rules, both ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, NamedTuple

import pandas as pd

from clickstream.infra.checks import WORLD, GroupRule, Templates
from clickstream.infra.templates import Template

OUTSIDE = ("internet", "CloudFront", "S3")  # the peers of a connection that are not our security groups
TARGET_KINDS = {"igw": "internet gateway", "vpce": "gateway endpoint", "nat": "NAT gateway"}
NAMED_TYPES = ("AWS::EC2::VPC", "AWS::EC2::Subnet", "AWS::EC2::RouteTable", "AWS::EC2::InternetGateway",
               "AWS::EC2::VPCEndpoint", "AWS::EC2::SecurityGroup", "AWS::EC2::NatGateway", "AWS::EC2::Instance")


# --- as deployed: what EC2 reports --------------------------------------------------------------------------
def logical_names(resources: Iterable[dict]) -> dict[str, str]:
    """{EC2 id: logical id} of a stack's resources (rows with type, physical_id, logical_id) of the types EC2's
    answers name; other resources (an attachment, a route) may carry the same physical id and are left out."""
    return {r["physical_id"]: r["logical_id"] for r in resources if r["type"] in NAMED_TYPES}


def tag(resource: dict, key: str) -> str | None:
    return next((t["Value"] for t in resource.get("Tags", []) if t["Key"] == key), None)


def destination(route: dict) -> str:
    """A route's destination: a CIDR, or "prefix list pl-..." (a gateway endpoint's service ranges)."""
    return (route.get("DestinationCidrBlock") or route.get("DestinationIpv6CidrBlock")
            or f"prefix list {route.get('DestinationPrefixListId')}")


def route_target(route: dict, names: dict[str, str]) -> str:
    """Where a route sends traffic, by kind and name: "local (inside the VPC)", "internet gateway InternetGateway"."""
    target = route.get("GatewayId") or route.get("NatGatewayId") or route.get("InstanceId") or "?"
    if target == "local":
        return "local (inside the VPC)"
    return f"{TARGET_KINDS.get(target.split('-')[0], 'target')} {names.get(target, target)}"


def permission_ports(permission: dict) -> str:
    """"all", one port ("443") or a range ("1024-65535") of an EC2 IpPermission."""
    if permission["IpProtocol"] == "-1":
        return "all"
    low, high = permission.get("FromPort"), permission.get("ToPort")
    return f"{low}" if low == high else f"{low}-{high}"


def permission_peers(permission: dict, group_names: dict[str, str]) -> list[str]:
    """Every peer of an EC2 IpPermission: CIDRs, security groups by name, "prefix list pl-..."."""
    peers = [r["CidrIp"] for r in permission.get("IpRanges", [])] + [r["CidrIpv6"] for r in permission.get("Ipv6Ranges", [])]
    peers += [group_names.get(p["GroupId"], p["GroupId"]) for p in permission.get("UserIdGroupPairs", [])]
    return peers + [f"prefix list {p['PrefixListId']}" for p in permission.get("PrefixListIds", [])]


def _joined(ids: Iterable[str], names: dict[str, str]) -> str:
    return ", ".join(sorted(names.get(i, i) for i in ids)) or "-"


@dataclass(frozen=True)
class Network:
    """One VPC as EC2 reports it. Names are the templates' logical ids where known, else EC2's ids."""

    vpc: pd.Series
    subnets: pd.DataFrame  # by subnet: tier, AZ, CIDR, public IPs, subnet id
    routes: pd.DataFrame  # route table, destination, target, associated subnets
    endpoints: pd.DataFrame  # by endpoint: service, type, private DNS, subnets, route tables, security groups, state
    rules: pd.DataFrame  # group, direction, protocol ("all" for every protocol), port, peer, from port, to port
    nat_gateways: list[dict]

    def ingress(self) -> pd.DataFrame:
        return self.rules[self.rules["direction"] == "ingress"]

    def rules_covering(self, port: int, direction: str = "ingress") -> pd.DataFrame:
        """The rules of one direction that let `port` through (all-protocol rules included)."""
        rules = self.rules[self.rules["direction"] == direction]
        every = rules["protocol"] == "all"
        return rules[every | ((rules["from port"] <= port) & (port <= rules["to port"]))]


def describe_network(ec2: Any, vpc_id: str, names: dict[str, str] | None = None) -> Network:
    """The VPC `vpc_id` through EC2's describe calls; `names` maps EC2 ids to the templates' logical ids (a stack's
    physical -> logical resource ids)."""
    names = dict(names or {})
    in_vpc = [{"Name": "vpc-id", "Values": [vpc_id]}]
    (vpc,) = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"]

    def attribute(name: str) -> bool:
        key = name[0].upper() + name[1:]
        return ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute=name)[key]["Value"]

    vpc_row = pd.Series({"VPC id": vpc_id, "CIDR": vpc["CidrBlock"], "DNS support": attribute("enableDnsSupport"),
                         "DNS hostnames": attribute("enableDnsHostnames")}, name=names.get(vpc_id, "VPC"))
    subnets = pd.DataFrame(
        [{"subnet": names.get(s["SubnetId"], s["SubnetId"]), "tier": tag(s, "clickstream:tier"), "AZ": s["AvailabilityZone"],
          "CIDR": s["CidrBlock"], "public IPs": s["MapPublicIpOnLaunch"], "subnet id": s["SubnetId"]}
         for s in ec2.describe_subnets(Filters=in_vpc)["Subnets"]],
        columns=["subnet", "tier", "AZ", "CIDR", "public IPs", "subnet id"]).set_index("subnet").sort_index()
    tables = ec2.describe_route_tables(Filters=in_vpc)["RouteTables"]
    routes = pd.DataFrame(
        [{"route table": names.get(t["RouteTableId"], "(main table, created with the VPC)"),
          "destination": destination(route), "target": route_target(route, names),
          "associated subnets": _joined((a["SubnetId"] for a in t["Associations"] if a.get("SubnetId")), names)}
         for t in tables for route in t["Routes"]],
        columns=["route table", "destination", "target", "associated subnets"],
    ).sort_values(["route table", "destination"], ignore_index=True)
    groups = ec2.describe_security_groups(Filters=in_vpc)["SecurityGroups"]
    group_names = {g["GroupId"]: g["GroupName"] for g in groups}
    endpoints = pd.DataFrame(
        [{"endpoint": names.get(e["VpcEndpointId"], e["VpcEndpointId"]), "service": e["ServiceName"],
          "type": e["VpcEndpointType"], "private DNS": e.get("PrivateDnsEnabled", False),
          "subnets": _joined(e.get("SubnetIds", []), names), "route tables": _joined(e.get("RouteTableIds", []), names),
          "security groups": _joined((g["GroupId"] for g in e.get("Groups", [])), group_names), "state": e["State"]}
         for e in ec2.describe_vpc_endpoints(Filters=in_vpc)["VpcEndpoints"]],
        columns=["endpoint", "service", "type", "private DNS", "subnets", "route tables", "security groups", "state"],
    ).set_index("endpoint").sort_values(["type", "service"])
    rules = pd.DataFrame(
        [{"group": g["GroupName"], "direction": direction, "protocol": "all" if p["IpProtocol"] == "-1" else p["IpProtocol"],
          "port": permission_ports(p), "peer": peer, "from port": p.get("FromPort", 0), "to port": p.get("ToPort", 65535)}
         for g in groups
         for direction, key in (("ingress", "IpPermissions"), ("egress", "IpPermissionsEgress"))
         for p in g[key] for peer in permission_peers(p, group_names)],
        columns=["group", "direction", "protocol", "port", "peer", "from port", "to port"])
    return Network(vpc_row, subnets, routes, endpoints, rules, ec2.describe_nat_gateways(Filters=in_vpc)["NatGateways"])


def rule_text(rule: dict) -> str:
    """One security-group rule row (describe_network's or checks.security_group_rows') as "tcp 443 to S3 (prefix
    list)", "all traffic from sg_x"."""
    word = "to" if rule["direction"] == "egress" else "from"
    if rule["protocol"] in ("-1", "all"):
        return f"all traffic {word} {rule['peer']}"
    return f"{rule['protocol']} {rule['port']} {word} {rule['peer']}"


def compare_rules(declared: Iterable[dict], described: Network, direction: str = "egress") -> pd.DataFrame:
    """For each group the declared rows name (checks.security_group_rows), its rules of one direction as the
    templates declare them and as EC2 reports them, each a sorted "; "-joined list of rule_text."""
    label = "outbound" if direction == "egress" else "inbound"
    texts: dict[str, list[str]] = {}
    for rule in declared:
        if rule["direction"] == direction:
            texts.setdefault(rule["group"], []).append(rule_text(rule))
    read_back = described.rules[described.rules["direction"] == direction]
    return pd.DataFrame(
        [{"group": group, f"{label} (template)": "; ".join(sorted(rules)),
          f"{label} (read back)": "; ".join(sorted(map(rule_text, read_back[read_back["group"] == group].to_dict("records"))))}
         for group, rules in sorted(texts.items())],
        columns=["group", f"{label} (template)", f"{label} (read back)"]).set_index("group")


def describe_instance(ec2: Any, instance_id: str, names: dict[str, str] | None = None) -> pd.Series:
    """One instance as EC2 reports it: Name tag, state, type, subnet, addresses, instance profile."""
    names = names or {}
    (instance,) = [i for r in ec2.describe_instances(InstanceIds=[instance_id])["Reservations"] for i in r["Instances"]]
    return pd.Series({
        "name": tag(instance, "Name"),
        "state": instance["State"]["Name"],
        "type": instance["InstanceType"],
        "subnet": names.get(instance["SubnetId"], instance["SubnetId"]),
        "subnet id": instance["SubnetId"],
        "private address": instance.get("PrivateIpAddress"),
        "public address": instance.get("PublicIpAddress", "none"),
        "instance profile": instance.get("IamInstanceProfile", {}).get("Arn", "none").rsplit("/", 1)[-1],
    }, name=names.get(instance_id, instance_id))


# --- as declared: what the templates say --------------------------------------------------------------------
def vpc_cidr(templates: Templates) -> str:
    """The CIDR of the templates' one VPC, resolved with the deploy defaults."""
    ((template, vpc),) = [(t, res) for t in templates for res in t.of_type("AWS::EC2::VPC").values()]
    return templates.text(template, vpc["Properties"]["CidrBlock"])


def template_named(templates: Templates, stem: str) -> Template:
    return next(t for t in templates if t.stem == stem)


def placement(templates: Templates, stem: str, logical_id: str) -> dict[str, Any]:
    """Where template `stem` puts instance `logical_id`: its Name tag, default type, subnet and security groups, and
    whether the subnet is private as the checks mean it (no public IPs, no route out of the VPC), with why not."""
    template = template_named(templates, stem)
    props = template.props(logical_id)
    subnet = templates.node(template, props["SubnetId"])
    problems = templates.subnet_problems(subnet, templates.route_tables())
    return {
        "instance": logical_id,
        "template": template.name,
        "Name tag": next(templates.text(template, t["Value"]) for t in props.get("Tags", []) if t["Key"] == "Name"),
        "instance type (default)": templates.text(template, props["InstanceType"]),
        "subnet": subnet[1] if subnet else "?",
        "security groups": ", ".join(templates.group_name(templates.node(template, g)) or "?" for g in props["SecurityGroupIds"]),
        "private subnet": not problems,
        "why not private": "; ".join(problems) or "-",
    }


def interface_endpoint_services(templates: Templates) -> list[str]:
    """The short service names (ssm, secretsmanager, ...) of every interface endpoint in the templates."""
    return sorted(templates.text(t, res["Properties"]["ServiceName"]).rsplit(".", 1)[-1]
                  for t in templates for res in t.of_type("AWS::EC2::VPCEndpoint").values()
                  if res["Properties"].get("VpcEndpointType") == "Interface")


def instances_with_key_pairs(templates: Templates) -> list[str]:
    return [lid for t in templates for lid, res in t.of_type("AWS::EC2::Instance").items() if "KeyName" in t.props(lid)]


class Connection(NamedTuple):
    """A connection someone might try: from a group (or an OUTSIDE peer) to another, on a TCP port; `intended`
    says whether the design means it to work."""

    source: str
    target: str
    port: int
    what: str
    intended: bool


CONNECTIONS = [
    Connection("CloudFront", "sg_oltp_webDB", 80, "CloudFront fetches a page for a customer", True),
    Connection("sg_Lambda_ETL", "sg_analytics_ShinyDWH", 5432, "the ETL loads the warehouse", True),
    Connection("sg_Lambda_ETL", "sg_vpc_endpoints", 443, "the ETL reads its secret (Secrets Manager endpoint)", True),
    Connection("sg_Lambda_ETL", "S3", 443, "the ETL reads raw events (S3 gateway endpoint)", True),
    Connection("sg_analytics_ShinyDWH", "sg_vpc_endpoints", 443, "the warehouse's SSM agent (Session Manager)", True),
    Connection("internet", "sg_oltp_webDB", 80, "someone on the internet skips CloudFront", False),
    Connection("internet", "sg_analytics_ShinyDWH", 5432, "someone on the internet tries the warehouse", False),
    Connection("internet", "sg_analytics_ShinyDWH", 8787, "someone on the internet tries the dashboard", False),
    Connection("sg_oltp_webDB", "sg_analytics_ShinyDWH", 5432, "a compromised web server tries the warehouse", False),
    Connection("internet", "sg_oltp_webDB", 22, "SSH to the web server", False),
    Connection("sg_Lambda_ETL", "internet", 443, "the ETL calls out to the internet", False),
    Connection("sg_analytics_ShinyDWH", "internet", 443, "the warehouse calls out to the internet", False),
]


class Reachability:
    """Which connections the templates' security groups let through. A connection needs both ends: the source's
    group lets it out, the destination's group lets it in. Peers are group names or one of OUTSIDE: "internet",
    "CloudFront" (its origin-facing prefix list) and "S3" (its prefix list)."""

    def __init__(self, templates: Templates):
        self.rules: list[GroupRule] = templates.security_group_rules()
        self.vpc_cidr = vpc_cidr(templates)

    def matches(self, rule: GroupRule, other: str) -> bool:
        """Does the rule's peer include `other`? A group's members live in the VPC, so the VPC's range and the
        world include every group."""
        if other == "CloudFront":
            return rule.peer == "CloudFront (prefix list)"
        if other == "internet":
            return bool(rule.cidrs & WORLD)
        if other == "S3":
            return rule.peer == "S3 (prefix list)" or bool(rule.cidrs & WORLD)
        return rule.peer == other or bool(rule.cidrs & {*WORLD, self.vpc_cidr})

    def allowed(self, group: str, direction: str, port: int, other: str) -> bool:
        """Does `group` let TCP `port` in from (or out to) `other`? Outside peers have no group to ask."""
        if group in OUTSIDE:
            return True
        return any(r.group_name == group and r.direction == direction and r.covers(port) and self.matches(r, other)
                   for r in self.rules)

    def paths(self, connections: Iterable[Connection] = CONNECTIONS) -> pd.DataFrame:
        """One row per connection: may it leave the source, enter the target, and so happen (`allowed`)?"""
        rows = pd.DataFrame(
            [{**c._asdict(), "out of the source": self.allowed(c.source, "egress", c.port, c.target),
              "into the target": self.allowed(c.target, "ingress", c.port, c.source)} for c in connections],
            columns=[*Connection._fields, "out of the source", "into the target"],
        ).rename(columns={"source": "from", "target": "to"})
        rows["allowed"] = rows["out of the source"] & rows["into the target"]
        return rows
