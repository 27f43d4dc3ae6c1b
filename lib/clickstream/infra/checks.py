"""Security checks on the CloudFormation templates themselves, for a folder of templates.

moto drops most security properties (notes/local-aws.md), so a green local deploy proves little: these checks
read the templates. Two kinds:

- the policy rules (`policy_rules`): general rules as cfn-lint custom rules in
  `cloudformation/policy-rules.cfnlint`, waived only in `cloudformation/policy-suppressions.toml`;
- the architecture's own rules: one function per rule below, each returning readable findings (empty: the rule
  holds). They read the templates through clickstream.infra.templates (its loader, model and evaluator, here
  symbolic: `Symbols`), following Ref, GetAtt and Fn::ImportValue across the folder's templates as
  CloudFormation would with the stacks deployed under the names `clickstream-<file stem>` (the names
  `clickstream deploy` and the local stack use).

`python -m clickstream.infra.checks DIR` runs them all (`make check-templates TEMPLATES_DIR=DIR`).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Union

from cfnlint.api import ManualArgs, lint_file

from clickstream.infra.templates import (Evaluator, ExportTable, Template, TemplateSet, get_att_arguments,
                                         image_parameters, managed_prefix_lists, parameter_values, references,
                                         PSEUDO_PARAMETERS)
from clickstream.settings import project_root

WEB_TIER_GROUP = "sg_oltp_webDB"
ETL_GROUP = "sg_Lambda_ETL"
DW_GROUP = "sg_analytics_ShinyDWH"
DW_INSTANCE_NAME = "SBW_EC2_ShinyDWH"
RAW_PREFIX = "events/"
WORLD = {"0.0.0.0/0", "::/0"}
CLOUDFRONT_ORIGIN_PREFIX_LIST = "com.amazonaws.global.cloudfront.origin-facing"
# The actions Lambda needs to manage a VPC function's network interfaces; they only work on Resource "*".
ENI_ACTIONS = frozenset({
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
})
SECRET_NAME = re.compile(r"pass(word|wd|phrase)|secret|(auth|api|bearer)_?token|api_?key|private_?key|credential",
                         re.IGNORECASE)
# Names that contain a secret-like word but hold a reference or a setting, not a secret.
NOT_A_SECRET = re.compile(
    r"(arn|id|ids|name|length|policy|template|key|validitydays|characters|auth|stackname)$|^generate", re.IGNORECASE
)
DYNAMIC_REFERENCE = re.compile(r"^\{\{resolve:(secretsmanager|ssm-secure):")
CREDENTIAL_TEXT = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b|-----BEGIN [A-Z ]*PRIVATE KEY-----")
PASSWORD_LITERAL = re.compile(r"password\s*(=|\s)\s*['\"]?(?![$:{'\"])[^\s'\"]{6,}", re.IGNORECASE)
HEREDOC = re.compile(r"<<-?\\?['\"]?(\w+)['\"]?\\?\n.*?\n\s*\1\\?\n", re.S)
ASSIGNMENT = re.compile(r"^\w+=")
CONTINUATION = re.compile(r"\\+\n")
PASSWORD_VARIABLE = re.compile(r"\$\{?\w*(_PW|PASSWORD)\b", re.IGNORECASE)
SHELL_KEYWORDS = {"if", "then", "else", "elif", "do", "!", "time"}
SHELL_BUILTINS = {"printf", "echo", "export", "local", "read", "[[", "test", "unset"}
NO_VALUE = object()
DEFAULT_RULES = "policy-rules.cfnlint"
DEFAULT_SUPPRESSIONS = "policy-suppressions.toml"


@dataclass(frozen=True)
class Finding:
    rule: str
    template: str
    resource: str
    message: str

    def __str__(self) -> str:
        return f"{self.template} {self.resource}: {self.message}"


Node = tuple[Template, str]  # a resource: its template and logical id


class Symbols(Evaluator):
    """One template's values as canonical text: literals as they are, parameters by their value for aws without
    a parameters file (the template's Default; unset: {param:Name}), pseudo parameters and resources as symbols
    ({network.yaml#Vpc}), imports followed to the exporting template ({import:Name} when none exports it)."""

    def __init__(self, template: Template, parameters: dict[str, Any], stack_name: str, export_table: ExportTable):
        self.template, self.parameters, self.stack_name, self.export_table = template, parameters, stack_name, export_table

    def string(self, value: Any) -> str:
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, list):
            return ",".join(self.string(item) for item in value)
        return str(value)

    def mapping(self, value: dict) -> str:
        return "{" + json.dumps(value, sort_keys=True, default=str) + "}"

    def unsupported(self, fn: str, value: dict) -> str:
        return self.string(self.holds(value)) if fn in ("Fn::And", "Fn::Or") else self.mapping(value)

    def condition(self, name: str) -> bool:
        return self.holds({"Condition": name})

    def holds(self, value: Any) -> bool:
        """A condition (Fn::Equals, Fn::Not, Fn::And, Fn::Or, Condition) at the parameters' values; an unknown
        condition holds (cfn-lint reports it)."""
        if not isinstance(value, dict) or len(value) != 1:
            return self.string(self.resolve(value)) == "true"
        (fn, arg), = value.items()
        if fn == "Condition":
            condition = (self.template.body.get("Conditions") or {}).get(arg)
            return condition is None or self.holds(condition)
        if fn == "Fn::Equals":
            return self.text(arg[0]) == self.text(arg[1])
        if fn == "Fn::Not":
            return not self.holds(arg[0])
        if fn in ("Fn::And", "Fn::Or"):
            return (all if fn == "Fn::And" else any)(self.holds(item) for item in arg)
        return self.string(self.resolve(value)) == "true"

    def deployed(self, node: Any) -> Any:
        """`node` as deployed: each Fn::If replaced by its branch, AWS::NoValue left out (NO_VALUE for the node)."""
        if isinstance(node, list):
            return [item for item in map(self.deployed, node) if item is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if node == {"Ref": "AWS::NoValue"}:
            return NO_VALUE
        if len(node) == 1 and "Fn::If" in node:
            name, when_true, when_false = node["Fn::If"]
            return self.deployed(when_true if self.holds({"Condition": name}) else when_false)
        return {key: item for key, item in ((k, self.deployed(v)) for k, v in node.items()) if item is not NO_VALUE}

    def ref(self, name: str) -> str:
        pseudo = {"AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": self.stack_name}
        if name in pseudo:
            return pseudo[name]
        if name.startswith("AWS::"):
            return "{" + name + "}"
        if name in self.parameters:
            value = self.parameters[name]
            return self.string(value) if value is not None else f"{{param:{name}}}"
        return f"{{{self.template.name}#{name}}}"

    def get_att(self, logical_id: str, attribute: str) -> str:
        resource_type = self.template.resources.get(logical_id, {}).get("Type")
        if resource_type == "AWS::S3::Bucket" and attribute == "Arn":
            return f"arn:aws:s3:::{{{self.template.name}#{logical_id}}}"
        return f"{{{self.template.name}#{logical_id}.{attribute}}}"

    def import_value(self, name: str) -> str:
        return self.string(self.export_table.value(name)) if name in self.export_table else f"{{import:{name}}}"


class Templates(TemplateSet):
    """Every `*.yaml` template of a folder, each with its Symbols (stacks named as `clickstream deploy` names
    them), sharing one export table."""

    def __init__(self, folder: Path):
        super().__init__(folder)
        self.exports = ExportTable()
        names = self.stack_names
        self.symbols = {template.name: Symbols(template, parameter_values(template, "aws", names), names[template.stem],
                                               self.exports) for template in self.templates}
        for template in self.templates:
            self._deploy_defaults(template)
        self.exports.update(ExportTable(self.symbols.values()))

    def _deploy_defaults(self, template: Template) -> None:
        """The rules judge the stacks deployed with the defaults: resources whose Condition does not hold are left
        out, every Fn::If is its branch (a parameter that switches a rule off must default to on)."""
        symbols = self.symbols[template.name]
        for section in ("Resources", "Outputs"):
            if template.body.get(section):
                template.body[section] = {
                    key: symbols.deployed(item) for key, item in template.body[section].items()
                    if "Condition" not in item or symbols.holds({"Condition": item["Condition"]})}

    def text(self, template: Template, value: Any) -> str:
        """A canonical string for a value (see Symbols)."""
        return self.symbols[template.name].text(value)

    def get_att(self, template: Template, logical_id: str, attribute: str) -> str:
        return self.symbols[template.name].get_att(logical_id, attribute)

    def node(self, template: Template, value: Any) -> Node | None:
        """The resource a Ref, GetAtt or ImportValue (of an export that is a Ref or GetAtt) points to."""
        if isinstance(value, dict) and len(value) == 1:
            (fn, arg), = value.items()
            if fn == "Ref" and isinstance(arg, str) and arg in template.resources:
                return template, arg
            if fn == "Fn::GetAtt":
                logical_id = get_att_arguments(arg)[0]
                return (template, logical_id) if logical_id in template.resources else None
            if fn == "Fn::ImportValue" and (exported := self.exports.get(self.text(template, arg))):
                exporter, key = exported
                return self.node(exporter.template, exporter.template.outputs[key]["Value"])
        return None

    # --- network facts shared by several rules -------------------------------------------------------
    def security_group_rules(self) -> list["GroupRule"]:
        rules = []
        for template in self.templates:
            for lid, group in template.of_type("AWS::EC2::SecurityGroup").items():
                props = group.get("Properties") or {}
                for direction, key in (("ingress", "SecurityGroupIngress"), ("egress", "SecurityGroupEgress")):
                    for rule in props.get(key) or []:
                        rules.append(GroupRule(self, template, lid, (template, lid), direction, rule))
            for resource_type, direction, group_key in (
                ("AWS::EC2::SecurityGroupIngress", "ingress", "GroupId"),
                ("AWS::EC2::SecurityGroupEgress", "egress", "GroupId"),
            ):
                for lid, resource in template.of_type(resource_type).items():
                    props = resource.get("Properties") or {}
                    rules.append(GroupRule(self, template, lid, self.node(template, props.get(group_key)), direction, props))
        return rules

    def group_name(self, node: Node | None) -> str | None:
        if node is None:
            return None
        template, lid = node
        return self.text(template, (template.resources[lid].get("Properties") or {}).get("GroupName", lid))

    def route_tables(self) -> dict[tuple[str, str], "RouteTable"]:
        tables: dict[tuple[str, str], RouteTable] = {}
        for template in self.templates:
            for lid in template.of_type("AWS::EC2::RouteTable"):
                tables[(template.name, lid)] = RouteTable(template, lid, [], [], [], [])
        for template in self.templates:
            for lid, res in template.of_type("AWS::EC2::SubnetRouteTableAssociation").items():
                props = res.get("Properties") or {}
                table, subnet = self.node(template, props.get("RouteTableId")), self.node(template, props.get("SubnetId"))
                if table and (table[0].name, table[1]) in tables:
                    tables[(table[0].name, table[1])].subnets.append(subnet)
            for lid, res in template.of_type("AWS::EC2::Route").items():
                table = self.node(template, (res.get("Properties") or {}).get("RouteTableId"))
                if table and (table[0].name, table[1]) in tables:
                    tables[(table[0].name, table[1])].routes.append((template, lid))
            for resource_type, found in (("AWS::EC2::VPCEndpoint", "endpoints"),
                                         ("AWS::EC2::VPNGatewayRoutePropagation", "propagations")):
                for lid, res in template.of_type(resource_type).items():
                    for value in (res.get("Properties") or {}).get("RouteTableIds") or []:
                        table = self.node(template, value)
                        if table and (table[0].name, table[1]) in tables:
                            getattr(tables[(table[0].name, table[1])], found).append((template, lid))
        return tables

    def maps_public_ip(self, subnet: Node) -> bool:
        template, lid = subnet
        return self.text(template, (template.resources[lid].get("Properties") or {}).get("MapPublicIpOnLaunch", False)) == "true"

    def subnet_problems(self, subnet: Node | None, tables: dict) -> list[str]:
        """Why a subnet is not private (empty: it is)."""
        if subnet is None or subnet[0].resources[subnet[1]].get("Type") != "AWS::EC2::Subnet":
            return ["its subnet is not a subnet declared in these templates, so it cannot be shown to be private"]
        problems = []
        if self.maps_public_ip(subnet):
            problems.append(f"subnet {subnet[1]} ({subnet[0].name}) gives public IPs (MapPublicIpOnLaunch)")
        for table in tables.values():
            if any(s is not None and (s[0].name, s[1]) == (subnet[0].name, subnet[1]) for s in table.subnets):
                for template, route in table.routes:
                    problems.append(f"subnet {subnet[1]} is routed by {table.logical_id}, which has route {route} "
                                    f"to {self.route_target(template, route)}")
        return problems

    def route_target(self, template: Template, route: str) -> str:
        props = template.resources[route].get("Properties") or {}
        destination = next((self.text(template, props[k]) for k in props if k.startswith("Destination")), "?")
        target = next((f"{k} {self.text(template, props[k])}" for k in props
                       if k not in ("RouteTableId",) and not k.startswith("Destination")), "?")
        return f"{destination} via {target}"


@dataclass
class RouteTable:
    template: Template
    logical_id: str
    subnets: list  # Node | None (an association whose subnet could not be followed)
    routes: list  # (Template, logical id) of AWS::EC2::Route
    endpoints: list  # (Template, logical id) of gateway endpoints on this table
    propagations: list  # (Template, logical id) of VPN gateway route propagations into this table


class GroupRule:
    """One ingress or egress rule of a security group, with its values resolved."""

    def __init__(self, templates: Templates, template: Template, owner: str, group: Node | None, direction: str, rule: dict):
        self.template, self.owner, self.group, self.direction, self.rule = template, owner, group, direction, rule
        text = lambda key: templates.text(template, rule[key]) if key in rule else None  # noqa: E731
        self.protocol = (text("IpProtocol") or "").lower()
        self.from_port, self.to_port = _port(text("FromPort")), _port(text("ToPort"))
        self.cidrs = {c for c in (text("CidrIp"), text("CidrIpv6")) if c}
        self.group_name = templates.group_name(group)
        peer_group = next((rule[key] for key in ("SourceSecurityGroupId", "DestinationSecurityGroupId") if key in rule),
                          None)
        self.peer_group = templates.group_name(templates.node(template, peer_group)) if peer_group else None
        prefix_list = next((rule[key] for key in ("SourcePrefixListId", "DestinationPrefixListId") if key in rule), None)
        # The AWS-managed list a prefix-list peer names: its id is a Ref to a parameter the template maps to a name.
        self.managed_list = (managed_prefix_lists(template).get(prefix_list.get("Ref"))
                             if isinstance(prefix_list, dict) else None)

    @property
    def from_cloudfront(self) -> bool:
        return self.direction == "ingress" and self.managed_list == CLOUDFRONT_ORIGIN_PREFIX_LIST

    def covers(self, port: int) -> bool:
        if self.protocol in ("-1", "all"):
            return True
        if self.protocol not in ("tcp", "6", "udp", "17"):
            return False
        low = self.from_port if self.from_port is not None else 0
        high = self.to_port if self.to_port is not None else 65535
        return low <= port <= high or low == -1

    @property
    def peer(self) -> str:
        """The other end, for people: a security group's name, "CloudFront (prefix list)", "S3 (prefix list)" or
        the CIDRs."""
        if self.peer_group:
            return self.peer_group
        if self.from_cloudfront:
            return "CloudFront (prefix list)"
        if {"SourcePrefixListId", "DestinationPrefixListId"} & set(self.rule):
            return "S3 (prefix list)"
        return ", ".join(sorted(self.cidrs)) or "?"

    @property
    def ports(self) -> str:
        """"all", one port ("443") or a range ("1024-65535")."""
        if self.protocol in ("-1", "all") or self.from_port == -1:
            return "all"
        return f"{self.from_port}" if self.from_port == self.to_port else f"{self.from_port}-{self.to_port}"

    def row(self) -> dict[str, str]:
        return {"group": self.group_name or "?", "direction": self.direction, "protocol": self.protocol,
                "port": self.ports, "peer": self.peer, "declared in": f"{self.template.name} {self.owner}"}

    def describe(self) -> str:
        ports = f"{self.from_port}-{self.to_port}" if self.from_port != self.to_port else f"{self.from_port}"
        peer = ", ".join(sorted(self.cidrs)) or next(
            (f"{k} {json.dumps(v)}" for k, v in self.rule.items() if "SecurityGroup" in k and k != "GroupId"
             or "PrefixList" in k), "?")
        return f"{self.direction} {self.protocol or '?'} {ports} {'from' if self.direction == 'ingress' else 'to'} {peer}"


def security_group_rows(folder: "Folder") -> list[dict[str, str]]:
    """Every ingress and egress rule of every security group, as rows for people: group, direction, protocol,
    port ("all", "443", "1024-65535"), peer (a group's name, "CloudFront (prefix list)", "S3 (prefix list)" or
    CIDRs), declared in."""
    return [rule.row() for rule in _load(folder).security_group_rules()]


def _port(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


Folder = Union[Path, str, Templates]


def _load(folder: Folder) -> Templates:
    return folder if isinstance(folder, Templates) else Templates(Path(folder))


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


# =====================================================================================================
# The architecture's rules: one function each, findings empty when the rule holds.
# =====================================================================================================
def no_world_ingress_except_cloudfront_to_web(folder: Folder) -> list[Finding]:
    """Nothing admits the internet (0.0.0.0/0, ::/0 or any other public range, such as 0.0.0.0/1) and the web tier
    (sg_oltp_webDB) admits TCP 80 from CloudFront's origin-facing prefix list (a parameter named in
    Metadata.clickstream.ManagedPrefixLists) and from nothing else, nor that list anywhere else, nor another
    prefix list: the storefront is reached through CloudFront only."""
    templates = _load(folder)
    findings, web_http_from_cloudfront = [], False

    def finding(rule: GroupRule, problem: str) -> None:
        findings.append(Finding("no_world_ingress_except_cloudfront_to_web", rule.template.name, rule.owner,
                                f"{rule.describe()} (group {rule.group_name}): {problem}"))

    for rule in templates.security_group_rules():
        if rule.direction != "ingress":
            continue
        to_web = rule.group_name == WEB_TIER_GROUP
        if rule.from_cloudfront and to_web and rule.protocol in ("tcp", "6") and rule.from_port == rule.to_port == 80:
            web_http_from_cloudfront = True
        elif any(map(_public, rule.cidrs)):
            finding(rule, f"open to the internet; only CloudFront's origin-facing prefix list reaches {WEB_TIER_GROUP}")
        elif rule.from_cloudfront:
            finding(rule, f"CloudFront's origin-facing prefix list is admitted on TCP 80 of {WEB_TIER_GROUP} only")
        elif to_web and (rule.covers(80) or "SourcePrefixListId" in rule.rule):
            finding(rule, f"{WEB_TIER_GROUP} admits TCP 80 from CloudFront's origin-facing prefix list only")
    if not web_http_from_cloudfront:
        template, group = next(((t, lid) for t in templates for lid in t.of_type("AWS::EC2::SecurityGroup")
                                if templates.group_name((t, lid)) == WEB_TIER_GROUP), (None, WEB_TIER_GROUP))
        findings.append(Finding("no_world_ingress_except_cloudfront_to_web", template.name if template else "-", group,
                                f"{WEB_TIER_GROUP} does not admit TCP 80 from CloudFront's origin-facing prefix list "
                                f"({CLOUDFRONT_ORIGIN_PREFIX_LIST}): CloudFront cannot reach the storefront"))
    return findings


def _public(cidr: str) -> bool:
    """A CIDR with addresses on the internet (a symbol that cannot be read is not judged here)."""
    if cidr in WORLD:
        return True
    try:
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False
    return not (network.is_private or network.is_loopback)


def no_port_22(folder: Folder) -> list[Finding]:
    """No security group rule covers port 22 (in or out, any source) and no instance has an SSH key pair."""
    templates = _load(folder)
    findings = [
        Finding("no_port_22", rule.template.name, rule.owner, f"{rule.describe()} covers port 22 (SSH): use Session Manager")
        for rule in templates.security_group_rules()
        if rule.covers(22) and not (rule.direction == "egress" and rule.cidrs <= {"127.0.0.1/32"} and rule.cidrs)
    ]
    for template in templates:
        for lid, res in template.of_type("AWS::EC2::Instance").items():
            if "KeyName" in (res.get("Properties") or {}):
                findings.append(Finding("no_port_22", template.name, lid, "has an SSH key pair (KeyName): use Session Manager"))
    return findings


def _dw_instances(templates: Templates) -> list[Node]:
    found = []
    for template in templates:
        for lid, res in template.of_type("AWS::EC2::Instance").items():
            props = res.get("Properties") or {}
            names = {templates.text(template, tag.get("Value")) for tag in props.get("Tags") or [] if tag.get("Key") == "Name"}
            groups = {templates.group_name(templates.node(template, g)) for g in props.get("SecurityGroupIds") or []}
            if DW_INSTANCE_NAME in names or DW_GROUP in groups:
                found.append((template, lid))
    return found


def _function_source(res: dict) -> str:
    return str(((res.get("Metadata") or {}).get("clickstream") or {}).get("Source", "")).rstrip("/").rsplit("/", 1)[-1]


def _etl_functions(templates: Templates) -> list[Node]:
    found = []
    for template in templates:
        for lid, res in template.of_type("AWS::Lambda::Function").items():
            props = res.get("Properties") or {}
            groups = {templates.group_name(templates.node(template, g))
                      for g in _as_list((props.get("VpcConfig") or {}).get("SecurityGroupIds") or [])}
            name = templates.text(template, props.get("FunctionName", ""))
            if _function_source(res) == "etl" or "SBW_Lamda_ETL" in name or ETL_GROUP in groups:
                found.append((template, lid))
    return found


def analytics_only_in_private_subnets(folder: Folder) -> list[Finding]:
    """The warehouse instance SBW_EC2_ShinyDWH and the ETL Lambda run only in private subnets: subnets that
    give no public IPs and whose route tables route nowhere (no internet gateway, no NAT)."""
    templates = _load(folder)
    tables = templates.route_tables()
    rule = "analytics_only_in_private_subnets"
    findings = []
    instances = _dw_instances(templates)
    if not instances:
        findings.append(Finding(rule, str(templates.folder), "-", f"no warehouse instance ({DW_INSTANCE_NAME}) found"))
    for template, lid in instances:
        props = template.resources[lid].get("Properties") or {}
        subnets = [props["SubnetId"]] if "SubnetId" in props else []
        for interface in props.get("NetworkInterfaces") or []:
            subnets.append(interface.get("SubnetId"))
            if templates.text(template, interface.get("AssociatePublicIpAddress", False)) == "true":
                findings.append(Finding(rule, template.name, lid, "the warehouse gets a public IP (AssociatePublicIpAddress)"))
        if not subnets:
            findings.append(Finding(rule, template.name, lid, "the warehouse names no subnet (it would land in a default, public one)"))
        for subnet in subnets:
            for problem in templates.subnet_problems(templates.node(template, subnet), tables):
                findings.append(Finding(rule, template.name, lid, f"the warehouse is not in a private subnet: {problem}"))
    functions = _etl_functions(templates)
    if not functions:
        findings.append(Finding(rule, str(templates.folder), "-", "no ETL function found"))
    for template, lid in functions:
        vpc = (template.resources[lid].get("Properties") or {}).get("VpcConfig") or {}
        subnets = vpc.get("SubnetIds")
        if not subnets:
            findings.append(Finding(rule, template.name, lid, "the ETL function has no VpcConfig.SubnetIds"))
            continue
        if not isinstance(subnets, list):
            findings.append(Finding(rule, template.name, lid, "the ETL's subnets are not listed one by one, so they "
                                                              "cannot be shown to be private"))
            continue
        for subnet in subnets:
            for problem in templates.subnet_problems(templates.node(template, subnet), tables):
                findings.append(Finding(rule, template.name, lid, f"the ETL is not in a private subnet: {problem}"))
    return findings


def private_route_tables_stay_in_vpc(folder: Folder) -> list[Finding]:
    """A route table that serves any subnet without public IPs (or no subnet) has the S3 gateway endpoint and no
    route at all besides the VPC's local one and that endpoint's: no default route, no internet or NAT gateway,
    no propagated VPN routes."""
    templates = _load(folder)
    rule = "private_route_tables_stay_in_vpc"
    findings = []
    for table in templates.route_tables().values():
        public = bool(table.subnets) and all(s is not None and templates.maps_public_ip(s) for s in table.subnets)
        if public:
            continue
        for template, route in table.routes:
            findings.append(Finding(rule, template.name, route, f"private route table {table.logical_id} routes "
                                                                f"{templates.route_target(template, route)}"))
        for template, propagation in table.propagations:
            findings.append(Finding(rule, template.name, propagation, f"propagates a VPN gateway's routes into private "
                                                                      f"route table {table.logical_id}"))
        services = []
        for template, endpoint in table.endpoints:
            services.append(service := _endpoint_service(templates, template, endpoint))
            if service != "s3":
                findings.append(Finding(rule, template.name, endpoint, f"private route table {table.logical_id} routes "
                                                                       f"to gateway endpoint {service}; only S3's is allowed"))
        if "s3" not in services:
            findings.append(Finding(rule, table.template.name, table.logical_id, "private route table without the S3 "
                                                                                 "gateway endpoint (S3 is out of reach)"))
    return findings


def _endpoint_service(templates: Templates, template: Template, endpoint: str) -> str:
    """The service of a VPC endpoint, "s3" for com.amazonaws.<region>.s3."""
    return templates.text(template, template.props(endpoint).get("ServiceName", "")).rsplit(".", 1)[-1]


def no_nat_gateway(folder: Folder) -> list[Finding]:
    """No NAT gateway, no route to one, and no NAT instance (SourceDestCheck false)."""
    templates = _load(folder)
    findings = []
    for template in templates:
        for lid in template.of_type("AWS::EC2::NatGateway"):
            findings.append(Finding("no_nat_gateway", template.name, lid, "is a NAT gateway: the private subnets reach "
                                                                          "AWS through VPC endpoints"))
        for lid, res in template.of_type("AWS::EC2::Route").items():
            if "NatGatewayId" in (res.get("Properties") or {}):
                findings.append(Finding("no_nat_gateway", template.name, lid, "routes to a NAT gateway"))
        for lid, res in template.of_type("AWS::EC2::Instance").items():
            if templates.text(template, (res.get("Properties") or {}).get("SourceDestCheck", True)) == "false":
                findings.append(Finding("no_nat_gateway", template.name, lid, "SourceDestCheck false: a NAT instance"))
    return findings


def _key(node: Node | None) -> tuple[str, str] | None:
    return (node[0].name, node[1]) if node else None


def _instance_groups(templates: Templates, template: Template, lid: str) -> set[tuple[str, str] | None]:
    props = template.props(lid)
    values = list(props.get("SecurityGroupIds") or [])
    for interface in props.get("NetworkInterfaces") or []:
        values += interface.get("GroupSet") or []
    return {_key(templates.node(template, value)) for value in values}


def _parameter_port(templates: Templates, template: Template, name: str) -> int | None:
    return _port(templates.text(template, {"Ref": name})) if name in template.parameters else None


def _warehouse_ingress(templates: Templates, port_parameter: str) -> Iterable[tuple[Node, int | None, list]]:
    """(the warehouse instance, the port its template's `port_parameter` gives, the ingress rules of its groups and
    those whose group cannot be followed, which cannot be shown not to be its)."""
    ingress = [r for r in templates.security_group_rules() if r.direction == "ingress"]
    for template, lid in _dw_instances(templates):
        groups = _instance_groups(templates, template, lid) | {None}
        yield (template, lid), _parameter_port(templates, template, port_parameter), \
            [r for r in ingress if _key(r.group) in groups]


def warehouse_postgres_admits_only_etl(folder: Folder) -> list[Finding]:
    """The warehouse's security groups admit its PostgreSQL port (DwPort) from sg_Lambda_ETL and nothing else:
    no other group, no CIDR of any size, no prefix list, no other port (the dashboard port is the next rule's)."""
    templates = _load(folder)
    rule = "warehouse_postgres_admits_only_etl"
    findings = []
    for (template, lid), port, rules in _warehouse_ingress(templates, "DwPort"):
        dashboard = _parameter_port(templates, template, "DashboardPort")
        if port is None:
            findings.append(Finding(rule, template.name, lid, "no DwPort parameter names the warehouse's port"))
            continue
        admitted = False
        for group_rule in rules:
            if dashboard is not None and group_rule.covers(dashboard) and not group_rule.covers(port):
                continue
            exact = (group_rule.protocol in ("tcp", "6") and group_rule.from_port == group_rule.to_port == port
                     and group_rule.peer_group == ETL_GROUP and not group_rule.cidrs
                     and "SourcePrefixListId" not in group_rule.rule)
            admitted |= exact
            if not exact:
                findings.append(Finding(rule, group_rule.template.name, group_rule.owner,
                                        f"{group_rule.describe()} on {group_rule.group_name}: the warehouse admits only "
                                        f"TCP {port} from {ETL_GROUP}"))
        if not admitted:
            findings.append(Finding(rule, template.name, lid, f"no rule admits {ETL_GROUP} on the warehouse's port {port}"))
    return findings


def dashboard_port_admits_nothing(folder: Folder) -> list[Finding]:
    """No security group of the warehouse admits the dashboard's port (DashboardPort) from anywhere: the dashboard
    listens on the loopback and is reached by SSM port forwarding."""
    templates = _load(folder)
    rule = "dashboard_port_admits_nothing"
    findings = []
    for (template, lid), port, rules in _warehouse_ingress(templates, "DashboardPort"):
        if port is None:
            findings.append(Finding(rule, template.name, lid, "no DashboardPort parameter names the dashboard's port"))
            continue
        findings += [Finding(rule, r.template.name, r.owner, f"{r.describe()} on {r.group_name} admits the dashboard "
                                                             f"port {port}: use SSM port forwarding")
                     for r in rules if r.covers(port)]
    return findings


def etl_runs_with_sg_lambda_etl(folder: Folder) -> list[Finding]:
    """The ETL function's security groups are sg_Lambda_ETL, and only it."""
    templates = _load(folder)
    findings = []
    for template, lid in _etl_functions(templates):
        values = (template.props(lid).get("VpcConfig") or {}).get("SecurityGroupIds") or []
        names = sorted(str(templates.group_name(templates.node(template, v))) for v in _as_list(values))
        if names != [ETL_GROUP]:
            findings.append(Finding("etl_runs_with_sg_lambda_etl", template.name, lid,
                                    f"the ETL's security groups are {names}, not [{ETL_GROUP}]"))
    return findings


def instances_imdsv2_and_encrypted_volumes(folder: Folder) -> list[Finding]:
    """Every instance (the warehouse SBW_EC2_ShinyDWH among them) requires IMDSv2 and declares its volumes
    encrypted; so is every EBS volume, attached or not."""
    templates = _load(folder)
    rule = "instances_imdsv2_and_encrypted_volumes"
    findings = []
    if not _dw_instances(templates):
        findings.append(Finding(rule, str(templates.folder), "-", f"no warehouse instance ({DW_INSTANCE_NAME}) found"))
    for template in templates:
        for lid, res in template.of_type("AWS::EC2::Instance").items():
            props = res.get("Properties") or {}
            metadata = props.get("MetadataOptions") or {}
            if templates.text(template, metadata.get("HttpTokens", "optional")) != "required":
                findings.append(Finding(rule, template.name, lid, "does not require IMDSv2 (MetadataOptions.HttpTokens)"))
            devices = [d for d in props.get("BlockDeviceMappings") or [] if "Ebs" in d]
            if not devices:
                findings.append(Finding(rule, template.name, lid, "declares no root volume, so its encryption is not shown"))
            for device in devices:
                if templates.text(template, device["Ebs"].get("Encrypted", False)) != "true":
                    findings.append(Finding(rule, template.name, lid, f"volume {device.get('DeviceName')} is not encrypted"))
        for lid, res in template.of_type("AWS::EC2::Volume").items():
            if templates.text(template, (res.get("Properties") or {}).get("Encrypted", False)) != "true":
                findings.append(Finding(rule, template.name, lid, "is an unencrypted EBS volume"))
    return findings


# An instance whose role has this managed policy is managed by Session Manager through these services.
SSM_MANAGED_POLICY = "AmazonSSMManagedInstanceCore"
SSM_SERVICES = ("ssm", "ssmmessages", "ec2messages")


def _role_of(templates: Templates, template: Template, lid: str) -> Node | None:
    """The role of a function (Role) or an instance (IamInstanceProfile's role)."""
    props = template.props(lid)
    if "Role" in props:
        return templates.node(template, props["Role"])
    profile = templates.node(template, props.get("IamInstanceProfile"))
    if profile is None:
        return None
    roles = profile[0].props(profile[1]).get("Roles") or []
    return templates.node(profile[0], roles[0]) if roles else None


def _role_statements(role: Node) -> Iterable[tuple[Template, str, dict]]:
    """(template, declaring resource, statement) of a role's inline policies and of the policies attached to it."""
    template, role_id = role
    for policy in template.props(role_id).get("Policies") or []:
        for statement in _as_list((policy.get("PolicyDocument") or {}).get("Statement", [])):
            yield template, role_id, statement
    for policy_id, policy in template.resources.items():
        props = policy.get("Properties") or {}
        if policy.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") \
                and {"Ref": role_id} in _as_list(props.get("Roles", [])):
            for statement in _as_list((props.get("PolicyDocument") or {}).get("Statement", [])):
                yield template, policy_id, statement


def _services_needed(templates: Templates, role: Node, is_function: bool,
                     sent_by_lambda: set[tuple[str, str]] = frozenset()) -> set[str]:
    """The services a role's allowed actions call, by IAM prefix (a function's logs, network interfaces and sends to
    its failure destinations aside: Lambda makes those calls outside the function's subnets)."""
    services = set()
    for template, _, statement in _role_statements(role):
        if statement.get("Effect") != "Allow":
            continue
        resources = {templates.text(template, r) for r in _as_list(statement.get("Resource", []))}
        for action in _as_list(statement.get("Action", [])):
            text = templates.text(template, action)
            if is_function and (text.startswith("logs:") or text in ENI_ACTIONS):
                continue
            if resources and {(text, r) for r in resources} <= sent_by_lambda:
                continue
            services.add(text.split(":", 1)[0].lower())
    managed = [templates.text(role[0], arn) for arn in role[0].props(role[1]).get("ManagedPolicyArns") or []]
    if any(arn.endswith("/" + SSM_MANAGED_POLICY) for arn in managed):
        services.update(SSM_SERVICES)
    return services


def _private_consumers(templates: Templates) -> Iterable[tuple[Template, str, list[Node], Node | None, bool]]:
    """(template, logical id, private subnets, role, is a function) of each instance and VPC function in a
    private subnet."""
    tables = templates.route_tables()
    for template in templates:
        for lid, res in [*template.of_type("AWS::EC2::Instance").items(), *template.of_type("AWS::Lambda::Function").items()]:
            props = res.get("Properties") or {}
            is_function = res["Type"] == "AWS::Lambda::Function"
            values = _as_list((props.get("VpcConfig") or {}).get("SubnetIds") or []) if is_function else \
                [props.get("SubnetId"), *(i.get("SubnetId") for i in props.get("NetworkInterfaces") or [])]
            subnets = [templates.node(template, v) for v in values if v is not None]
            private = [s for s in subnets if not templates.subnet_problems(s, tables)]
            if private:
                yield template, lid, private, _role_of(templates, template, lid), is_function


def _inside(cidr: str, vpc: str) -> bool:
    try:
        return ipaddress.ip_network(cidr).subnet_of(ipaddress.ip_network(vpc))
    except (ValueError, TypeError):
        return cidr == vpc


def private_subnets_have_their_endpoints(folder: Folder) -> list[Finding]:
    """Whatever runs in a private subnet reaches the services its role may call through interface endpoints in
    that subnet: the services of its IAM actions (Lambda's own logs and network interfaces aside; S3 through the
    gateway endpoint, checked with the route tables) and ssm, ssmmessages, ec2messages for an SSM-managed
    instance; and can reach each of them on TCP 443 (its groups let it out, the endpoint's let it in, from its
    group or from CIDRs holding every one of its subnets). Every interface endpoint is in private subnets only,
    has private DNS and admits only TCP 443 from inside its VPC."""
    templates = _load(folder)
    rule = "private_subnets_have_their_endpoints"
    findings = []
    interfaces: dict[str, list[tuple[Template, str]]] = {}
    tables = templates.route_tables()
    ingress = [r for r in templates.security_group_rules() if r.direction == "ingress"]
    for template in templates:
        for lid, res in template.of_type("AWS::EC2::VPCEndpoint").items():
            props = res.get("Properties") or {}
            if templates.text(template, props.get("VpcEndpointType", "Gateway")) != "Interface":
                continue
            interfaces.setdefault(_endpoint_service(templates, template, lid), []).append((template, lid))
            for subnet in _as_list(props.get("SubnetIds") or []):
                for problem in templates.subnet_problems(templates.node(template, subnet), tables):
                    findings.append(Finding(rule, template.name, lid, f"is not in a private subnet: {problem}"))
            if templates.text(template, props.get("PrivateDnsEnabled", False)) != "true":
                findings.append(Finding(rule, template.name, lid, "has no private DNS (PrivateDnsEnabled)"))
            vpc = templates.node(template, props.get("VpcId"))
            vpc_cidr = templates.text(vpc[0], vpc[0].props(vpc[1]).get("CidrBlock")) if vpc else "?"
            groups = {_key(templates.node(template, g)) for g in props.get("SecurityGroupIds") or []}
            if not groups:
                findings.append(Finding(rule, template.name, lid, "has no security group of its own (the VPC's default)"))
            for r in ingress:
                if _key(r.group) not in groups:
                    continue
                from_vpc = (r.cidrs and all(_inside(c, vpc_cidr) for c in r.cidrs)) or r.peer_group is not None
                if not (r.protocol in ("tcp", "6") and r.from_port == r.to_port == 443 and from_vpc):
                    findings.append(Finding(rule, r.template.name, r.owner, f"{r.describe()} on endpoint {lid}: endpoints "
                                                                            f"admit TCP 443 from the VPC ({vpc_cidr}) only"))
    rules = templates.security_group_rules()
    for template, lid, subnets, role, is_function in _private_consumers(templates):
        if role is None:
            continue
        sent_by_lambda = _failure_destinations(templates, template, lid) if is_function else set()
        consumer = _Side(_consumer_groups(templates, template, lid), _cidrs(templates, subnets))
        for service in sorted(_services_needed(templates, role, is_function, sent_by_lambda) - {"s3"}):
            covered = {_key(templates.node(t, s)) for t, e in interfaces.get(service, [])
                       for s in _as_list(t.props(e).get("SubnetIds") or [])}
            for subnet in subnets:
                if _key(subnet) not in covered:
                    findings.append(Finding(rule, template.name, lid, f"its role calls {service}, but private subnet "
                                                                      f"{subnet[1]} has no {service} interface endpoint"))
            for t, endpoint in interfaces.get(service, []):
                props = t.props(endpoint)
                side = _Side({templates.group_name(templates.node(t, g)) for g in props.get("SecurityGroupIds") or []},
                             _cidrs(templates, [templates.node(t, s) for s in _as_list(props.get("SubnetIds") or [])]))
                blocked = [f"{', '.join(sorted(consumer.groups))} lets no TCP 443 out to it"] \
                    if not _lets(rules, consumer.groups, "egress", 443, side) else []
                blocked += [f"{', '.join(sorted(side.groups))} lets no TCP 443 in from it"] \
                    if not _lets(rules, side.groups, "ingress", 443, consumer) else []
                if blocked:
                    findings.append(Finding(rule, template.name, lid, f"its role calls {service}, but it cannot reach "
                                                                      f"endpoint {endpoint}: {'; '.join(blocked)}"))
    return findings


@dataclass(frozen=True)
class _Side:
    """One end of a connection inside the VPC: its security groups' names and the CIDRs of its subnets."""
    groups: set[str]
    cidrs: list[str]


def _consumer_groups(templates: Templates, template: Template, lid: str) -> set[str]:
    props = template.props(lid)
    values = (_as_list((props.get("VpcConfig") or {}).get("SecurityGroupIds") or [])
              + _as_list(props.get("SecurityGroupIds") or [])
              + [g for i in props.get("NetworkInterfaces") or [] for g in _as_list(i.get("GroupSet") or [])])
    return {templates.group_name(templates.node(template, g)) for g in values}


def _cidrs(templates: Templates, subnets: Iterable[Node | None]) -> list[str]:
    return [templates.text(t, t.props(s).get("CidrBlock")) for t, s in filter(None, subnets)]


def _lets(rules: list[GroupRule], groups: set[str], direction: str, port: int, peer: _Side) -> bool:
    """Does one of `groups` let TCP `port` out to (or in from) the peer: its group, or CIDRs holding every subnet
    of it? A group with no egress rule at all lets everything out (AWS's default rule)."""
    own = [r for r in rules if r.group_name in groups and r.direction == direction]
    if direction == "egress" and any(not [r for r in own if r.group_name == g] for g in groups):
        return True
    return any(r.covers(port) and (r.peer_group in peer.groups or
                                   (peer.cidrs and all(any(_inside(c, cidr) for cidr in r.cidrs) for c in peer.cidrs)))
               for r in own)


# A trailing wildcard after a named bucket (a key prefix) or a named stack (its generated id).
ARN_WILDCARD_ALLOWED = re.compile(r"^arn:aws:(s3:::[^*?/]+|cloudformation:[^*?/]+:stack/[^*?/]+)/[^*?]*\*$")


def iam_grants_name_their_resources(folder: Folder) -> list[Finding]:
    """Every IAM statement (roles of functions and instances, attached policies) allows named actions (no "*" or
    "?" in an action: `s3:Get*` and `*` alike) on named resources: "*" only for the network-interface actions that
    cannot be scoped, a wildcard only at the end after a bucket's name (a key prefix) or a stack's; secrets only
    of the role's own template; no NotAction/NotResource; managed
    policies only AmazonSSMManagedInstanceCore on an instance's role; each role trusts one service."""
    templates = _load(folder)
    rule = "iam_grants_name_their_resources"
    findings = []
    for template in templates:
        for role_id, role in template.of_type("AWS::IAM::Role").items():
            props = role.get("Properties") or {}
            trust = [s.get("Principal") for s in _as_list((props.get("AssumeRolePolicyDocument") or {}).get("Statement", []))]
            services = [service for p in trust for service in
                        (_as_list(p["Service"]) if isinstance(p, dict) and set(p) == {"Service"} else [None])]
            if len(services) != 1 or not isinstance(services[0], str):
                findings.append(Finding(rule, template.name, role_id, f"is assumable by {trust}, not by one service"))
            for arn in props.get("ManagedPolicyArns") or []:
                text = templates.text(template, arn)
                if not (text.endswith("/" + SSM_MANAGED_POLICY) and services == ["ec2.amazonaws.com"]):
                    findings.append(Finding(rule, template.name, role_id, f"has managed policy {text}; only an "
                                                                          f"instance's role has {SSM_MANAGED_POLICY}"))
            for statement_template, where, statement in _role_statements((template, role_id)):
                findings += _statement_problems(templates, statement_template, where, statement, rule)
                findings += _foreign_secrets(templates, statement_template, where, statement, rule)
    return findings


def _foreign_secrets(templates: Templates, template: Template, where: str, statement: dict, rule: str) -> list[Finding]:
    """A statement that reads secrets names only secrets of its own template (by Ref)."""
    actions = {templates.text(template, a) for a in _as_list(statement.get("Action", []))}
    if statement.get("Effect") != "Allow" or not any(a.startswith("secretsmanager:") for a in actions):
        return []
    return [Finding(rule, template.name, where, f"statement {statement.get('Sid', '?')} reads the secret "
                                                f"{templates.text(template, resource)}, not one of its own template")
            for resource in _as_list(statement.get("Resource", []))
            if (node := templates.node(template, resource)) is None or node[0] is not template
            or template.resources[node[1]].get("Type") != "AWS::SecretsManager::Secret"]


def _statement_problems(templates: Templates, template: Template, where: str, statement: dict, rule: str) -> list[Finding]:
    problems = [f"uses {key}" for key in ("NotAction", "NotResource", "NotPrincipal") if key in statement]
    if statement.get("Effect") == "Allow":
        actions = {templates.text(template, a) for a in _as_list(statement.get("Action", []))}
        problems += [f"allows the wildcard action {a}" for a in sorted(actions) if "*" in a or "?" in a]
        for resource in sorted({templates.text(template, r) for r in _as_list(statement.get("Resource", []))}):
            if resource == "*" and not actions <= ENI_ACTIONS:
                problems.append(f"allows {sorted(actions - ENI_ACTIONS)} on every resource (\"*\")")
            elif resource != "*" and ("*" in resource or "?" in resource) and not ARN_WILDCARD_ALLOWED.match(resource):
                problems.append(f"allows a wildcard resource {resource} where a name is known")
    return [Finding(rule, template.name, where, f"statement {statement.get('Sid', '?')} {p}") for p in problems]


def _failure_queues(templates: Templates, template: Template, function: str) -> list[str]:
    """The queues of its template that are on-failure destinations of the function's asynchronous invocations."""
    queues = []
    for res in template.of_type("AWS::Lambda::EventInvokeConfig").values():
        props = res.get("Properties") or {}
        if templates.node(template, props.get("FunctionName")) != (template, function):
            continue
        on_failure = ((props.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        queue = templates.node(template, on_failure)
        if queue is not None and queue[0].resources[queue[1]].get("Type") == "AWS::SQS::Queue":
            queues.append(queue[1])
    return queues


def _failure_destinations(templates: Templates, template: Template, function: str) -> set[tuple[str, str]]:
    """(action, ARN) of what Lambda sends a failed asynchronous invocation's record to, with the function's role."""
    return {("sqs:SendMessage", templates.get_att(template, queue, "Arn"))
            for queue in _failure_queues(templates, template, function)}


def _expected_grants(templates: Templates, template: Template, function: str, kind: str) -> set[tuple[str, str, str]]:
    props = template.props(function)
    env = (props.get("Environment") or {}).get("Variables") or {}
    bucket = templates.text(template, env.get("RAW_BUCKET", "{no RAW_BUCKET}"))
    bucket_arn = bucket if bucket.startswith("arn:") else f"arn:aws:s3:::{bucket}"
    log_group = templates.node(template, (props.get("LoggingConfig") or {}).get("LogGroup"))
    logs = templates.get_att(*log_group, "Arn") if log_group else "{no LoggingConfig.LogGroup}"
    grants = {("logs:CreateLogStream", logs, "null"), ("logs:PutLogEvents", logs, "null"),
              *((action, queue, "null") for action, queue in _failure_destinations(templates, template, function))}
    if kind == "ingest":
        grants.add(("s3:PutObject", f"{bucket_arn}/{RAW_PREFIX}*", "null"))
    else:
        prefix = json.dumps({"StringLike": {"s3:prefix": f"{RAW_PREFIX}*"}}, sort_keys=True)
        grants |= {
            ("s3:ListBucket", bucket_arn, prefix),
            ("s3:GetObject", f"{bucket_arn}/{RAW_PREFIX}*", "null"),
            ("secretsmanager:GetSecretValue", templates.text(template, env.get("DW_SECRET_ID", "{no DW_SECRET_ID}")), "null"),
            *{(action, "*", "null") for action in ENI_ACTIONS},
        }
    return grants


def lambda_roles_are_exact_allow_lists(folder: Folder) -> list[Finding]:
    """Each function's role grants exactly its allow-list, inline, to lambda.amazonaws.com only:
    ingest: s3:PutObject under events/ of the raw bucket; ETL: s3:ListBucket (prefix events/) and s3:GetObject
    under events/ of the raw bucket, GetSecretValue of its one secret, the VPC network-interface actions;
    both: CreateLogStream/PutLogEvents on their own log group, sqs:SendMessage on their on-failure queues."""
    templates = _load(folder)
    rule = "lambda_roles_are_exact_allow_lists"
    findings = []
    for template in templates:
        for lid, res in template.of_type("AWS::Lambda::Function").items():
            props = res.get("Properties") or {}
            kind = _function_source(res)
            if kind not in ("ingest", "etl"):
                findings.append(Finding(rule, template.name, lid, f"no allow-list is known for a function from {kind!r} "
                                                                  "(Metadata.clickstream.Source)"))
                continue
            role = templates.node(template, props.get("Role"))
            if role is None or role[0] is not template or role[0].resources[role[1]].get("Type") != "AWS::IAM::Role":
                findings.append(Finding(rule, template.name, lid, "its Role is not !GetAtt of a role in this template"))
                continue
            role_id = role[1]
            role_props = template.resources[role_id].get("Properties") or {}
            if role_props.get("ManagedPolicyArns"):
                findings.append(Finding(rule, template.name, role_id, "has managed policies; every grant must be inline"))
            for other_id, other in template.resources.items():
                if other.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and \
                        {"Ref": role_id} in _as_list((other.get("Properties") or {}).get("Roles", [])):
                    findings.append(Finding(rule, template.name, other_id, f"attaches a policy to {role_id}; every grant must be inline"))
            trust = [s.get("Principal") for s in _as_list((role_props.get("AssumeRolePolicyDocument") or {}).get("Statement", []))]
            if trust != [{"Service": "lambda.amazonaws.com"}]:
                findings.append(Finding(rule, template.name, role_id, f"is assumable by {trust}, not lambda.amazonaws.com only"))
            inline = [(template, role_id, statement) for policy in role_props.get("Policies") or []
                      for statement in _as_list((policy.get("PolicyDocument") or {}).get("Statement", []))]
            grants = _granted(templates, inline, rule, findings)
            findings += _allow_list_findings(rule, template, role_id, grants, _expected_grants(templates, template, lid, kind),
                                             f"the {kind} function")
            env = (props.get("Environment") or {}).get("Variables") or {}
            if templates.text(template, env.get("RAW_PREFIX", "")) != RAW_PREFIX:
                findings.append(Finding(rule, template.name, lid, f"RAW_PREFIX is not {RAW_PREFIX}, the prefix its role is scoped to"))
    return findings


def _granted(templates: Templates, statements: Iterable[tuple[Template, str, dict]], rule: str,
             findings: list[Finding]) -> set[tuple[str, str, str]]:
    """(action, resource, condition as JSON or "null") of the statements' allows; an inverted element
    (NotAction, NotResource, NotPrincipal) is a finding."""
    grants = set()
    for template, where, statement in statements:
        inverted = {"NotAction", "NotResource", "NotPrincipal"} & set(statement)
        if inverted:
            findings.append(Finding(rule, template.name, where, f"uses {sorted(inverted)}"))
        if statement.get("Effect") != "Allow":
            continue
        condition = statement.get("Condition")
        condition_text = json.dumps(_canonical(templates, template, condition), sort_keys=True) \
            if condition is not None else "null"
        for action in _as_list(statement.get("Action", [])):
            for resource in _as_list(statement.get("Resource", [])):
                grants.add((templates.text(template, action), templates.text(template, resource), condition_text))
    return grants


def _allow_list_findings(rule: str, template: Template, role_id: str, grants: set[tuple[str, str, str]],
                         expected: set[tuple[str, str, str]], who: str) -> list[Finding]:
    """A finding per grant beyond the allow-list of `who` and per grant of it the role lacks."""
    findings = []
    for action, resource, condition in sorted(grants - expected):
        extra = "" if condition == "null" else f" when {condition}"
        findings.append(Finding(rule, template.name, role_id, f"grants {action} on {resource}{extra}, beyond "
                                                              f"{who}'s allow-list"))
    for action, resource, condition in sorted(expected - grants):
        extra = "" if condition == "null" else f" when {condition}"
        findings.append(Finding(rule, template.name, role_id, f"lacks {action} on {resource}{extra} (the allow-list "
                                                              f"is exact: {who} needs it)"))
    return findings


# The instance calls its user data makes, and the IAM grant each needs (the ARN's prefix before the name).
USER_DATA_CALLS = (
    (re.compile(r"aws s3 cp 's3://([^']+)'"), "s3:GetObject", "arn:aws:s3:::"),
    (re.compile(r"aws ssm get-parameter --name '([^']+)'"), "ssm:GetParameter",
     "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter"),
)
SECRET_READ = re.compile(r"aws secretsmanager get-secret-value --secret-id '([^']+)'")
SECRET_WRITE = re.compile(r"aws secretsmanager put-secret-value --secret-id '([^']+)'")
SECRET_CALLS = ((SECRET_READ, "secretsmanager:GetSecretValue"), (SECRET_WRITE, "secretsmanager:PutSecretValue"))
# Modules an instance runs (Metadata.clickstream.Modules) that read its own stack's outputs.
READS_OWN_OUTPUTS = {"clickstream.shop.shoppers"}


def _user_data(templates: Templates, template: Template, lid: str) -> str:
    user_data = template.props(lid).get("UserData")
    return templates.text(template, user_data.get("Fn::Base64", user_data)) if isinstance(user_data, dict) else ""


def _instance_expected_grants(templates: Templates, template: Template, lid: str) -> set[tuple[str, str, str]]:
    """What the instance's user data and the modules it runs call: the objects it copies, the parameters and
    secrets it reads, the secrets it writes, its own stack's outputs."""
    script = _user_data(templates, template, lid)
    expected = set()
    for pattern, action, prefix in USER_DATA_CALLS:
        arn_prefix = templates.text(template, {"Fn::Sub": prefix})
        expected |= {(action, arn_prefix + name, "null") for name in pattern.findall(script)}
    secrets = {}
    for secret in template.of_type("AWS::SecretsManager::Secret"):
        arn = templates.text(template, {"Ref": secret})
        secrets[arn] = arn
        if "Name" in template.props(secret):
            secrets[templates.text(template, template.props(secret)["Name"])] = arn
    expected |= {(action, secrets.get(name, f"{{no secret {name} in {template.name}}}"), "null")
                 for pattern, action in SECRET_CALLS for name in pattern.findall(script)}
    modules = set((template.resources[lid].get("Metadata") or {}).get("clickstream", {}).get("Modules") or [])
    if modules & READS_OWN_OUTPUTS:
        expected.add(("cloudformation:DescribeStacks", templates.text(template, {"Ref": "AWS::StackId"}), "null"))
    return expected


def instance_roles_are_exact_allow_lists(folder: Folder) -> list[Finding]:
    """Each instance's role grants exactly what its user data and the modules it runs call (the bundle objects it
    copies, the SSM parameters and secrets it reads, its own stack's outputs for signing in), inline or in policies
    attached to it, plus the managed AmazonSSMManagedInstanceCore only, and is trusted by EC2 only."""
    templates = _load(folder)
    rule = "instance_roles_are_exact_allow_lists"
    findings = []
    for template in templates:
        for lid in template.of_type("AWS::EC2::Instance"):
            role = _role_of(templates, template, lid)
            if role is None or role[0] is not template:
                findings.append(Finding(rule, template.name, lid, "has no instance profile with a role of this template"))
                continue
            role_props = template.props(role[1])
            managed = [templates.text(template, arn).rsplit("/", 1)[-1] for arn in role_props.get("ManagedPolicyArns") or []]
            if managed != [SSM_MANAGED_POLICY]:
                findings.append(Finding(rule, template.name, role[1], f"has managed policies {managed}, not "
                                                                      f"[{SSM_MANAGED_POLICY}] only"))
            trust = [s.get("Principal") for s in _as_list((role_props.get("AssumeRolePolicyDocument") or {}).get("Statement", []))]
            if trust != [{"Service": "ec2.amazonaws.com"}]:
                findings.append(Finding(rule, template.name, role[1], f"is assumable by {trust}, not ec2.amazonaws.com only"))
            grants = _granted(templates, _role_statements(role), rule, findings)
            findings += _allow_list_findings(rule, template, role[1], grants,
                                             _instance_expected_grants(templates, template, lid), f"instance {lid}")
    return findings


def instance_images_are_pinned(folder: Folder) -> list[Finding]:
    """Every instance's ImageId is a parameter of type AWS::EC2::Image::Id without a default, named in
    Metadata.clickstream.ImageParameters with the public SSM parameter clickstream deploy pins it from: never an
    SSM-typed parameter, which CloudFormation resolves again at each update (a new image replaces the instance)."""
    templates = _load(folder)
    rule = "instance_images_are_pinned"
    findings = []
    for template in templates:
        try:
            pinned = image_parameters(template)
        except ValueError as error:
            findings.append(Finding(rule, template.name, "Metadata", str(error)))
            continue
        for lid in template.of_type("AWS::EC2::Instance"):
            image = template.props(lid).get("ImageId")
            parameter = image.get("Ref") if isinstance(image, dict) else None
            spec = template.parameters.get(parameter or "", {})
            if not spec:
                findings.append(Finding(rule, template.name, lid, f"ImageId {image!r} is not a parameter"))
                continue
            if spec.get("Type") != "AWS::EC2::Image::Id" or "Default" in spec:
                findings.append(Finding(rule, template.name, f"Parameters.{parameter}", f"is {spec.get('Type')} with "
                                        f"default {spec.get('Default')!r}: an image id without a default pins it"))
            if not str(pinned.get(parameter, "")).startswith("/aws/service/"):
                findings.append(Finding(rule, template.name, f"Parameters.{parameter}", "is not in "
                                        "Metadata.clickstream.ImageParameters with a public SSM parameter to pin from"))
    return findings


INITDB = "postgresql-setup --initdb"
PROTECT_DATA = "ProtectData"


# A pg_hba.conf entry for etl_writer in user data: its type, database and the rest (address and method, or method).
ETL_WRITER_HBA = re.compile(r"(?<![\w=.-])(local|host|hostssl|hostnossl|hostgssenc|hostnogssenc)\s+(\S+)\s+etl_writer\s+"
                            r"([^\n\"'>]*)")
SSL_SETTINGS = ("ssl = on", "ssl_cert_file = ", "ssl_key_file = ")  # outside a comment line of the user data
SSLMODE_VERIFY_FULL = re.compile(r"\bsslmode\"?\s*:\s*\"verify-full\"")


def _etl_writer_tls_problems(script: str, dw_secrets: set[str]) -> list[str]:
    """What lets etl_writer reach the warehouse without TLS, or the ETL connect without verifying the server."""
    problems = []
    if not all(re.search(rf"^(?!\s*#).*\b{re.escape(setting)}", script, re.M) for setting in SSL_SETTINGS):
        problems.append("does not set ssl = on with ssl_cert_file and ssl_key_file")
    entries = [(kind, rest.split()) for kind, _, rest in ETL_WRITER_HBA.findall(script)]
    methods = [(kind, words[0] if kind == "local" else (words[1:2] or ["?"])[0]) for kind, words in entries if words]
    problems += [f"admits etl_writer with a {kind} entry ({method}): only hostssl with scram-sha-256"
                 for kind, method in methods if method != "reject" and (kind, method) != ("hostssl", "scram-sha-256")]
    if not any(kind == "hostssl" for kind, _ in methods):
        problems.append("has no hostssl entry for etl_writer")
    if not any(kind in ("host", "hostnossl") and words[:2] == ["all", "reject"] for kind, words in entries):
        problems.append("does not refuse etl_writer's other TCP connections (host ... etl_writer all reject)")
    written = set(SECRET_WRITE.findall(script)) & dw_secrets
    if not written or not SSLMODE_VERIFY_FULL.search(script) or "sslrootcert_pem" not in script:
        problems.append(f"does not write sslmode verify-full and its CA (sslrootcert_pem) into the DW secret "
                        f"{', '.join(sorted(dw_secrets)) or '(no ETL function reads one)'}")
    return problems


def etl_writer_connects_over_tls_only(folder: Folder) -> list[Finding]:
    """The warehouse instance serves TLS (ssl = on, its certificate and key) and admits etl_writer only over it
    (pg_hba: hostssl with scram-sha-256, any other TCP connection of etl_writer refused), and writes sslmode
    verify-full and its CA's certificate (sslrootcert_pem) into the DW secret, the one the ETL function reads
    (DW_SECRET_ID)."""
    templates = _load(folder)
    rule = "etl_writer_connects_over_tls_only"
    dw_secrets = {templates.text(template, env["DW_SECRET_ID"]) for template, lid in _etl_functions(templates)
                  if "DW_SECRET_ID" in (env := ((template.props(lid).get("Environment") or {}).get("Variables") or {}))}
    return [Finding(rule, template.name, lid, problem) for template, lid in _dw_instances(templates)
            for problem in _etl_writer_tls_problems(_user_data(templates, template, lid), dw_secrets)]


def _protects_data(template: Template, condition: Any) -> bool:
    """The condition is ProtectData == "true"."""
    definition = (template.body.get("Conditions") or {}).get(condition)
    return isinstance(definition, dict) and definition.get("Fn::Equals") in (
        [{"Ref": PROTECT_DATA}, "true"], ["true", {"Ref": PROTECT_DATA}])


def _data_volume_problems(templates: Templates, template: Template, instance: str, attachment: str) -> list[str]:
    props = template.props(attachment)
    volume = templates.node(template, props.get("VolumeId"))
    if volume is None or volume[0] is not template or template.resources[volume[1]].get("Type") != "AWS::EC2::Volume":
        return [f"attaches {props.get('VolumeId')!r}, not a volume of {template.name}"]
    res, problems = template.resources[volume[1]], []
    declared = Template.load(template.path).resources.get(volume[1], {})  # as written: Fn::If not yet decided
    if templates.text(template, (res.get("Properties") or {}).get("Encrypted", False)) != "true":
        problems.append(f"{volume[1]} is not encrypted")
    zone = (res.get("Properties") or {}).get("AvailabilityZone")
    if not (isinstance(zone, dict) and "Fn::GetAtt" in zone
            and get_att_arguments(zone["Fn::GetAtt"]) == (instance, "AvailabilityZone")):
        problems.append(f"{volume[1]} is not in {instance}'s zone (!GetAtt {instance}.AvailabilityZone)")
    for policy in ("DeletionPolicy", "UpdateReplacePolicy"):
        value = declared.get(policy)
        branches = value.get("Fn::If") if isinstance(value, dict) else None
        if not (isinstance(branches, list) and len(branches) == 3 and _protects_data(template, branches[0])
                and branches[1] in ("Snapshot", "Retain") and branches[2] == "Delete"):
            problems.append(f"{volume[1]}'s {policy} is {value!r}, not Snapshot or Retain with {PROTECT_DATA} and "
                            "Delete without")
    script = _user_data(templates, template, instance)
    device = templates.text(template, props.get("Device", ""))
    if not device or not 0 <= script.find(f" {device} ") < script.find(INITDB):
        problems.append(f"{instance}'s user data does not mount {device or 'its device'} before {INITDB}")
    return problems


def databases_on_their_own_volumes(folder: Folder) -> list[Finding]:
    """An instance that runs a database (postgresql-setup --initdb in its user data) keeps it on its own encrypted
    volume in its zone, attached by a VolumeAttachment whose device the user data mounts before initdb; the volume
    is snapshotted (or retained) on delete and replacement with ProtectData, deleted without (ProtectData defaults
    to false)."""
    templates = _load(folder)
    rule = "databases_on_their_own_volumes"
    findings = []
    for template in templates:
        databases = [lid for lid in template.of_type("AWS::EC2::Instance")
                     if INITDB in _user_data(templates, template, lid)]
        if databases and template.parameters.get(PROTECT_DATA, {}).get("Default") != "false":
            findings.append(Finding(rule, template.name, f"Parameters.{PROTECT_DATA}", "is not declared with the "
                                                                                      "default \"false\""))
        for lid in databases:
            attachments = [a for a, res in template.of_type("AWS::EC2::VolumeAttachment").items()
                           if templates.node(template, (res.get("Properties") or {}).get("InstanceId")) == (template, lid)]
            if not attachments:
                findings.append(Finding(rule, template.name, lid, "runs a database with no volume of its own attached"))
            for attachment in attachments:
                findings += [Finding(rule, template.name, attachment, problem)
                             for problem in _data_volume_problems(templates, template, lid, attachment)]
    return findings


def _canonical(templates: Templates, template: Template, value: Any) -> Any:
    if isinstance(value, dict) and not (len(value) == 1 and next(iter(value)).startswith(("Ref", "Fn::"))):
        return {key: _canonical(templates, template, item) for key, item in value.items()}
    if isinstance(value, list) and len(value) == 1:
        return _canonical(templates, template, value[0])
    if isinstance(value, list):
        return sorted(templates.text(template, item) for item in value)
    return templates.text(template, value)


def buckets_private_encrypted_tls_only(folder: Folder) -> list[Finding]:
    """Every bucket blocks all public access, has no ACL or website, is encrypted by default, has a policy that
    denies every non-TLS request to the bucket and its objects, and no policy statement allows everyone."""
    templates = _load(folder)
    rule = "buckets_private_encrypted_tls_only"
    findings = []
    for template in templates:
        policies = [(pid, res.get("Properties") or {}) for pid, res in template.of_type("AWS::S3::BucketPolicy").items()]
        for lid, res in template.of_type("AWS::S3::Bucket").items():
            props = res.get("Properties") or {}
            block = props.get("PublicAccessBlockConfiguration") or {}
            for key in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"):
                if templates.text(template, block.get(key, False)) != "true":
                    findings.append(Finding(rule, template.name, lid, f"PublicAccessBlockConfiguration.{key} is not true"))
            if templates.text(template, props.get("AccessControl", "Private")) != "Private":
                findings.append(Finding(rule, template.name, lid, f"has the canned ACL {props['AccessControl']}"))
            if "WebsiteConfiguration" in props:
                findings.append(Finding(rule, template.name, lid, "has a public website configuration"))
            encryption = ((props.get("BucketEncryption") or {}).get("ServerSideEncryptionConfiguration") or [{}])
            algorithms = {templates.text(template, (r.get("ServerSideEncryptionByDefault") or {}).get("SSEAlgorithm", ""))
                          for r in encryption}
            if not algorithms or not algorithms <= {"AES256", "aws:kms", "aws:kms:dsse"}:
                findings.append(Finding(rule, template.name, lid, "has no default encryption (SSE-S3 or SSE-KMS)"))
            arn = templates.get_att(template, lid, "Arn")
            statements = [
                (pid, s) for pid, policy in policies
                if templates.node(template, policy.get("Bucket")) == (template, lid)
                for s in _as_list((policy.get("PolicyDocument") or {}).get("Statement", []))
            ]
            tls = [s for _, s in statements
                   if s.get("Effect") == "Deny" and _everyone(templates, template, s.get("Principal"))
                   and {templates.text(template, a) for a in _as_list(s.get("Action", []))} & {"s3:*", "*"}
                   and templates.text(template, ((s.get("Condition") or {}).get("Bool") or {}).get("aws:SecureTransport")) == "false"
                   and {arn, f"{arn}/*"} <= {templates.text(template, r) for r in _as_list(s.get("Resource", []))}]
            if not tls:
                findings.append(Finding(rule, template.name, lid, "no bucket policy denies requests without TLS "
                                                                  "(aws:SecureTransport false) to the bucket and its objects"))
            for pid, statement in statements:
                if statement.get("Effect") == "Allow" and _everyone(templates, template, statement.get("Principal")):
                    findings.append(Finding(rule, template.name, pid, f"allows everyone ({statement.get('Sid', 'a statement')}) "
                                                                      f"on bucket {lid}"))
    return findings


def api_stages_log_and_throttle(folder: Folder) -> list[Finding]:
    """Every HTTP API stage writes access logs as JSON (one object per request, with its request id) to a log group
    of its template that expires them, and throttles its default route (burst and rate, both positive)."""
    templates = _load(folder)
    rule = "api_stages_log_and_throttle"
    findings = []
    for template in templates:
        for lid, res in template.of_type("AWS::ApiGatewayV2::Stage").items():
            props = res.get("Properties") or {}
            access = props.get("AccessLogSettings") or {}
            group = templates.node(template, access.get("DestinationArn"))
            if group is None or group[0].resources[group[1]].get("Type") != "AWS::Logs::LogGroup":
                findings.append(Finding(rule, template.name, lid, "has no access log to a log group of its template"))
            elif not (group[0].resources[group[1]].get("Properties") or {}).get("RetentionInDays"):
                findings.append(Finding(rule, template.name, group[1], "keeps the API's access logs forever (no RetentionInDays)"))
            try:
                fields = json.loads(templates.text(template, access.get("Format", "")))
            except ValueError:
                fields = None
            if not isinstance(fields, dict) or "$context.requestId" not in fields.values():
                findings.append(Finding(rule, template.name, lid, "access log format is not a JSON object with "
                                                                  "$context.requestId"))
            route = props.get("DefaultRouteSettings") or {}
            for key in ("ThrottlingBurstLimit", "ThrottlingRateLimit"):
                if _number(templates.text(template, route.get(key, ""))) <= 0:
                    findings.append(Finding(rule, template.name, lid, f"DefaultRouteSettings.{key} is not a positive limit"))
    return findings


def reserved_concurrency_is_opt_in(folder: Folder) -> list[Finding]:
    """Each function's reserved concurrency is a parameter (production reserves some) that reserves nothing with
    the defaults: a new account's concurrency quota is 10, none of it reservable, so a reservation fails the deploy."""
    templates = _load(folder)
    rule = "reserved_concurrency_is_opt_in"
    findings = []
    for template in templates:
        declared = Template.load(template.path)
        for lid, res in template.of_type("AWS::Lambda::Function").items():
            reserved = (res.get("Properties") or {}).get("ReservedConcurrentExecutions")
            if reserved is not None and _number(templates.text(template, reserved)) > 0:
                findings.append(Finding(rule, template.name, lid, f"reserves {templates.text(template, reserved)} "
                                                                  "concurrent executions with the default parameters"))
            source = (declared.resources.get(lid, {}).get("Properties") or {}).get("ReservedConcurrentExecutions")
            if not {name for name, _ in references(source)} & set(declared.parameters):
                findings.append(Finding(rule, template.name, lid, "its reserved concurrency is not set from a parameter"))
    return findings


def scheduled_functions_report_failures(folder: Folder) -> list[Finding]:
    """Every function a schedule invokes sends the invocations that fail after Lambda's retries to an on-failure
    destination, an encrypted queue of its template, with a CloudWatch alarm on that queue's first visible message."""
    templates = _load(folder)
    rule = "scheduled_functions_report_failures"
    findings = []
    for template in templates:
        alarms = [res.get("Properties") or {} for res in template.of_type("AWS::CloudWatch::Alarm").values()]
        for schedule in template.of_type("AWS::Events::Rule").values():
            for target in (schedule.get("Properties") or {}).get("Targets") or []:
                function = templates.node(template, target.get("Arn"))
                if function is None or function[0].resources[function[1]].get("Type") != "AWS::Lambda::Function":
                    continue
                lid = function[1]
                queues = _failure_queues(templates, template, lid)
                if not queues:
                    findings.append(Finding(rule, template.name, lid, "is scheduled but has no on-failure destination "
                                                                      "queue (AWS::Lambda::EventInvokeConfig)"))
                for queue in queues:
                    findings.extend(Finding(rule, template.name, queue, problem)
                                    for problem in _failure_queue_problems(templates, template, queue, alarms))
    return findings


def _failure_queue_problems(templates: Templates, template: Template, queue: str, alarms: list[dict]) -> list[str]:
    props = template.props(queue)
    problems = []
    if templates.text(template, props.get("SqsManagedSseEnabled", False)) != "true" and not props.get("KmsMasterKeyId"):
        problems.append("is not encrypted (SqsManagedSseEnabled or KmsMasterKeyId)")
    first_message = {("GreaterThanThreshold", 0.0), ("GreaterThanOrEqualToThreshold", 1.0)}
    watched = [a for a in alarms
               if templates.text(template, a.get("Namespace")) == "AWS/SQS"
               and templates.text(template, a.get("MetricName")) == "ApproximateNumberOfMessagesVisible"
               and any(templates.text(template, d.get("Name")) == "QueueName"
                       and templates.node(template, d.get("Value")) == (template, queue) for d in a.get("Dimensions") or [])
               and (templates.text(template, a.get("ComparisonOperator")),
                    _number(templates.text(template, a.get("Threshold", "")))) in first_message]
    if not watched:
        problems.append("has no alarm on its first visible message (AWS/SQS ApproximateNumberOfMessagesVisible)")
    return problems


def user_pools_hardened(folder: Folder) -> list[Finding]:
    """Every Cognito user pool asks for passwords of 12+ characters with lower and upper case, numbers and symbols;
    with self sign-up, an email is verified before it is used or changed; deletion protection follows ProtectData
    (a condition on it); the paid advanced security is a parameter and OFF by default."""
    templates = _load(folder)
    rule = "user_pools_hardened"
    findings = []
    for template in templates:
        declared = Template.load(template.path)
        for lid, res in template.of_type("AWS::Cognito::UserPool").items():
            props = res.get("Properties") or {}
            problems = []
            policy = (props.get("Policies") or {}).get("PasswordPolicy") or {}
            if _number(templates.text(template, policy.get("MinimumLength", ""))) < 12:
                problems.append("PasswordPolicy.MinimumLength is under 12")
            problems += [f"PasswordPolicy.{key} is not true" for key in
                         ("RequireLowercase", "RequireUppercase", "RequireNumbers", "RequireSymbols")
                         if templates.text(template, policy.get(key, False)) != "true"]
            self_sign_up = templates.text(template, (props.get("AdminCreateUserConfig") or {})
                                          .get("AllowAdminCreateUserOnly", False)) != "true"
            verified = {templates.text(template, a) for a in _as_list(props.get("AutoVerifiedAttributes") or [])}
            before_update = {templates.text(template, a) for a in _as_list(
                (props.get("UserAttributeUpdateSettings") or {}).get("AttributesRequireVerificationBeforeUpdate") or [])}
            if self_sign_up and not {"email"} <= verified & before_update:
                problems.append("shoppers sign themselves up, but email is not verified (AutoVerifiedAttributes and "
                                "AttributesRequireVerificationBeforeUpdate)")
            raw = declared.props(lid)
            protection = raw.get("DeletionProtection")
            conditions = declared.body.get("Conditions") or {}
            switch = protection.get("Fn::If", [None])[0] if isinstance(protection, dict) else None
            if "ProtectData" not in {name for name, _ in references(conditions.get(switch))}:
                problems.append("DeletionProtection does not follow the ProtectData parameter")
            mode = (raw.get("UserPoolAddOns") or {}).get("AdvancedSecurityMode")
            if templates.text(template, (props.get("UserPoolAddOns") or {}).get("AdvancedSecurityMode", "OFF")) != "OFF":
                problems.append("advanced security (a paid tier) is on with the default parameters")
            elif not {name for name, _ in references(mode)} & set(declared.parameters):
                problems.append("advanced security is not a parameter")
            findings += [Finding(rule, template.name, lid, problem) for problem in problems]
    return findings


SECURITY_HEADERS = ("StrictTransportSecurity", "ContentTypeOptions", "FrameOptions", "ReferrerPolicy")


def cloudfront_security_headers_and_tls(folder: Folder) -> list[Finding]:
    """Every CloudFront cache behaviour answers with a response headers policy of its template that sets HSTS (a
    year or more), X-Content-Type-Options, X-Frame-Options and Referrer-Policy; a custom certificate (a parameter,
    in any branch of the template) is served with TLS 1.2 or newer only."""
    templates = _load(folder)
    rule = "cloudfront_security_headers_and_tls"
    findings = []
    for template in templates:
        declared = Template.load(template.path)
        for lid, res in template.of_type("AWS::CloudFront::Distribution").items():
            config = (res.get("Properties") or {}).get("DistributionConfig") or {}
            for behavior in [config.get("DefaultCacheBehavior") or {}, *(config.get("CacheBehaviors") or [])]:
                where = behavior.get("PathPattern", "default behaviour")
                policy = templates.node(template, behavior.get("ResponseHeadersPolicyId"))
                if policy is None or \
                        policy[0].resources[policy[1]].get("Type") != "AWS::CloudFront::ResponseHeadersPolicy":
                    findings.append(Finding(rule, template.name, lid, f"{where} has no response headers policy"))
                    continue
                headers = ((policy[0].props(policy[1]).get("ResponseHeadersPolicyConfig") or {})
                           .get("SecurityHeadersConfig") or {})
                missing = [h for h in SECURITY_HEADERS if not headers.get(h)]
                hsts = headers.get("StrictTransportSecurity") or {}
                if hsts and _number(templates.text(template, hsts.get("AccessControlMaxAgeSec", ""))) < 31536000:
                    missing.append("StrictTransportSecurity of a year or more")
                if missing:
                    findings.append(Finding(rule, policy[0].name, policy[1], f"(used by {lid} {where}) lacks {missing}"))
            certificates = [node for node in _walk_dicts(declared.props(lid).get("DistributionConfig"))
                            if "AcmCertificateArn" in node or "IamCertificateId" in node]
            if not certificates:
                findings.append(Finding(rule, template.name, lid, "has no custom certificate (a parameter) to serve TLS 1.2"))
            for node in certificates:
                if not str(node.get("MinimumProtocolVersion", "")).startswith(("TLSv1.2", "TLSv1.3")):
                    findings.append(Finding(rule, template.name, lid, "serves a custom certificate without a TLS 1.2 minimum"))
    return findings


def _walk_dicts(value: Any) -> Iterable[dict]:
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _walk_dicts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk_dicts(item)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


def buckets_log_access(folder: Folder) -> list[Finding]:
    """Every bucket writes S3 server access logs to a log bucket of the folder; a log bucket logs nowhere, lets
    logging.s3.amazonaws.com put objects (for its own account only) and expires them by a lifecycle rule."""
    templates = _load(folder)
    rule = "buckets_log_access"
    findings = []
    buckets = [(template, lid) for template in templates for lid in template.of_type("AWS::S3::Bucket")]
    destinations = {}
    for template, lid in buckets:
        target = (template.props(lid).get("LoggingConfiguration") or {}).get("DestinationBucketName")
        destinations[(template.name, lid)] = _key(templates.node(template, target)) if target is not None else None
    log_buckets = {d for d in destinations.values() if d is not None}
    for template, lid in buckets:
        destination = destinations[(template.name, lid)]
        if (template.name, lid) in log_buckets:
            if destination is not None:
                findings.append(Finding(rule, template.name, lid, "is a log bucket and logs its own access too"))
            findings.extend(Finding(rule, template.name, lid, p) for p in _log_bucket_problems(templates, template, lid))
        elif destination is None or destination not in destinations:
            findings.append(Finding(rule, template.name, lid, "writes no server access logs to a log bucket of the "
                                                              "folder (LoggingConfiguration)"))
    return findings


def _log_bucket_problems(templates: Templates, template: Template, lid: str) -> list[str]:
    problems = []
    rules = ((template.props(lid).get("LifecycleConfiguration") or {}).get("Rules") or [])
    if not any(templates.text(template, r.get("Status")) == "Enabled"
               and _number(templates.text(template, r.get("ExpirationInDays", ""))) > 0 for r in rules):
        problems.append("keeps access logs forever (no enabled lifecycle rule with ExpirationInDays)")
    delivers = [s for res in template.of_type("AWS::S3::BucketPolicy").values()
                if templates.node(template, (res.get("Properties") or {}).get("Bucket")) == (template, lid)
                for s in _as_list(((res.get("Properties") or {}).get("PolicyDocument") or {}).get("Statement", []))
                if s.get("Effect") == "Allow" and (s.get("Principal") or {}) == {"Service": "logging.s3.amazonaws.com"}]
    if not delivers:
        problems.append("its policy does not let logging.s3.amazonaws.com deliver access logs")
    elif not all("aws:SourceAccount" in ((s.get("Condition") or {}).get("StringEquals") or {}) for s in delivers):
        problems.append("lets logging.s3.amazonaws.com deliver logs from any account (no aws:SourceAccount condition)")
    return problems


CLOUDFRONT_LOGS_REGION = "us-east-1"  # CloudFront's log delivery sources exist in this region only
LOG_DELIVERY_SERVICE = "delivery.logs.amazonaws.com"


def _referring(resources: dict[str, dict], prop: str, target: str) -> list[str]:
    """The resources whose property `prop` refers to `target` (Ref, GetAtt or inside a Sub)."""
    return [lid for lid, res in resources.items()
            if target in {name for name, _ in references((res.get("Properties") or {}).get(prop))}]


def _admits_log_delivery(templates: Templates, template: Template, bucket: str) -> bool:
    """The bucket's policy lets CloudWatch Logs' delivery put objects, for the stacks' account only."""
    for res in template.of_type("AWS::S3::BucketPolicy").values():
        props = res.get("Properties") or {}
        if templates.node(template, props.get("Bucket")) != (template, bucket):
            continue
        for statement in _as_list((props.get("PolicyDocument") or {}).get("Statement", [])):
            account = ((statement.get("Condition") or {}).get("StringEquals") or {}).get("aws:SourceAccount")
            if statement.get("Effect") == "Allow" and statement.get("Principal") == {"Service": LOG_DELIVERY_SERVICE} \
                    and account is not None and templates.text(template, account) == "{AWS::AccountId}":
                return True
    return False


def _delivery_problems(templates: Templates, template: Template, declared: Template, distribution: str) -> list[str]:
    resources = declared.resources
    sources = [s for s in _referring(declared.of_type("AWS::Logs::DeliverySource"), "ResourceArn", distribution)
               if resources[s]["Properties"].get("LogType") == "ACCESS_LOGS"]
    deliveries = [d for s in sources for d in _referring(declared.of_type("AWS::Logs::Delivery"), "DeliverySourceName", s)]
    if not deliveries:
        return ["has no access-log delivery (an AWS::Logs::DeliverySource of its ACCESS_LOGS and a Delivery of it)"]
    problems = []
    for delivery in deliveries:
        destinations = [n for n, _ in references(resources[delivery]["Properties"].get("DeliveryDestinationArn"))
                        if resources.get(n, {}).get("Type") == "AWS::Logs::DeliveryDestination"]
        buckets = [n for d in destinations for n, _ in references(resources[d]["Properties"].get("DestinationResourceArn"))
                   if resources.get(n, {}).get("Type") == "AWS::S3::Bucket"]
        if not buckets:
            problems.append(f"{delivery} delivers to no bucket of {template.name}")
        problems += [f"{delivery} delivers to {b}, whose policy does not admit {LOG_DELIVERY_SERVICE} for the "
                     "stacks' account only" for b in buckets if not _admits_log_delivery(templates, template, b)]
        for name in {*sources, delivery, *destinations}:
            when = resources[name].get("Condition")
            region = (declared.body.get("Conditions") or {}).get(when, {}).get("Fn::Equals") if when else None
            if when and region != [{"Ref": "AWS::Region"}, CLOUDFRONT_LOGS_REGION]:
                problems.append(f"{name} is created on condition {when}, not where CloudFront delivers logs "
                                f"({CLOUDFRONT_LOGS_REGION})")
    return problems


def cloudfront_logs_access(folder: Folder) -> list[Finding]:
    """Every CloudFront distribution sends its access logs (standard logging v2: a CloudWatch Logs delivery source,
    delivery and destination, created in us-east-1, where CloudFront's must be) to a bucket of its template whose
    policy admits the log delivery service for the stacks' account only (no bucket ACLs, unlike legacy logging)."""
    templates = _load(folder)
    rule = "cloudfront_logs_access"
    findings = []
    for template in templates:
        declared = Template.load(template.path)  # as written: the region condition is not decided by the defaults
        for lid in declared.of_type("AWS::CloudFront::Distribution"):
            findings += [Finding(rule, template.name, lid, problem)
                         for problem in _delivery_problems(templates, template, declared, lid)]
    return findings


def cloudfront_reads_buckets_through_oac(folder: Folder) -> list[Finding]:
    """Every CloudFront origin that is an S3 bucket is read through origin access control (no legacy origin
    access identity), so the bucket stays private; other origins (the web instance) need none."""
    templates = _load(folder)
    rule = "cloudfront_reads_buckets_through_oac"
    findings = []
    for template in templates:
        for lid, res in template.of_type("AWS::CloudFront::Distribution").items():
            config = (res.get("Properties") or {}).get("DistributionConfig") or {}
            for origin in config.get("Origins") or []:
                bucket = templates.node(template, origin.get("DomainName"))
                is_bucket = "S3OriginConfig" in origin or (bucket is not None and
                                                           bucket[0].resources[bucket[1]].get("Type") == "AWS::S3::Bucket")
                if not is_bucket:
                    continue
                identity = templates.text(template, (origin.get("S3OriginConfig") or {}).get("OriginAccessIdentity", ""))
                if not origin.get("OriginAccessControlId") or identity:
                    findings.append(Finding(rule, template.name, lid, f"origin {origin.get('Id')} is a bucket read "
                                                                      "without origin access control"))
    return findings


def switches_have_safe_defaults(folder: Folder) -> list[Finding]:
    """Every parameter a condition reads (a switch, e.g. for learners) is declared and has a default, so the
    stacks deployed with the defaults, which every other rule judges, are the ones a plain deploy makes."""
    templates = _load(folder)
    rule = "switches_have_safe_defaults"
    findings = []
    for template in templates:
        for name, condition in (template.body.get("Conditions") or {}).items():
            for parameter, _ in sorted(references(condition), key=str):
                spec = template.parameters.get(parameter)
                if parameter in PSEUDO_PARAMETERS:
                    continue
                if spec is None:
                    findings.append(Finding(rule, template.name, f"Conditions.{name}", f"reads {parameter}, which is "
                                                                                       "not a parameter"))
                elif "Default" not in spec:
                    findings.append(Finding(rule, template.name, f"Parameters.{parameter}", f"switches condition {name} "
                                                                                            "but has no default"))
    return findings


def _everyone(templates: Templates, template: Template, principal: Any) -> bool:
    if principal == "*":
        return True
    if isinstance(principal, dict):
        return any("*" in {templates.text(template, v) for v in _as_list(value)} for value in principal.values())
    return False


def no_plaintext_secrets(folder: Folder) -> list[Finding]:
    """No secret is written in a template: secret-like parameters are NoEcho without a default, secret-like
    properties and environment variables are references (never literals, never a visible parameter), no literal
    password in user data and no password on a command line there, no access key or private key anywhere in the
    text."""
    templates = _load(folder)
    rule = "no_plaintext_secrets"
    findings = []
    for template in templates:
        secret_parameters = {name for name in template.parameters if _secret_like(name)}
        for name in sorted(secret_parameters):
            spec = template.parameters[name]
            if str(spec.get("NoEcho", "false")).lower() != "true":
                findings.append(Finding(rule, template.name, f"Parameters.{name}", "a secret parameter must be NoEcho"))
            if "Default" in spec:
                findings.append(Finding(rule, template.name, f"Parameters.{name}", "a secret parameter has a default "
                                                                                   "value written in the template"))
        for lid, res in template.resources.items():
            for path, key, value in _walk(res.get("Properties") or {}):
                if key == "UserData" or path.endswith("UserData.Fn::Base64"):
                    text = json.dumps(value)
                    if PASSWORD_LITERAL.search(text.replace("\\n", "\n")):
                        findings.append(Finding(rule, template.name, lid, f"{path}: a literal password in the user data"))
                    findings += [Finding(rule, template.name, lid, f"{path}: a password on a command line, which `ps` "
                                                                   f"shows to every user: {line}")
                                 for line in passwords_on_command_lines(text.replace("\\n", "\n"))]
                    continue
                if not _secret_like(key) or isinstance(value, (bool, int, float)) or isinstance(value, dict) and not _intrinsic(value):
                    continue
                if isinstance(value, str) and not DYNAMIC_REFERENCE.match(value) and value:
                    findings.append(Finding(rule, template.name, lid, f"{path}: a literal secret value"))
                elif isinstance(value, dict) and "Ref" in value and value["Ref"] in template.parameters \
                        and str(template.parameters[value["Ref"]].get("NoEcho", "false")).lower() != "true":
                    findings.append(Finding(rule, template.name, lid, f"{path}: from parameter {value['Ref']}, which is not NoEcho"))
        text = template.path.read_text()
        for match in CREDENTIAL_TEXT.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            findings.append(Finding(rule, template.name, f"line {line}", "an AWS access key or private key in the text"))
    return findings


def _secret_like(name: str) -> bool:
    return bool(SECRET_NAME.search(name)) and not NOT_A_SECRET.search(name)


def _intrinsic(value: dict) -> bool:
    return len(value) == 1 and next(iter(value)) in ("Ref", "Fn::Sub", "Fn::Join", "Fn::ImportValue", "Fn::GetAtt")


def passwords_on_command_lines(script: str) -> list[str]:
    """The lines of a shell script that hand a password variable ($X_PW, $X_PASSWORD) to a program as an
    argument. Allowed: making it (`X_PW=$(...)`), one command's environment (`X_PW="$X_PW" psql`), shell
    builtins (printf, echo: no process) and heredoc bodies (stdin)."""
    commands = CONTINUATION.sub(" ", HEREDOC.sub("<<heredoc\n", script))
    found = []
    for line in commands.splitlines():
        words = line.split("#", 1)[0].split()
        while words and (ASSIGNMENT.match(words[0]) or words[0] in SHELL_KEYWORDS):
            words.pop(0)
        if words and words[0] not in SHELL_BUILTINS and any(PASSWORD_VARIABLE.search(word) for word in words):
            found.append(line.strip())
    return found


def _walk(value: Any, path: str = "Properties") -> Iterable[tuple[str, str, Any]]:
    """(path, key, value) of every mapping entry below `value`, not descending into intrinsic functions."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key.startswith("Fn::") or key == "Ref":
                continue
            yield f"{path}.{key}", key, item
            if key != "UserData":
                yield from _walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]")


ARCHITECTURE_RULES: dict[str, Callable[[Folder], list[Finding]]] = {
    fn.__name__: fn
    for fn in (
        no_world_ingress_except_cloudfront_to_web,
        no_port_22,
        analytics_only_in_private_subnets,
        private_route_tables_stay_in_vpc,
        no_nat_gateway,
        warehouse_postgres_admits_only_etl,
        dashboard_port_admits_nothing,
        private_subnets_have_their_endpoints,
        etl_runs_with_sg_lambda_etl,
        instances_imdsv2_and_encrypted_volumes,
        instance_images_are_pinned,
        databases_on_their_own_volumes,
        etl_writer_connects_over_tls_only,
        lambda_roles_are_exact_allow_lists,
        instance_roles_are_exact_allow_lists,
        iam_grants_name_their_resources,
        buckets_private_encrypted_tls_only,
        buckets_log_access,
        cloudfront_reads_buckets_through_oac,
        cloudfront_security_headers_and_tls,
        cloudfront_logs_access,
        api_stages_log_and_throttle,
        reserved_concurrency_is_opt_in,
        scheduled_functions_report_failures,
        user_pools_hardened,
        no_plaintext_secrets,
        switches_have_safe_defaults,
    )
}


# =====================================================================================================
# The policy rules: cfn-lint custom rules, with the suppressions file
# =====================================================================================================
def policy_files() -> tuple[Path, Path]:
    folder = project_root() / "cloudformation"
    return folder / DEFAULT_RULES, folder / DEFAULT_SUPPRESSIONS


def load_suppressions(path: Path) -> list[dict]:
    entries = tomllib.loads(path.read_text()).get("suppress", []) if path.exists() else []
    for entry in entries:
        missing = {"rule", "template", "resource", "reason"} - {k for k, v in entry.items() if str(v).strip()}
        if missing:
            raise ValueError(f"{path.name}: a suppression lacks {sorted(missing)}: {entry}")
    return entries


def policy_rules(folder: Folder, rules: Path | None = None, suppressions: Path | None = None) -> list[Finding]:
    """The custom rules' findings on every template of the folder, less the justified suppressions; a
    suppression that matches nothing is a finding too."""
    templates = _load(folder)
    default_rules, default_suppressions = policy_files()
    rules, suppressions = rules or default_rules, suppressions or default_suppressions
    waivers = load_suppressions(suppressions)
    used = set()
    findings = []
    for template in templates:
        for match in lint_file(template.path, config=ManualArgs(custom_rules=str(rules))):
            if not match.rule.id[1:].startswith("9"):
                continue  # cfn-lint's own rules: `make check-templates` runs cfn-lint itself
            tag_match = re.match(r"\[([A-Z0-9-]+)\]\s*(.*)", match.message)
            tag, message = (tag_match.group(1), tag_match.group(2)) if tag_match else (match.rule.id, match.message)
            resource = match.path[1] if len(match.path) > 1 and match.path[0] == "Resources" else "-"
            waived = [i for i, w in enumerate(waivers)
                      if (w["rule"], w["template"], w["resource"]) == (tag, template.name, resource)]
            if waived:
                used.update(waived)
                continue
            findings.append(Finding(f"policy {tag}", template.name, str(resource), f"line {match.linenumber}: {message}"))
    for index, waiver in enumerate(waivers):
        if index not in used and (templates.folder / waiver["template"]).exists():
            findings.append(Finding("policy suppressions", waiver["template"], waiver["resource"],
                                    f"the suppression of {waiver['rule']} matches nothing: remove it"))
    return findings


def run_all(folder: Folder) -> dict[str, list[Finding]]:
    templates = _load(folder)
    results = {"policy rules (cfn-lint custom rules)": policy_rules(templates)}
    results.update({name: check(templates) for name, check in ARCHITECTURE_RULES.items()})
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clickstream.infra.checks", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", default=str(project_root() / "cloudformation"), type=Path)
    args = parser.parse_args(argv)
    templates = Templates(args.folder)
    if not templates.templates:
        print(f"no *.yaml templates in {args.folder}", file=sys.stderr)
        return 2
    failed = 0
    for name, findings in run_all(templates).items():
        print(f"{'FAIL' if findings else 'ok  '} {name}")
        for finding in findings:
            print(f"       {finding}")
        failed += bool(findings)
    print(f"{failed} check(s) failed on {args.folder}" if failed else f"all checks passed on {args.folder}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
