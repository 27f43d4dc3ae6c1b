"""Broken copies of the templates, made in the template model (never by editing YAML text): named breakages of
the architecture's rules, the writer of a broken copy, and the rule list of `cloudformation/README.md`.

A breakage changes the loaded templates (a dict file name -> Template) in place; `broken_copy` loads a folder,
applies it and writes the result as YAML that load_template and cfn-lint read back as the same model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from clickstream.infra.checks import ARCHITECTURE_RULES
from clickstream.infra.templates import Template
from clickstream.settings import project_root

Change = Callable[[dict[str, Template]], None]


@dataclass(frozen=True)
class Breakage:
    """One deliberate mistake: what it does, the change that makes it and the architecture checks it must fail."""

    description: str
    change: Change
    fails: frozenset[str]


def write_templates(templates: Iterable[Template], folder: Path) -> Path:
    """Each template's model (as load_template decodes it, possibly changed) written to `folder` as YAML in long
    form, which load_template and cfn-lint read back as the same model."""
    folder.mkdir(parents=True, exist_ok=True)
    for template in templates:
        (folder / template.name).write_text(yaml.safe_dump(template.body, sort_keys=False, width=120))
    return folder


def broken_copy(source: Path, folder: Path, breaks: Change) -> Path:
    """The templates of `source`, loaded into the model, changed by `breaks` (given them by file name) and
    written to `folder`."""
    templates = {path.name: Template.load(path) for path in sorted(Path(source).glob("*.yaml"))}
    breaks(templates)
    return write_templates(templates.values(), Path(folder))


def tcp(port: Any, **peer: Any) -> dict:
    """A security-group rule for one TCP port and a peer (CidrIp=..., SourceSecurityGroupId=...)."""
    return {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, **peer}


def _ingress(templates: dict[str, Template], name: str, group: str) -> list:
    return templates[name].props(group).setdefault("SecurityGroupIngress", [])


def _statement(templates: dict[str, Template], name: str, role: str, sid: str) -> dict:
    statements = templates[name].props(role)["Policies"][0]["PolicyDocument"]["Statement"]
    return next(s for s in statements if s.get("Sid") == sid)


def _add(templates: dict[str, Template], name: str, logical_id: str, resource_type: str, **properties: Any) -> None:
    templates[name].resources[logical_id] = {"Type": resource_type, "Properties": properties}


def ssh_from_anywhere(templates: dict[str, Template]) -> None:
    _ingress(templates, "network.yaml", "WebSecurityGroup").append(tcp(22, CidrIp="0.0.0.0/0", Description="SSH for the admin"))


def s3_star_for_the_etl(templates: dict[str, Template]) -> None:
    _statement(templates, "analytics.yaml", "EtlFunctionRole", "ReadRawEvents")["Action"] = "s3:*"


def nat_gateway(templates: dict[str, Template]) -> None:
    _add(templates, "network.yaml", "NatAddress", "AWS::EC2::EIP", Domain="vpc")
    _add(templates, "network.yaml", "NatGateway", "AWS::EC2::NatGateway", SubnetId={"Ref": "PublicSubnetA"},
         AllocationId={"Fn::GetAtt": ["NatAddress", "AllocationId"]})
    _add(templates, "network.yaml", "PrivateDefaultRouteA", "AWS::EC2::Route", RouteTableId={"Ref": "PrivateRouteTableA"},
         DestinationCidrBlock="0.0.0.0/0", NatGatewayId={"Ref": "NatGateway"})


def warehouse_open_to_the_vpc(templates: dict[str, Template]) -> None:
    _ingress(templates, "network.yaml", "DwSecurityGroup").append(tcp({"Ref": "DwPort"}, CidrIp={"Ref": "VpcCidr"}))


def no_secrets_manager_endpoint(templates: dict[str, Template]) -> None:
    del templates["network.yaml"].resources["SecretsManagerEndpoint"]


def warehouse_without_imdsv2(templates: dict[str, Template]) -> None:
    templates["analytics.yaml"].props("DwInstance")["MetadataOptions"]["HttpTokens"] = "optional"


BREAKAGES: dict[str, Breakage] = {
    "SSH from anywhere": Breakage(
        "the web tier admits TCP 22 from 0.0.0.0/0 (someone 'just needs to log in quickly')", ssh_from_anywhere,
        frozenset({"no_port_22", "no_world_ingress_except_cloudfront_to_web"})),
    "s3:* for the ETL": Breakage(
        "the ETL's role may do anything to the raw events instead of s3:GetObject", s3_star_for_the_etl,
        frozenset({"lambda_roles_are_exact_allow_lists", "iam_grants_name_their_resources"})),
    "a NAT gateway": Breakage(
        "a NAT gateway with a default route from private route table A (so its subnet and the endpoints there are no "
        "longer private)", nat_gateway,
        frozenset({"no_nat_gateway", "private_route_tables_stay_in_vpc", "analytics_only_in_private_subnets",
                   "private_subnets_have_their_endpoints"})),
    "warehouse open to the VPC": Breakage(
        "the warehouse's PostgreSQL port admits the whole VPC range, not only sg_Lambda_ETL", warehouse_open_to_the_vpc,
        frozenset({"warehouse_postgres_admits_only_etl"})),
    "no Secrets Manager endpoint": Breakage(
        "the secretsmanager interface endpoint is removed: the ETL cannot read its secret", no_secrets_manager_endpoint,
        frozenset({"private_subnets_have_their_endpoints"})),
    "warehouse without IMDSv2": Breakage(
        "the warehouse instance accepts IMDSv1 (HttpTokens optional)", warehouse_without_imdsv2,
        frozenset({"instances_imdsv2_and_encrypted_volumes"})),
}


def rule_list(readme: Path | None = None) -> list[dict[str, str]]:
    """The architecture's rules as `cloudformation/README.md` lists them: one row per rule, its line as written and
    the checks that enforce it (the check functions and `[CS-...]` policy rules the line names)."""
    text = (readme or project_root() / "cloudformation" / "README.md").read_text(encoding="utf-8")
    section = text.split("### The architecture's rules\n", 1)[1].split("\n## ", 1)[0]
    items = next(paragraph for paragraph in section.split("\n\n") if paragraph.startswith("- "))
    rows = []
    for item in items.removeprefix("- ").split("\n- "):
        named = re.findall(r"`([^`]+)`", item)
        rows.append({"rule": " ".join(item.split()),
                     "checked by": ", ".join(n for n in named if n in ARCHITECTURE_RULES or n.startswith("[CS-"))})
    return rows
