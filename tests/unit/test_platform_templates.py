"""cloudformation/network.yaml, frontend.yaml and the warehouse part of analytics.yaml: what the issue asks of
each resource, the outputs the notebooks read, and that the local stack still resolves all four templates.
The security rules themselves are tests/unit/test_template_checks.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from cfnlint.api import ManualArgs, lint_file

from clickstream.infra.templates import Stack, find_function, import_arguments, load_stacks
from clickstream.settings import Settings
from template_helpers import as_list

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = sorted((ROOT / "cloudformation").glob("*.yaml"))
SSM_CORE = {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"}


@pytest.fixture(scope="module")
def stacks() -> dict[str, Stack]:
    settings = Settings.from_env({}, project=ROOT, home=ROOT / ".clickstream-unused")
    return {stack.path.stem: stack for stack in load_stacks(settings)}


@pytest.fixture(scope="module")
def network(stacks) -> Stack:
    return stacks["network"]


def imported(stack: Stack, value) -> str:
    """The export an `{"Fn::ImportValue": {"Fn::Sub": "${XStackName}-Name"}}` names, resolved locally."""
    assert list(value) == ["Fn::ImportValue"], value
    return stack.resolve(value["Fn::ImportValue"])


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda path: path.name)
def test_cfn_lint_reports_nothing_not_even_informational(path):
    assert [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in lint_file(path, config=ManualArgs(include_checks=["I"]))] == []


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda path: path.name)
def test_every_string_parameter_is_constrained(stacks, path):
    for name, spec in stacks[path.stem].body.get("Parameters", {}).items():
        if spec["Type"] == "String":
            assert "AllowedPattern" in spec or "AllowedValues" in spec, f"{path.name} {name}"


def test_every_import_is_an_export_of_the_folder_in_deployment_order(stacks):
    order = ["network", "frontend", "ingestion", "analytics"]  # ingestion's authorizer imports the user pool
    exporters: dict[str, str] = {}
    for stem in order:
        stack = stacks[stem]
        for name in import_arguments(stack.body):
            export = stack.resolve(name)
            assert export in exporters, f"{stem} imports {export}, which no stack deployed before it exports"
        for output in stack.body.get("Outputs", {}).values():
            if "Export" in output:
                exporters[stack.resolve(output["Export"]["Name"])] = stem


# --- network.yaml ---------------------------------------------------------------------------------------
def test_two_azs_public_and_private_and_only_the_public_table_has_a_route(network):
    subnets = network.of_type("AWS::EC2::Subnet")
    assert sorted(subnets) == ["PrivateSubnetA", "PrivateSubnetB", "PublicSubnetA", "PublicSubnetB"]
    for lid, subnet in subnets.items():
        props = subnet["Properties"]
        assert props["MapPublicIpOnLaunch"] is lid.startswith("Public")
        assert props["AvailabilityZone"] == {"Fn::Select": [0 if lid.endswith("A") else 1, {"Fn::GetAZs": ""}]}
    (route,) = network.of_type("AWS::EC2::Route").values()
    assert route["Properties"] == {"RouteTableId": {"Ref": "PublicRouteTable"}, "DestinationCidrBlock": "0.0.0.0/0",
                                   "GatewayId": {"Ref": "InternetGateway"}}
    associations = {a["Properties"]["SubnetId"]["Ref"]: a["Properties"]["RouteTableId"]["Ref"]
                    for a in network.of_type("AWS::EC2::SubnetRouteTableAssociation").values()}
    assert associations == {"PublicSubnetA": "PublicRouteTable", "PublicSubnetB": "PublicRouteTable",
                            "PrivateSubnetA": "PrivateRouteTableA", "PrivateSubnetB": "PrivateRouteTableB"}
    assert not network.of_type("AWS::EC2::NatGateway")


def test_s3_gateway_endpoint_on_the_private_tables_and_four_interface_endpoints_with_private_dns(network):
    endpoints = {network.resolve(e["Properties"]["ServiceName"]): e["Properties"]
                 for e in network.of_type("AWS::EC2::VPCEndpoint").values()}
    assert set(endpoints) == {f"com.amazonaws.us-east-1.{s}" for s in ("s3", "ssm", "ssmmessages", "ec2messages", "secretsmanager")}
    s3 = endpoints.pop("com.amazonaws.us-east-1.s3")
    assert s3["VpcEndpointType"] == "Gateway"
    assert s3["RouteTableIds"] == [{"Ref": "PrivateRouteTableA"}, {"Ref": "PrivateRouteTableB"}]
    for props in endpoints.values():
        assert props["VpcEndpointType"] == "Interface" and props["PrivateDnsEnabled"] is True
        assert props["SubnetIds"] == [{"Ref": "PrivateSubnetA"}, {"Ref": "PrivateSubnetB"}]
        assert props["SecurityGroupIds"] == [{"Ref": "EndpointSecurityGroup"}]
    group = network.props("EndpointSecurityGroup")
    assert group["SecurityGroupIngress"] == [{"Description": "HTTPS from the VPC", "IpProtocol": "tcp", "FromPort": 443,
                                              "ToPort": 443, "CidrIp": {"Ref": "VpcCidr"}}]
    vpc = network.props("Vpc")
    assert vpc["EnableDnsSupport"] is True and vpc["EnableDnsHostnames"] is True


def test_the_three_named_groups_and_what_they_admit(network):
    names = {network.props(lid)["GroupName"]: lid for lid in network.of_type("AWS::EC2::SecurityGroup")}
    assert {"sg_oltp_webDB", "sg_Lambda_ETL", "sg_analytics_ShinyDWH"} <= set(names)
    web = network.props(names["sg_oltp_webDB"])["SecurityGroupIngress"]
    assert [(r["FromPort"], r["ToPort"], r["SourcePrefixListId"]) for r in web] == [
        (80, 80, {"Ref": "CloudFrontOriginPrefixListId"})]  # CloudFront's origin-facing servers only
    dw = names["sg_analytics_ShinyDWH"]
    assert "SecurityGroupIngress" not in network.props(dw), "the dashboard port admits nothing: SSM port forwarding"
    admits = [r["Properties"] for r in network.of_type("AWS::EC2::SecurityGroupIngress").values()
              if r["Properties"]["GroupId"] == {"Ref": dw}]
    assert [(a["FromPort"], a["SourceSecurityGroupId"]) for a in admits] == [({"Ref": "DwPort"}, {"Ref": names["sg_Lambda_ETL"]})]


# --- frontend.yaml --------------------------------------------------------------------------------------
def _instance_basics(stack: Stack, lid: str) -> dict:
    props = stack.props(lid)
    assert props["MetadataOptions"]["HttpTokens"] == "required"
    (device,) = props["BlockDeviceMappings"]
    assert device["Ebs"]["Encrypted"] is True
    assert "KeyName" not in props
    profile = stack.props(props["IamInstanceProfile"]["Ref"])
    (role,) = profile["Roles"]
    assert SSM_CORE in stack.props(role["Ref"])["ManagedPolicyArns"], "Session Manager"
    return props


def test_oltp_instance_public_subnet_web_group_ssm_not_ssh(stacks):
    frontend = stacks["frontend"]
    props = _instance_basics(frontend, "OltpInstance")
    assert imported(frontend, props["SubnetId"]) == "clickstream-network-PublicSubnetAId"
    assert [imported(frontend, g) for g in props["SecurityGroupIds"]] == ["clickstream-network-WebSecurityGroupId"]


def test_cognito_and_the_storefront_behind_cloudfront_with_origin_access_control(stacks):
    frontend = stacks["frontend"]
    client = frontend.props("UserPoolClient")
    assert client["UserPoolId"] == {"Ref": "UserPool"} and client["GenerateSecret"] is False
    distribution = frontend.props("StorefrontDistribution")["DistributionConfig"]
    (origin,) = [o for o in distribution["Origins"] if "S3OriginConfig" in o]  # /static/*; pages: test_aws_web.py
    assert origin["OriginAccessControlId"] == {"Fn::GetAtt": ["StorefrontOriginAccessControl", "Id"]}
    assert distribution["DefaultCacheBehavior"]["ViewerProtocolPolicy"] == "redirect-to-https"
    statements = frontend.props("StorefrontBucketPolicy")["PolicyDocument"]["Statement"]
    (allow,) = [s for s in statements if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "cloudfront.amazonaws.com"} and allow["Action"] == "s3:GetObject"
    assert frontend.resolve(allow["Condition"]["StringEquals"]["aws:SourceArn"]).endswith(":distribution/StorefrontDistribution")


# --- analytics.yaml: the warehouse instance -------------------------------------------------------------
def test_dw_instance_private_subnet_dw_group_ssm_imdsv2_encrypted(stacks):
    analytics = stacks["analytics"]
    props = _instance_basics(analytics, "DwInstance")
    assert {"Key": "Name", "Value": "SBW_EC2_ShinyDWH"} in props["Tags"]
    assert imported(analytics, props["SubnetId"]) == "clickstream-network-PrivateSubnetAId"
    assert [imported(analytics, g) for g in props["SecurityGroupIds"]] == ["clickstream-network-DwSecurityGroupId"]
    assert props["PrivateIpAddress"] == {"Ref": "DwHost"}, "the address the DW secret names"
    role = analytics.props("DwInstanceRole")
    grants = {(s["Action"], str(s["Resource"])) for p in role["Policies"] for s in as_list(p["PolicyDocument"]["Statement"])}
    assert ("secretsmanager:GetSecretValue", str({"Ref": "DwSecret"})) in grants and len(grants) == 3
    assert ("secretsmanager:PutSecretValue", str({"Ref": "DwSecret"})) in grants, "it adds its CA and sslmode"


def test_dw_user_data_installs_postgres_and_the_dashboard_and_reads_the_password_from_secrets_manager(stacks):
    analytics = stacks["analytics"]
    script = analytics.resolve(analytics.props("DwInstance")["UserData"]["Fn::Base64"])
    assert "dnf install -y postgresql16-server" in script
    assert "aws secretsmanager get-secret-value --secret-id 'clickstream/dw/etl_writer-local'" in script
    assert "ALTER ROLE etl_writer PASSWORD :'etl'" in script
    assert "shiny run --host 127.0.0.1 --port 8787" in script, "the dashboard listens on the loopback only"
    assert "0.0.0.0" not in script


def test_outputs_the_notebooks_read(stacks):
    assert stacks["ingestion"].outputs()["ApiUrl"].endswith("/clickstream")
    assert stacks["ingestion"].outputs()["RawBucketName"] == "clickstream-s3-ingest-local"
    outputs = stacks["analytics"].outputs()
    assert outputs["DwInstanceId"] == "DwInstance"  # the instance id in AWS
    assert outputs["DashboardSessionCommand"] == (
        "aws ssm start-session --target DwInstance --document-name AWS-StartPortForwardingSession "
        "--parameters '{\"portNumber\":[\"8787\"],\"localPortNumber\":[\"8787\"]}' --region us-east-1")


def test_the_local_stack_still_resolves_every_template(stacks):
    assert [b.name for stack in stacks.values() for b in stack.buckets()] == [
        "clickstream-storefront-local", "clickstream-access-logs-local", "clickstream-s3-ingest-local"]
    assert [s.name for stack in stacks.values() for s in stack.secrets()] == [
        "clickstream/dw/etl_writer-local", "clickstream/storefront/cookie-secret-local"]
    assert [api.name for stack in stacks.values() for api in stack.http_apis()] == ["clickstream-http-api"]
    assert find_function(list(stacks.values()), "EtlFunction").environment["RAW_BUCKET"] == "clickstream-s3-ingest-local"
    assert not [f for s in stacks.values() for f in s.functions() if s.path.stem in ("network", "frontend")]
