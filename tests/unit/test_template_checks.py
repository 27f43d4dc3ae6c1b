"""clickstream.infra.checks: every rule holds on the real templates, and each deliberately broken copy of
them makes the right rule fail (and only that one), so the checks would catch the regression they name."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from clickstream.infra import checks
from clickstream.infra.checks import ARCHITECTURE_RULES, Templates, policy_rules

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "cloudformation"


@pytest.fixture(scope="module")
def real() -> Templates:
    return Templates(TEMPLATES)


@pytest.fixture
def copy(tmp_path) -> Path:
    """A copy of the templates (and nothing else) to break."""
    folder = tmp_path / "templates"
    folder.mkdir()
    for path in TEMPLATES.glob("*.yaml"):
        shutil.copy(path, folder / path.name)
    return folder


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} must appear exactly once in {path.name}"
    path.write_text(text.replace(old, new))


def failing_rules(folder: Path) -> dict[str, list[str]]:
    templates = Templates(folder)
    results = {name: [str(f) for f in check(templates)] for name, check in ARCHITECTURE_RULES.items()}
    return {name: findings for name, findings in results.items() if findings}


def policy_tags(folder: Path) -> set[str]:
    return {finding.rule.removeprefix("policy ") for finding in policy_rules(folder)}


def test_the_folder_holds_the_four_templates(real):
    assert [t.name for t in real] == ["analytics.yaml", "frontend.yaml", "ingestion.yaml", "network.yaml"]


@pytest.mark.parametrize("name", ARCHITECTURE_RULES)
def test_each_architecture_rule_holds_on_the_real_templates(real, name):
    assert [str(f) for f in ARCHITECTURE_RULES[name](real)] == []


def test_policy_rules_hold_with_only_the_justified_suppressions(real):
    assert [str(f) for f in policy_rules(real)] == []
    (waiver,) = checks.load_suppressions(TEMPLATES / "policy-suppressions.toml")
    assert (waiver["rule"], waiver["template"], waiver["resource"]) == (
        "CS-IAM-NO-STAR-RESOURCE", "analytics.yaml", "EtlFunctionRole")
    assert len(waiver["reason"].split()) > 20


def test_without_the_suppression_the_policy_rule_fires_and_a_stale_one_is_reported(real, tmp_path, copy):
    empty = tmp_path / "none.toml"
    empty.write_text("")
    unwaived = policy_rules(real, suppressions=empty)
    assert [(f.rule, f.template, f.resource) for f in unwaived] == [
        ("policy CS-IAM-NO-STAR-RESOURCE", "analytics.yaml", "EtlFunctionRole")]
    stale = tmp_path / "stale.toml"
    stale.write_text((TEMPLATES / "policy-suppressions.toml").read_text().replace("EtlFunctionRole", "OtherRole"))
    rules = {f.rule for f in policy_rules(real, suppressions=stale)}
    assert rules == {"policy CS-IAM-NO-STAR-RESOURCE", "policy suppressions"}
    unjustified = tmp_path / "unjustified.toml"
    unjustified.write_text('[[suppress]]\nrule = "CS-X"\ntemplate = "a.yaml"\nresource = "R"\nreason = " "\n')
    with pytest.raises(ValueError, match="lacks \\['reason'\\]"):
        policy_rules(real, suppressions=unjustified)


# --- mutations: (file, old, new, the architecture rules that must fail, policy tags that must fire) ----------
SSH_RULE = (
    "network.yaml",
    """      SecurityGroupIngress:
        - Description: HTTP from the internet (redirected to HTTPS)""",
    """      SecurityGroupIngress:
        - Description: SSH for the admin
          IpProtocol: tcp
          FromPort: 22
          ToPort: 22
          CidrIp: 0.0.0.0/0
        - Description: HTTP from the internet (redirected to HTTPS)""",
    {"no_port_22", "no_world_ingress_except_web_http"},
    {"CS-SG-NO-SSH"},
)
SSH_FROM_VPC = (
    "network.yaml",
    """  DwIngressFromEtl:""",
    """  DwSshFromVpc:
    Type: AWS::EC2::SecurityGroupIngress
    Properties:
      GroupId: !Ref DwSecurityGroup
      Description: SSH from inside the VPC
      IpProtocol: tcp
      FromPort: 20
      ToPort: 25
      CidrIp: !Ref VpcCidr

  DwIngressFromEtl:""",
    {"no_port_22"},
    set(),  # a port range around 22: the property rules only see FromPort/ToPort values, the architecture rule the range
)
NAT_GATEWAY = (
    "network.yaml",
    """  PublicRouteTable:
    Type: AWS::EC2::RouteTable""",
    """  NatAddress:
    Type: AWS::EC2::EIP
    Properties:
      Domain: vpc

  NatGateway:
    Type: AWS::EC2::NatGateway
    Properties:
      SubnetId: !Ref PublicSubnetA
      AllocationId: !GetAtt NatAddress.AllocationId

  PrivateDefaultRouteA:
    Type: AWS::EC2::Route
    Properties:
      RouteTableId: !Ref PrivateRouteTableA
      DestinationCidrBlock: 0.0.0.0/0
      NatGatewayId: !Ref NatGateway

  PublicRouteTable:
    Type: AWS::EC2::RouteTable""",
    {"no_nat_gateway", "private_route_tables_stay_in_vpc", "analytics_only_in_private_subnets"},
    {"CS-NO-NAT"},
)
S3_STAR = (
    "ingestion.yaml",
    "                Action: s3:PutObject\n",
    '                Action: "s3:*"\n',
    {"lambda_roles_are_exact_allow_lists"},
    {"CS-IAM-NO-WILDCARD-ACTION"},
)
ETL_READS_EVERY_SECRET = (
    "analytics.yaml",
    """                Action: secretsmanager:GetSecretValue
                Resource: !Ref DwSecret
              - Sid: OwnLogs""",
    """                Action: secretsmanager:GetSecretValue
                Resource: !Sub "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:*"
              - Sid: OwnLogs""",
    {"lambda_roles_are_exact_allow_lists"},
    set(),  # a wildcard inside an ARN is beyond what a property rule can judge: the exact allow-list catches it
)
DW_IN_PUBLIC_SUBNET = (
    "analytics.yaml",
    '      SubnetId: { "Fn::ImportValue": !Sub "${NetworkStackName}-PrivateSubnetAId" }',
    '      SubnetId: { "Fn::ImportValue": !Sub "${NetworkStackName}-PublicSubnetAId" }',
    {"analytics_only_in_private_subnets"},
    set(),
)
ETL_IN_PUBLIC_SUBNET = (
    "analytics.yaml",
    '          - { "Fn::ImportValue": !Sub "${NetworkStackName}-PrivateSubnetBId" }',
    '          - { "Fn::ImportValue": !Sub "${NetworkStackName}-PublicSubnetBId" }',
    {"analytics_only_in_private_subnets"},
    set(),
)
PRIVATE_DEFAULT_ROUTE = (
    "network.yaml",
    """  PrivateSubnetARouteTable:""",
    """  PrivateDefaultRouteB:
    Type: AWS::EC2::Route
    DependsOn: InternetGatewayAttachment
    Properties:
      RouteTableId: !Ref PrivateRouteTableB
      DestinationCidrBlock: 0.0.0.0/0
      GatewayId: !Ref InternetGateway

  PrivateSubnetARouteTable:""",
    {"private_route_tables_stay_in_vpc", "analytics_only_in_private_subnets"},  # the ETL runs in private subnet B
    set(),
)
PUBLIC_BUCKET = (
    "ingestion.yaml",
    """        BlockPublicPolicy: true
        IgnorePublicAcls: true
        RestrictPublicBuckets: true
      OwnershipControls:""",
    """        BlockPublicPolicy: false
        IgnorePublicAcls: true
        RestrictPublicBuckets: false
      OwnershipControls:""",
    {"buckets_private_encrypted_tls_only"},
    {"CS-S3-PUBLIC-ACCESS-BLOCK"},
)
BUCKET_READABLE_BY_EVERYONE = (
    "frontend.yaml",
    """          - Sid: CloudFrontReadsThroughOriginAccessControl""",
    """          - Sid: EveryoneReads
            Effect: Allow
            Principal: "*"
            Action: s3:GetObject
            Resource: !Sub "${StorefrontBucket.Arn}/*"
          - Sid: CloudFrontReadsThroughOriginAccessControl""",
    {"buckets_private_encrypted_tls_only"},
    set(),
)
BUCKET_WITHOUT_TLS_DENY = (
    "ingestion.yaml",
    '                aws:SecureTransport: "false"',
    '                aws:SecureTransport: "true"',
    {"buckets_private_encrypted_tls_only"},
    set(),
)
PLAINTEXT_PASSWORD_DEFAULT = (
    "analytics.yaml",
    """  DwPort:
    Type: Number""",
    """  DwAdminPassword:
    Type: String
    Default: Sup3r-Secret-2026
    Description: Password of the warehouse's admin.
  DwPort:
    Type: Number""",
    {"no_plaintext_secrets"},
    set(),
)
PLAINTEXT_PASSWORD_IN_USER_DATA = (
    "analytics.yaml",
    "            unset ETL_PW\n",
    "            psql -c \"ALTER ROLE postgres PASSWORD 'hunter22'\"\n            unset ETL_PW\n",
    {"no_plaintext_secrets"},
    set(),
)
DASHBOARD_OPEN_TO_THE_INTERNET = (
    "network.yaml",
    """      VpcId: !Ref Vpc
      SecurityGroupEgress:
        - Description: S3 through the gateway endpoint (packages, the dashboard bundle)""",
    """      VpcId: !Ref Vpc
      SecurityGroupIngress:
        - Description: the dashboard
          IpProtocol: tcp
          FromPort: 8787
          ToPort: 8787
          CidrIp: 0.0.0.0/0
      SecurityGroupEgress:
        - Description: S3 through the gateway endpoint (packages, the dashboard bundle)""",
    {"no_world_ingress_except_web_http"},
    set(),
)
DW_WITHOUT_IMDSV2 = (
    "analytics.yaml",
    "      PrivateIpAddress: !Ref DwHost\n      SecurityGroupIds:",
    "      PrivateIpAddress: !Ref DwHost\n      KeyName: admin\n      SecurityGroupIds:",
    {"no_port_22"},
    {"CS-EC2-NO-KEYPAIR"},
)

MUTATIONS = {
    "ssh rule": SSH_RULE,
    "ssh in a port range from inside the VPC": SSH_FROM_VPC,
    "NAT gateway": NAT_GATEWAY,
    "s3:* in the ingest role": S3_STAR,
    "ETL reads every secret": ETL_READS_EVERY_SECRET,
    "DW in a public subnet": DW_IN_PUBLIC_SUBNET,
    "ETL in a public subnet": ETL_IN_PUBLIC_SUBNET,
    "0.0.0.0/0 route from a private subnet": PRIVATE_DEFAULT_ROUTE,
    "public access block off": PUBLIC_BUCKET,
    "bucket readable by everyone": BUCKET_READABLE_BY_EVERYONE,
    "no TLS-only policy": BUCKET_WITHOUT_TLS_DENY,
    "plaintext password default": PLAINTEXT_PASSWORD_DEFAULT,
    "plaintext password in user data": PLAINTEXT_PASSWORD_IN_USER_DATA,
    "dashboard open to the internet": DASHBOARD_OPEN_TO_THE_INTERNET,
    "SSH key pair on the DW": DW_WITHOUT_IMDSV2,
}


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_a_broken_copy_fails_exactly_the_right_rules(copy, mutation):
    template, old, new, rules, tags = MUTATIONS[mutation]
    # Given a copy of the templates that passes every rule
    assert failing_rules(copy) == {}
    # When one template is broken in one place
    edit(copy / template, old, new)
    # Then exactly the rules about that fail, naming the broken template
    failing = failing_rules(copy)
    assert set(failing) == rules, failing
    assert any(line.startswith(template) for findings in failing.values() for line in findings), failing
    if tags:
        assert tags <= policy_tags(copy)


def test_make_check_templates_fails_on_a_broken_copy_and_passes_on_the_real_templates(copy):
    edit(copy / SSH_RULE[0], SSH_RULE[1], SSH_RULE[2])
    broken = subprocess.run(["make", "-s", "check-templates", f"TEMPLATES_DIR={copy}"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert broken.returncode != 0, broken.stdout + broken.stderr
    assert "FAIL no_port_22" in broken.stdout and "WebSecurityGroup" in broken.stdout
    real = subprocess.run(["make", "-s", "check-templates"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert real.returncode == 0, real.stdout + real.stderr
    assert "all checks passed" in real.stdout


def test_the_cli_names_each_rule_and_exits_non_zero_on_findings(copy, capsys):
    assert checks.main([str(copy)]) == 0
    edit(copy / NAT_GATEWAY[0], NAT_GATEWAY[1], NAT_GATEWAY[2])
    assert checks.main([str(copy)]) == 1
    out = capsys.readouterr().out
    assert "FAIL no_nat_gateway" in out and "network.yaml NatGateway: is a NAT gateway" in out
    assert "FAIL policy rules (cfn-lint custom rules)" in out


# --- the rules for people -------------------------------------------------------------------------------
def test_security_group_rows_name_groups_peers_and_ports_for_people(real):
    rows = checks.security_group_rows(real)
    assert len(rows) == len(real.security_group_rules())
    assert {"group": "sg_analytics_ShinyDWH", "direction": "ingress", "protocol": "tcp", "port": "5432",
            "peer": "sg_Lambda_ETL", "declared in": "network.yaml DwIngressFromEtl"} in rows
    assert {"group": "sg_Lambda_ETL", "direction": "egress", "protocol": "tcp", "port": "443",
            "peer": "S3 (prefix list)", "declared in": "network.yaml EtlSecurityGroup"} in rows
    web_in = sorted((r["port"], r["peer"]) for r in rows if r["group"] == "sg_oltp_webDB" and r["direction"] == "ingress")
    assert web_in == [("443", "0.0.0.0/0"), ("80", "0.0.0.0/0")]


def test_security_group_rows_show_port_ranges_and_all_traffic(copy):
    network = copy / "network.yaml"
    edit(network, "(redirected to HTTPS)\n          IpProtocol: tcp\n          FromPort: 80\n          ToPort: 80\n",
         "(redirected to HTTPS)\n          IpProtocol: tcp\n          FromPort: 8000\n          ToPort: 8080\n")
    edit(network, "        - Description: HTTPS from the internet\n          IpProtocol: tcp\n",
         "        - Description: HTTPS from the internet\n          IpProtocol: -1\n")
    web_in = sorted((r["protocol"], r["port"]) for r in checks.security_group_rows(copy)
                    if r["group"] == "sg_oltp_webDB" and r["direction"] == "ingress")
    assert web_in == [("-1", "all"), ("tcp", "8000-8080")]
