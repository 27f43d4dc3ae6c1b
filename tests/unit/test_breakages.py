"""clickstream.infra.breakages: each named breakage, made in the model and written as a copy, fails exactly the
architecture checks it names; an unchanged copy fails none; the rule list is the README's, with its checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from clickstream.infra import breakages
from clickstream.infra.checks import ARCHITECTURE_RULES, Templates
from clickstream.infra.templates import Template

TEMPLATES = Path(__file__).resolve().parents[2] / "cloudformation"


def failing_checks(folder: Path) -> set[str]:
    templates = Templates(folder)
    return {name for name, check in ARCHITECTURE_RULES.items() if check(templates)}


@pytest.mark.parametrize("name", breakages.BREAKAGES)
def test_each_breakage_fails_exactly_the_checks_it_names(tmp_path, name):
    breakage = breakages.BREAKAGES[name]
    folder = breakages.broken_copy(TEMPLATES, tmp_path / "broken", breakage.change)
    assert failing_checks(folder) == breakage.fails
    assert breakage.fails <= set(ARCHITECTURE_RULES) and breakage.description


def test_an_unchanged_copy_fails_nothing_and_the_source_is_left_alone(tmp_path):
    before = {path.name: path.read_text() for path in TEMPLATES.glob("*.yaml")}
    folder = breakages.broken_copy(TEMPLATES, tmp_path / "same", lambda templates: None)
    assert sorted(path.name for path in folder.glob("*.yaml")) == sorted(before)
    assert failing_checks(folder) == set()
    breakages.broken_copy(TEMPLATES, tmp_path / "ssh", breakages.ssh_from_anywhere)
    assert {path.name: path.read_text() for path in TEMPLATES.glob("*.yaml")} == before


def test_a_written_copy_reads_back_as_the_changed_model(tmp_path):
    folder = breakages.broken_copy(TEMPLATES, tmp_path / "nat", breakages.nat_gateway)
    network = Template.load(folder / "network.yaml")
    assert network.props("PrivateDefaultRouteA") == {
        "RouteTableId": {"Ref": "PrivateRouteTableA"}, "DestinationCidrBlock": "0.0.0.0/0",
        "NatGatewayId": {"Ref": "NatGateway"}}
    assert network.resources["NatGateway"]["Type"] == "AWS::EC2::NatGateway"


def test_the_rule_list_is_the_readmes_with_each_rule_checked():
    rows = breakages.rule_list()
    named = {name for row in rows for name in row["checked by"].split(", ") if name in ARCHITECTURE_RULES}
    assert named == set(ARCHITECTURE_RULES)
    assert all(row["checked by"] and row["rule"] and "\n" not in row["rule"] for row in rows)
    ssh = next(row for row in rows if "no_port_22" in row["checked by"])
    assert ssh["checked by"].split(", ")[0] == "no_port_22" and "[CS-SG-NO-SSH]" in ssh["checked by"]
    assert ssh["rule"].startswith("No security group rule covers port 22")


def test_the_rule_list_reads_any_readme_with_the_section(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# T\n\n### The architecture's rules\nOne line each:\n\n- No NAT gateway,\n  ever: `no_nat_gateway`, "
                      "`[CS-NO-NAT]`.\n- Uses `DwPort` only: `dashboard_port_admits_nothing`.\n\nafter\n\n## Next\n- not a rule\n")
    assert breakages.rule_list(readme) == [
        {"rule": "No NAT gateway, ever: `no_nat_gateway`, `[CS-NO-NAT]`.", "checked by": "no_nat_gateway, [CS-NO-NAT]"},
        {"rule": "Uses `DwPort` only: `dashboard_port_admits_nothing`.", "checked by": "dashboard_port_admits_nothing"}]
