"""clickstream.infra.checks: every rule holds on the real templates, and each broken copy of them (changed in the
model, written back as YAML) makes the right rule fail, and only that one, so the checks catch the regression
they name. Every rule has at least one copy that breaks it alone."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Callable

import pytest

from clickstream.infra import checks
from clickstream.infra.checks import ARCHITECTURE_RULES, Templates, policy_rules
from clickstream.infra.templates import Template
from template_helpers import broken_copy

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "cloudformation"
Breaks = Callable[[dict[str, Template]], None]


@pytest.fixture(scope="module")
def real() -> Templates:
    return Templates(TEMPLATES)


@pytest.fixture
def broken(tmp_path) -> Callable[[Breaks], Path]:
    """A folder with the templates as `breaks` changed them."""
    return lambda breaks: broken_copy(TEMPLATES, tmp_path / "templates", breaks)


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


def test_an_unchanged_copy_written_from_the_model_passes_every_rule(broken):
    folder = broken(lambda templates: None)
    assert failing_rules(folder) == {}
    assert policy_rules(folder) == []


def test_policy_rules_hold_with_only_the_justified_suppressions(real):
    assert [str(f) for f in policy_rules(real)] == []
    (waiver,) = checks.load_suppressions(TEMPLATES / "policy-suppressions.toml")
    assert (waiver["rule"], waiver["template"], waiver["resource"]) == (
        "CS-IAM-NO-STAR-RESOURCE", "analytics.yaml", "EtlFunctionRole")
    assert len(waiver["reason"].split()) > 20


def test_without_the_suppression_the_policy_rule_fires_and_a_stale_one_is_reported(real, tmp_path):
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


# --- broken copies, made in the model ------------------------------------------------------------------------
def imported(export: str) -> dict:
    return {"Fn::ImportValue": {"Fn::Sub": f"${{NetworkStackName}}-{export}"}}


def tcp(port: int | dict, to_port: int | dict | None = None, **peer) -> dict:
    return {"IpProtocol": "tcp", "FromPort": port, "ToPort": port if to_port is None else to_port, **peer}


def add(templates: dict[str, Template], name: str, logical_id: str, resource_type: str, **properties) -> None:
    templates[name].resources[logical_id] = {"Type": resource_type, "Properties": properties}


def props(templates: dict[str, Template], name: str, logical_id: str) -> dict:
    return templates[name].props(logical_id)


def ingress(templates: dict[str, Template], name: str, group: str) -> list:
    return props(templates, name, group).setdefault("SecurityGroupIngress", [])


def statements(templates: dict[str, Template], name: str, role: str) -> list:
    return props(templates, name, role)["Policies"][0]["PolicyDocument"]["Statement"]


def statement(templates: dict[str, Template], name: str, role: str, sid: str) -> dict:
    return next(s for s in statements(templates, name, role) if s.get("Sid") == sid)


def prepend_to_user_data(templates: dict[str, Template], name: str, instance: str, line: str) -> None:
    user_data = props(templates, name, instance)["UserData"]["Fn::Base64"]
    body = user_data["Fn::Sub"] if isinstance(user_data, dict) else user_data
    text = body[0] if isinstance(body, list) else body
    shebang, rest = text.split("\n", 1)
    changed = f"{shebang}\n{line}\n{rest}"
    if isinstance(user_data, str):
        props(templates, name, instance)["UserData"]["Fn::Base64"] = changed
    elif isinstance(body, list):
        body[0] = changed
    else:
        user_data["Fn::Sub"] = changed


def ssh_from_anywhere(t):
    ingress(t, "network.yaml", "WebSecurityGroup").insert(0, tcp(22, CidrIp="0.0.0.0/0"))


def ssh_in_a_port_range_from_the_vpc(t):
    add(t, "network.yaml", "WebSshFromVpc", "AWS::EC2::SecurityGroupIngress", GroupId={"Ref": "WebSecurityGroup"},
        Description="SSH from inside the VPC", **tcp(20, 25, CidrIp={"Ref": "VpcCidr"}))


def ssh_key_pair_on_the_warehouse(t):
    props(t, "analytics.yaml", "DwInstance")["KeyName"] = "admin"


def web_tier_open_on_8080(t):
    ingress(t, "network.yaml", "WebSecurityGroup").append(tcp(8080, CidrIp="0.0.0.0/0"))


def web_tier_open_to_half_the_internet_on_5432(t):
    ingress(t, "network.yaml", "WebSecurityGroup").append(tcp(5432, CidrIp="0.0.0.0/1"))


def web_http_open_to_the_internet(t):
    ingress(t, "network.yaml", "WebSecurityGroup").append(tcp(80, CidrIp="0.0.0.0/0"))


def web_http_from_the_internet_instead_of_cloudfront(t):
    ingress(t, "network.yaml", "WebSecurityGroup")[:] = [tcp(80, CidrIp="0.0.0.0/0")]


def web_http_from_the_vpc_too(t):
    ingress(t, "network.yaml", "WebSecurityGroup").append(tcp(80, CidrIp={"Ref": "VpcCidr"}))


def web_http_from_the_s3_prefix_list(t):
    ingress(t, "network.yaml", "WebSecurityGroup")[0]["SourcePrefixListId"] = {"Ref": "S3PrefixListId"}


def cloudfront_admitted_on_443_too(t):
    ingress(t, "network.yaml", "WebSecurityGroup").append(
        tcp(443, SourcePrefixListId={"Ref": "CloudFrontOriginPrefixListId"}))


def https_open_to_the_internet(t):
    ingress(t, "network.yaml", "WebSecurityGroup").append(tcp(443, CidrIp="0.0.0.0/0"))


def dashboard_open_to_the_internet(t):
    ingress(t, "network.yaml", "DwSecurityGroup").append(tcp(8787, CidrIp="0.0.0.0/0"))


def dashboard_open_to_the_etl(t):
    ingress(t, "network.yaml", "DwSecurityGroup").append(tcp(8787, SourceSecurityGroupId={"Ref": "EtlSecurityGroup"}))


def warehouse_admits_the_web_tier_instead(t):
    props(t, "network.yaml", "DwIngressFromEtl")["SourceSecurityGroupId"] = {"Ref": "WebSecurityGroup"}


def warehouse_admits_a_private_subnet(t):
    ingress(t, "network.yaml", "DwSecurityGroup").append(tcp({"Ref": "DwPort"}, CidrIp={"Ref": "PrivateSubnetBCidr"}))


def warehouse_admits_one_address(t):
    add(t, "network.yaml", "DwFromOneHost", "AWS::EC2::SecurityGroupIngress", GroupId={"Fn::GetAtt": ["DwSecurityGroup", "GroupId"]},
        **tcp(5432, CidrIp="10.20.0.25/32"))


def warehouse_admits_a_prefix_list(t):
    ingress(t, "network.yaml", "DwSecurityGroup").append(tcp(5432, SourcePrefixListId={"Ref": "S3PrefixListId"}))


def warehouse_admits_a_group_of_the_analytics_stack(t):
    add(t, "analytics.yaml", "ReportingGroup", "AWS::EC2::SecurityGroup", GroupName="sg_reporting",
        GroupDescription="reporting", VpcId={"Fn::ImportValue": {"Fn::Sub": "${NetworkStackName}-VpcId"}})
    add(t, "analytics.yaml", "DwFromReporting", "AWS::EC2::SecurityGroupIngress",
        GroupId=imported("DwSecurityGroupId"), **tcp({"Ref": "DwPort"}, SourceSecurityGroupId={"Fn::GetAtt": ["ReportingGroup", "GroupId"]}))


def warehouse_gets_a_second_group_open_on_postgres(t):
    add(t, "analytics.yaml", "DwExtraGroup", "AWS::EC2::SecurityGroup", GroupName="sg_dw_extra", GroupDescription="extra",
        VpcId={"Fn::ImportValue": {"Fn::Sub": "${NetworkStackName}-VpcId"}},
        SecurityGroupIngress=[tcp(5432, CidrIp="10.0.0.0/8")])
    props(t, "analytics.yaml", "DwInstance")["SecurityGroupIds"].append({"Ref": "DwExtraGroup"})


def nat_gateway_routed_from_a_private_subnet(t):
    nat_gateway_alone(t)
    add(t, "network.yaml", "PrivateDefaultRouteA", "AWS::EC2::Route", RouteTableId={"Ref": "PrivateRouteTableA"},
        DestinationCidrBlock="0.0.0.0/0", NatGatewayId={"Ref": "NatGateway"})


def nat_gateway_alone(t):
    add(t, "network.yaml", "NatAddress", "AWS::EC2::EIP", Domain="vpc")
    add(t, "network.yaml", "NatGateway", "AWS::EC2::NatGateway", SubnetId={"Ref": "PublicSubnetA"},
        AllocationId={"Fn::GetAtt": ["NatAddress", "AllocationId"]})


def internet_route_from_private_subnet_b(t):
    add(t, "network.yaml", "PrivateDefaultRouteB", "AWS::EC2::Route", RouteTableId={"Ref": "PrivateRouteTableB"},
        DestinationCidrBlock="0.0.0.0/0", GatewayId={"Ref": "InternetGateway"})
    t["network.yaml"].resources["PrivateDefaultRouteB"]["DependsOn"] = "InternetGatewayAttachment"


def s3_gateway_endpoint_off_private_table_b(t):
    props(t, "network.yaml", "S3GatewayEndpoint")["RouteTableIds"] = [{"Ref": "PrivateRouteTableA"}]


def vpn_routes_propagated_into_private_tables(t):
    add(t, "network.yaml", "VpnGateway", "AWS::EC2::VPNGateway", Type="ipsec.1")
    add(t, "network.yaml", "VpnGatewayAttachment", "AWS::EC2::VPCGatewayAttachment", VpcId={"Ref": "Vpc"},
        VpnGatewayId={"Ref": "VpnGateway"})
    add(t, "network.yaml", "VpnRoutes", "AWS::EC2::VPNGatewayRoutePropagation", VpnGatewayId={"Ref": "VpnGateway"},
        RouteTableIds=[{"Ref": "PrivateRouteTableA"}, {"Ref": "PrivateRouteTableB"}])
    t["network.yaml"].resources["VpnRoutes"]["DependsOn"] = "VpnGatewayAttachment"


def warehouse_group_of_a_parameter_admits_a_cidr(t):
    t["network.yaml"].parameters["ExtraGroupId"] = {"Type": "AWS::EC2::SecurityGroup::Id"}
    add(t, "network.yaml", "ExtraIngress", "AWS::EC2::SecurityGroupIngress", GroupId={"Ref": "ExtraGroupId"},
        **tcp(5432, CidrIp="10.0.0.0/8"))


def no_secrets_manager_endpoint(t):
    del t["network.yaml"].resources["SecretsManagerEndpoint"]


def no_ssmmessages_endpoint(t):
    del t["network.yaml"].resources["SsmMessagesEndpoint"]


def secrets_manager_endpoint_in_subnet_a_only(t):
    props(t, "network.yaml", "SecretsManagerEndpoint")["SubnetIds"] = [{"Ref": "PrivateSubnetA"}]


def endpoint_also_in_a_public_subnet(t):
    props(t, "network.yaml", "SsmEndpoint")["SubnetIds"].append({"Ref": "PublicSubnetA"})


def warehouse_role_reads_the_storefront_secret(t):
    statement(t, "analytics.yaml", "DwInstanceRole", "ReadDwSecret")["Resource"] = [
        {"Ref": "DwSecret"},
        {"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:clickstream/storefront-AbCdEf"}]


def endpoint_without_private_dns(t):
    props(t, "network.yaml", "SsmEndpoint")["PrivateDnsEnabled"] = False


def endpoints_admit_https_from_outside_the_vpc(t):
    ingress(t, "network.yaml", "EndpointSecurityGroup").append(tcp(443, CidrIp="172.16.0.0/12"))


def warehouse_role_may_call_kms(t):
    statements(t, "analytics.yaml", "DwInstanceRole").append({
        "Sid": "DecryptWithTheDataKey", "Effect": "Allow", "Action": "kms:Decrypt",
        "Resource": {"Fn::Sub": "arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/0000-data"}})


def etl_with_the_warehouse_group(t):
    props(t, "analytics.yaml", "EtlFunction")["VpcConfig"]["SecurityGroupIds"] = [imported("DwSecurityGroupId")]


def dw_in_a_public_subnet(t):
    props(t, "analytics.yaml", "DwInstance")["SubnetId"] = imported("PublicSubnetAId")


def dw_with_a_public_ip(t):
    instance = props(t, "analytics.yaml", "DwInstance")
    instance["NetworkInterfaces"] = [{
        "DeviceIndex": "0", "AssociatePublicIpAddress": True, "SubnetId": instance.pop("SubnetId"),
        "PrivateIpAddress": instance.pop("PrivateIpAddress"), "GroupSet": instance.pop("SecurityGroupIds")}]


def etl_in_a_public_subnet(t):
    props(t, "analytics.yaml", "EtlFunction")["VpcConfig"]["SubnetIds"][1] = imported("PublicSubnetBId")


def warehouse_without_imdsv2(t):
    props(t, "analytics.yaml", "DwInstance")["MetadataOptions"]["HttpTokens"] = "optional"


def unencrypted_oltp_volume(t):
    props(t, "frontend.yaml", "OltpInstance")["BlockDeviceMappings"][0]["Ebs"]["Encrypted"] = False


def unencrypted_data_volume_on_the_warehouse(t):
    props(t, "analytics.yaml", "DwDataVolume")["Encrypted"] = False


def s3_star_in_the_ingest_role(t):
    statement(t, "ingestion.yaml", "IngestFunctionRole", "WriteRawEvents")["Action"] = "s3:*"


def etl_reads_every_secret(t):
    statement(t, "analytics.yaml", "EtlFunctionRole", "ReadDwSecret")["Resource"] = {
        "Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:*"}


def etl_reads_another_named_secret(t):
    statement(t, "analytics.yaml", "EtlFunctionRole", "ReadDwSecret")["Resource"] = [
        {"Ref": "DwSecret"},
        {"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:clickstream/oltp-AbCdEf"}]


def etl_reads_the_whole_raw_bucket(t):
    statement(t, "analytics.yaml", "EtlFunctionRole", "ReadRawEvents")["Resource"]["Fn::Sub"][0] = \
        "arn:${AWS::Partition}:s3:::${Bucket}/*"


def warehouse_role_gets_every_object(t):
    statement(t, "analytics.yaml", "DwInstanceRole", "ReadWarehouseBundle")["Action"] = "s3:Get*"


def a_new_role_gets_every_object(t):
    """A role for something the allow-list rules do not know yet (e.g. a learner's reporting job)."""
    add(t, "analytics.yaml", "ReportingRole", "AWS::IAM::Role",
        AssumeRolePolicyDocument={"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "scheduler.amazonaws.com"}, "Action": "sts:AssumeRole"}]},
        Policies=[{"PolicyName": "read-raw", "PolicyDocument": {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "s3:Get*",
             "Resource": {"Fn::Sub": "arn:${AWS::Partition}:s3:::${CodeBucket}/reports/*"}}]}}])


def warehouse_role_reads_every_secret(t):
    statement(t, "analytics.yaml", "DwInstanceRole", "ReadDwSecret")["Resource"] = "*"


def warehouse_role_trusted_by_lambda_too(t):
    trust = props(t, "analytics.yaml", "DwInstanceRole")["AssumeRolePolicyDocument"]["Statement"][0]
    trust["Principal"]["Service"] = ["ec2.amazonaws.com", "lambda.amazonaws.com"]


def oltp_role_is_administrator(t):
    props(t, "frontend.yaml", "OltpInstanceRole")["ManagedPolicyArns"].append(
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AdministratorAccess"})


def public_access_block_off(t):
    block = props(t, "ingestion.yaml", "RawBucket")["PublicAccessBlockConfiguration"]
    block.update(BlockPublicPolicy=False, RestrictPublicBuckets=False)


def bucket_readable_by_everyone(t):
    statements = props(t, "frontend.yaml", "StorefrontBucketPolicy")["PolicyDocument"]["Statement"]
    statements.append({"Sid": "EveryoneReads", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                       "Resource": {"Fn::Sub": "${StorefrontBucket.Arn}/*"}})


def no_tls_only_policy(t):
    statements = props(t, "ingestion.yaml", "RawBucketPolicy")["PolicyDocument"]["Statement"]
    next(s for s in statements if s["Sid"] == "DenyInsecureTransport")["Condition"]["Bool"]["aws:SecureTransport"] = "true"


def bucket_origin_without_oac(t):
    origins = props(t, "frontend.yaml", "StorefrontDistribution")["DistributionConfig"]["Origins"]
    del next(o for o in origins if "S3OriginConfig" in o)["OriginAccessControlId"]


def plaintext_password_default(t):
    t["analytics.yaml"].parameters["DwAdminPassword"] = {
        "Type": "String", "Default": "Sup3r-Secret-2026", "Description": "Password of the warehouse's admin."}


def plaintext_password_in_user_data(t):
    prepend_to_user_data(t, "analytics.yaml", "DwInstance", "psql -c \"ALTER ROLE postgres PASSWORD 'hunter22'\"")


def endpoints_admit_only_one_private_subnet(t):
    ingress(t, "network.yaml", "EndpointSecurityGroup")[0]["CidrIp"] = {"Ref": "PrivateSubnetACidr"}


def etl_cannot_leave_for_the_endpoints(t):
    egress = props(t, "network.yaml", "EtlSecurityGroup")["SecurityGroupEgress"]
    egress[:] = [rule for rule in egress if rule.get("DestinationSecurityGroupId") != {"Ref": "EndpointSecurityGroup"}]


def password_on_a_command_line_in_user_data(t):
    prepend_to_user_data(t, "analytics.yaml", "DwInstance", 'psql -v pw="$ETL_PW" -c "SELECT 1"')


def warehouse_user_data(t) -> list:
    return props(t, "analytics.yaml", "DwInstance")["UserData"]["Fn::Base64"]["Fn::Sub"]


def etl_writer_without_tls_from_the_subnets(t):
    warehouse_user_data(t)[0] = warehouse_user_data(t)[0].replace("hostssl clickstream_dw etl_writer ${PrivateA}",
                                                                  "host clickstream_dw etl_writer ${PrivateA}")


def dw_secret_without_verify_full(t):
    warehouse_user_data(t)[0] = warehouse_user_data(t)[0].replace('sslmode: "verify-full"', 'sslmode: "require"')


def warehouse_image_resolved_at_each_update(t):
    t["analytics.yaml"].parameters["DwImageId"] = {
        "Type": "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>",
        "Default": "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"}


def oltp_image_not_pinned_by_deploy(t):
    del t["frontend.yaml"].body["Metadata"]["clickstream"]["ImageParameters"]


def oltp_data_volume_deleted_even_when_protected(t):
    volume = t["frontend.yaml"].resources["OltpDataVolume"]
    volume["DeletionPolicy"] = volume["UpdateReplacePolicy"] = "Delete"


def warehouse_data_volume_in_another_zone(t):
    props(t, "analytics.yaml", "DwDataVolume")["AvailabilityZone"] = {"Fn::Select": [1, {"Fn::GetAZs": ""}]}


def oltp_database_on_its_root_volume(t):
    del t["frontend.yaml"].resources["OltpDataVolumeAttachment"]


def warehouse_role_may_overwrite_its_bundle(t):
    statement(t, "analytics.yaml", "DwInstanceRole", "ReadWarehouseBundle")["Action"] = ["s3:GetObject", "s3:PutObject"]


def oltp_role_cannot_read_the_cookie_secret(t):
    del t["frontend.yaml"].resources["OltpCookieSecretPolicy"]
    t["frontend.yaml"].resources["OltpInstance"].pop("DependsOn")


def warehouse_role_with_the_cloudwatch_agent_policy(t):
    props(t, "analytics.yaml", "DwInstanceRole")["ManagedPolicyArns"].append(
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/CloudWatchAgentServerPolicy"})


def cloudfront_without_access_logs(t):
    del t["frontend.yaml"].resources["StorefrontLogDelivery"]


def cloudfront_logs_accepted_from_any_account(t):
    document = props(t, "frontend.yaml", "AccessLogsBucketPolicy")["PolicyDocument"]
    allow = next(s for s in document["Statement"] if s.get("Sid") == "CloudFrontAccessLogs")
    del allow["Condition"]["StringEquals"]["aws:SourceAccount"]


def cloudfront_log_source_in_every_region_but_us_east_1(t):
    t["frontend.yaml"].body["Conditions"]["DeliversCloudFrontLogs"] = {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]}]}


def learner_switch(default: str | None, inline: bool = False) -> Breaks:
    """A parameter that opens the dashboard port to the VPC for learners, with `default` (None: no default), as a
    conditional resource or (`inline`) an Fn::If in the group's own rules."""
    def breaks(t):
        network = t["network.yaml"]
        network.parameters["LearnerDashboardAccess"] = {"Type": "String", "AllowedValues": ["true", "false"],
                                                        **({"Default": default} if default is not None else {})}
        network.body["Conditions"] = {"LearnerAccess": {"Fn::Equals": [{"Ref": "LearnerDashboardAccess"}, "true"]}}
        rule = tcp(8787, CidrIp={"Ref": "VpcCidr"})
        if inline:
            ingress(t, "network.yaml", "DwSecurityGroup").append(
                {"Fn::If": ["LearnerAccess", rule, {"Ref": "AWS::NoValue"}]})
        else:
            add(t, "network.yaml", "LearnerDashboard", "AWS::EC2::SecurityGroupIngress", GroupId={"Ref": "DwSecurityGroup"},
                **rule)
            network.resources["LearnerDashboard"]["Condition"] = "LearnerAccess"
    return breaks


def api_stage_without_access_logs(t):
    del props(t, "ingestion.yaml", "DefaultStage")["AccessLogSettings"]


def api_access_log_in_plain_text(t):
    props(t, "ingestion.yaml", "DefaultStage")["AccessLogSettings"]["Format"] = "$context.requestId $context.status"


def api_stage_unthrottled(t):
    del props(t, "ingestion.yaml", "DefaultStage")["DefaultRouteSettings"]["ThrottlingRateLimit"]


def etl_reserves_concurrency_by_default(t):
    t["analytics.yaml"].parameters["ReservedConcurrency"]["Default"] = 5


def ingest_concurrency_without_a_parameter(t):
    del props(t, "ingestion.yaml", "IngestFunction")["ReservedConcurrentExecutions"]


def etl_without_a_failure_destination(t):
    del t["analytics.yaml"].resources["EtlInvokeConfig"]


def etl_failure_queue_without_an_alarm(t):
    del t["analytics.yaml"].resources["EtlFailureAlarm"]


def etl_failure_alarm_after_ten_messages(t):
    props(t, "analytics.yaml", "EtlFailureAlarm")["Threshold"] = 10


def etl_failure_queue_unencrypted(t):
    props(t, "analytics.yaml", "EtlFailureQueue")["SqsManagedSseEnabled"] = False


def etl_role_cannot_send_its_failures(t):
    statements(t, "analytics.yaml", "EtlFunctionRole").remove(
        statement(t, "analytics.yaml", "EtlFunctionRole", "FailureDestination"))


def raw_bucket_without_access_logs(t):
    del props(t, "ingestion.yaml", "RawBucket")["LoggingConfiguration"]


def access_logs_kept_forever(t):
    del props(t, "frontend.yaml", "AccessLogsBucket")["LifecycleConfiguration"]


def access_logs_delivered_for_any_account(t):
    policy = props(t, "frontend.yaml", "AccessLogsBucketPolicy")["PolicyDocument"]
    del next(s for s in policy["Statement"] if s["Sid"] == "S3ServerAccessLogs")["Condition"]


def pool_without_symbols(t):
    props(t, "frontend.yaml", "UserPool")["Policies"]["PasswordPolicy"]["RequireSymbols"] = False


def pool_with_unverified_email_changes(t):
    del props(t, "frontend.yaml", "UserPool")["UserAttributeUpdateSettings"]


def pool_always_unprotected(t):
    props(t, "frontend.yaml", "UserPool")["DeletionProtection"] = "INACTIVE"


def pool_advanced_security_on_by_default(t):
    t["frontend.yaml"].parameters["CognitoAdvancedSecurity"]["Default"] = "ENFORCED"


def static_files_without_security_headers(t):
    config = props(t, "frontend.yaml", "StorefrontDistribution")["DistributionConfig"]
    del config["CacheBehaviors"][0]["ResponseHeadersPolicyId"]


def security_headers_without_hsts(t):
    policy = props(t, "frontend.yaml", "StorefrontSecurityHeaders")["ResponseHeadersPolicyConfig"]
    del policy["SecurityHeadersConfig"]["StrictTransportSecurity"]


def custom_certificate_allows_tls_1_0(t):
    config = props(t, "frontend.yaml", "StorefrontDistribution")["DistributionConfig"]
    config["ViewerCertificate"]["Fn::If"][1]["MinimumProtocolVersion"] = "TLSv1"


# name: (how the copy is broken, the architecture rules that must fail, policy tags that must fire too)
MUTATIONS: dict[str, tuple[Breaks, set[str], set[str]]] = {
    "SSH from anywhere": (ssh_from_anywhere, {"no_port_22", "no_world_ingress_except_cloudfront_to_web"}, {"CS-SG-NO-SSH"}),
    # a port range around 22: the property rules only compare FromPort/ToPort values, the architecture rule the range
    "SSH in a port range from the VPC": (ssh_in_a_port_range_from_the_vpc, {"no_port_22"}, set()),
    "SSH key pair on the warehouse": (ssh_key_pair_on_the_warehouse, {"no_port_22"}, {"CS-EC2-NO-KEYPAIR"}),
    "web tier open on 8080": (web_tier_open_on_8080, {"no_world_ingress_except_cloudfront_to_web"}, set()),
    "web tier open to 0.0.0.0/1 on 5432": (web_tier_open_to_half_the_internet_on_5432,
                                           {"no_world_ingress_except_cloudfront_to_web"}, set()),
    "web tier's port 80 open to 0.0.0.0/0 too": (web_http_open_to_the_internet,
                                                 {"no_world_ingress_except_cloudfront_to_web"}, set()),
    "web tier's port 80 from 0.0.0.0/0 instead of CloudFront": (web_http_from_the_internet_instead_of_cloudfront,
                                                                {"no_world_ingress_except_cloudfront_to_web"}, set()),
    "web tier's port 80 from the VPC too": (web_http_from_the_vpc_too,
                                            {"no_world_ingress_except_cloudfront_to_web"}, set()),
    "web tier's port 80 from S3's prefix list": (web_http_from_the_s3_prefix_list,
                                                 {"no_world_ingress_except_cloudfront_to_web"}, set()),
    "CloudFront admitted on 443 too": (cloudfront_admitted_on_443_too,
                                       {"no_world_ingress_except_cloudfront_to_web"}, set()),
    "HTTPS open to the internet": (https_open_to_the_internet, {"no_world_ingress_except_cloudfront_to_web"}, set()),
    "dashboard open to the internet": (dashboard_open_to_the_internet,
                                       {"no_world_ingress_except_cloudfront_to_web", "dashboard_port_admits_nothing"}, set()),
    "dashboard open to the ETL": (dashboard_open_to_the_etl, {"dashboard_port_admits_nothing"}, set()),
    "warehouse admits the web tier instead of the ETL": (warehouse_admits_the_web_tier_instead,
                                                         {"warehouse_postgres_admits_only_etl"}, set()),
    "warehouse admits a private subnet's CIDR": (warehouse_admits_a_private_subnet, {"warehouse_postgres_admits_only_etl"}, set()),
    "warehouse admits one /32 address": (warehouse_admits_one_address, {"warehouse_postgres_admits_only_etl"}, set()),
    "warehouse admits a prefix list": (warehouse_admits_a_prefix_list, {"warehouse_postgres_admits_only_etl"}, set()),
    "warehouse admits a group of another stack (ImportValue, GetAtt)": (
        warehouse_admits_a_group_of_the_analytics_stack, {"warehouse_postgres_admits_only_etl"}, set()),
    "warehouse gets a second group open on PostgreSQL": (warehouse_gets_a_second_group_open_on_postgres,
                                                         {"warehouse_postgres_admits_only_etl"}, set()),
    "NAT gateway routed from a private subnet": (
        nat_gateway_routed_from_a_private_subnet,
        {"no_nat_gateway", "private_route_tables_stay_in_vpc", "analytics_only_in_private_subnets",
         "private_subnets_have_their_endpoints"}, {"CS-NO-NAT"}),
    "NAT gateway": (nat_gateway_alone, {"no_nat_gateway"}, {"CS-NO-NAT"}),
    # the ETL and the endpoints are in private subnet B too
    "internet route from private subnet B": (internet_route_from_private_subnet_b,
                                             {"private_route_tables_stay_in_vpc", "analytics_only_in_private_subnets",
                                              "private_subnets_have_their_endpoints"}, set()),
    "S3 gateway endpoint off private route table B": (s3_gateway_endpoint_off_private_table_b,
                                                      {"private_route_tables_stay_in_vpc"}, set()),
    "VPN routes propagated into the private tables": (vpn_routes_propagated_into_private_tables,
                                                      {"private_route_tables_stay_in_vpc"}, set()),
    "an ingress rule on a group given by a parameter": (warehouse_group_of_a_parameter_admits_a_cidr,
                                                        {"warehouse_postgres_admits_only_etl"}, set()),
    "no Secrets Manager endpoint": (no_secrets_manager_endpoint, {"private_subnets_have_their_endpoints"}, set()),
    "no ssmmessages endpoint": (no_ssmmessages_endpoint, {"private_subnets_have_their_endpoints"}, set()),
    "Secrets Manager endpoint in subnet A only": (secrets_manager_endpoint_in_subnet_a_only,
                                                  {"private_subnets_have_their_endpoints"}, set()),
    "endpoint also in a public subnet": (endpoint_also_in_a_public_subnet, {"private_subnets_have_their_endpoints"}, set()),
    "endpoint without private DNS": (endpoint_without_private_dns, {"private_subnets_have_their_endpoints"}, set()),
    "endpoints admit HTTPS from outside the VPC": (endpoints_admit_https_from_outside_the_vpc,
                                                   {"private_subnets_have_their_endpoints"}, set()),
    "warehouse role may call KMS, which has no endpoint": (warehouse_role_may_call_kms,
                                                           {"private_subnets_have_their_endpoints",
                                                            "instance_roles_are_exact_allow_lists"}, set()),
    "ETL with the warehouse's group": (etl_with_the_warehouse_group, {"etl_runs_with_sg_lambda_etl"}, set()),
    "warehouse in a public subnet": (dw_in_a_public_subnet, {"analytics_only_in_private_subnets"}, set()),
    "warehouse with a public IP": (dw_with_a_public_ip, {"analytics_only_in_private_subnets"}, set()),
    "ETL in a public subnet": (etl_in_a_public_subnet, {"analytics_only_in_private_subnets"}, set()),
    "warehouse without IMDSv2": (warehouse_without_imdsv2, {"instances_imdsv2_and_encrypted_volumes"}, {"CS-EC2-IMDSV2"}),
    "unencrypted OLTP volume": (unencrypted_oltp_volume, {"instances_imdsv2_and_encrypted_volumes"}, {"CS-EC2-EBS-ENCRYPTED"}),
    "unencrypted data volume on the warehouse": (unencrypted_data_volume_on_the_warehouse,
                                                 {"instances_imdsv2_and_encrypted_volumes",
                                                  "databases_on_their_own_volumes"}, {"CS-EBS-ENCRYPTED"}),
    "s3:* in the ingest role": (s3_star_in_the_ingest_role,
                                {"lambda_roles_are_exact_allow_lists", "iam_grants_name_their_resources"},
                                {"CS-IAM-NO-WILDCARD-ACTION"}),
    # a wildcard inside an ARN is beyond what a property rule can judge
    "ETL reads every secret": (etl_reads_every_secret,
                               {"lambda_roles_are_exact_allow_lists", "iam_grants_name_their_resources"}, set()),
    "ETL reads another named secret": (etl_reads_another_named_secret,
                                       {"lambda_roles_are_exact_allow_lists", "iam_grants_name_their_resources"}, set()),
    "ETL reads the whole raw bucket": (etl_reads_the_whole_raw_bucket, {"lambda_roles_are_exact_allow_lists"}, set()),
    "s3:Get* in the warehouse's role": (warehouse_role_gets_every_object, {"iam_grants_name_their_resources", "instance_roles_are_exact_allow_lists"}, set()),
    "warehouse's role reads every secret": (warehouse_role_reads_every_secret, {"iam_grants_name_their_resources", "instance_roles_are_exact_allow_lists"},
                                            {"CS-IAM-NO-STAR-RESOURCE"}),
    "warehouse's role reads another secret": (warehouse_role_reads_the_storefront_secret,
                                              {"iam_grants_name_their_resources", "instance_roles_are_exact_allow_lists"}, set()),
    "warehouse's role trusted by Lambda too": (warehouse_role_trusted_by_lambda_too,
                                               {"iam_grants_name_their_resources", "instance_roles_are_exact_allow_lists"}, set()),
    # every role of a function or an instance is an exact allow-list too: a new role is judged by this rule alone
    "a new role with s3:Get*": (a_new_role_gets_every_object, {"iam_grants_name_their_resources"}, set()),
    "OLTP role is an administrator": (oltp_role_is_administrator, {"iam_grants_name_their_resources", "instance_roles_are_exact_allow_lists"}, set()),
    "public access block off": (public_access_block_off, {"buckets_private_encrypted_tls_only"}, {"CS-S3-PUBLIC-ACCESS-BLOCK"}),
    "bucket readable by everyone": (bucket_readable_by_everyone, {"buckets_private_encrypted_tls_only"}, set()),
    "no TLS-only policy": (no_tls_only_policy, {"buckets_private_encrypted_tls_only"}, set()),
    "bucket origin without origin access control": (bucket_origin_without_oac,
                                                    {"cloudfront_reads_buckets_through_oac"}, set()),
    "a learner switch that defaults to open": (learner_switch("true"), {"dashboard_port_admits_nothing"}, set()),
    "a learner switch (Fn::If) that defaults to open": (learner_switch("true", inline=True),
                                                       {"dashboard_port_admits_nothing"}, set()),
    "a learner switch without a default": (learner_switch(None), {"switches_have_safe_defaults"}, set()),
    "API stage without access logs": (api_stage_without_access_logs, {"api_stages_log_and_throttle"}, set()),
    "API access log in plain text": (api_access_log_in_plain_text, {"api_stages_log_and_throttle"}, set()),
    "API stage without a rate limit": (api_stage_unthrottled, {"api_stages_log_and_throttle"}, set()),
    "ETL reserves concurrency by default": (etl_reserves_concurrency_by_default, {"reserved_concurrency_is_opt_in"}, set()),
    "ingest concurrency without a parameter": (ingest_concurrency_without_a_parameter,
                                               {"reserved_concurrency_is_opt_in"}, set()),
    # the role's sqs:SendMessage is then beyond its allow-list and, as the function's own call, needs an endpoint
    "ETL without a failure destination": (etl_without_a_failure_destination,
                                          {"scheduled_functions_report_failures", "lambda_roles_are_exact_allow_lists",
                                           "private_subnets_have_their_endpoints"}, set()),
    "ETL failure queue without an alarm": (etl_failure_queue_without_an_alarm, {"scheduled_functions_report_failures"}, set()),
    "ETL failure alarm after ten messages": (etl_failure_alarm_after_ten_messages,
                                             {"scheduled_functions_report_failures"}, set()),
    "ETL failure queue unencrypted": (etl_failure_queue_unencrypted, {"scheduled_functions_report_failures"}, set()),
    "ETL role cannot send its failures": (etl_role_cannot_send_its_failures, {"lambda_roles_are_exact_allow_lists"}, set()),
    "raw bucket without access logs": (raw_bucket_without_access_logs, {"buckets_log_access"}, set()),
    "access logs kept forever": (access_logs_kept_forever, {"buckets_log_access"}, set()),
    "access logs delivered for any account": (access_logs_delivered_for_any_account, {"buckets_log_access"}, set()),
    "user pool passwords without symbols": (pool_without_symbols, {"user_pools_hardened"}, set()),
    "user pool email changed unverified": (pool_with_unverified_email_changes, {"user_pools_hardened"}, set()),
    "user pool never protected": (pool_always_unprotected, {"user_pools_hardened"}, set()),
    "user pool advanced security on by default": (pool_advanced_security_on_by_default, {"user_pools_hardened"}, set()),
    "static files without security headers": (static_files_without_security_headers,
                                              {"cloudfront_security_headers_and_tls"}, set()),
    "security headers without HSTS": (security_headers_without_hsts, {"cloudfront_security_headers_and_tls"}, set()),
    "custom certificate allows TLS 1.0": (custom_certificate_allows_tls_1_0, {"cloudfront_security_headers_and_tls"}, set()),
    "warehouse image resolved at each update": (warehouse_image_resolved_at_each_update,
                                                {"instance_images_are_pinned"}, set()),
    "OLTP image not pinned by deploy": (oltp_image_not_pinned_by_deploy, {"instance_images_are_pinned"}, set()),
    "OLTP data volume deleted even when protected": (oltp_data_volume_deleted_even_when_protected,
                                                     {"databases_on_their_own_volumes"}, set()),
    "warehouse data volume in another zone": (warehouse_data_volume_in_another_zone,
                                              {"databases_on_their_own_volumes"}, set()),
    "OLTP database on its root volume": (oltp_database_on_its_root_volume, {"databases_on_their_own_volumes"}, set()),
    "warehouse role may overwrite its bundle": (warehouse_role_may_overwrite_its_bundle,
                                                {"instance_roles_are_exact_allow_lists"}, set()),
    "OLTP role cannot read the cookie secret": (oltp_role_cannot_read_the_cookie_secret,
                                                {"instance_roles_are_exact_allow_lists"}, set()),
    "warehouse role with the CloudWatch agent policy": (warehouse_role_with_the_cloudwatch_agent_policy,
                                                        {"instance_roles_are_exact_allow_lists",
                                                         "iam_grants_name_their_resources"}, set()),
    "CloudFront without access logs": (cloudfront_without_access_logs, {"cloudfront_logs_access"}, set()),
    "CloudFront logs accepted from any account": (cloudfront_logs_accepted_from_any_account,
                                                  {"cloudfront_logs_access"}, set()),
    "CloudFront log source outside us-east-1": (cloudfront_log_source_in_every_region_but_us_east_1,
                                                {"cloudfront_logs_access"}, set()),
    "plaintext password default": (plaintext_password_default, {"no_plaintext_secrets"}, set()),
    "plaintext password in user data": (plaintext_password_in_user_data, {"no_plaintext_secrets"}, set()),
    "endpoints admit only one private subnet": (endpoints_admit_only_one_private_subnet,
                                                {"private_subnets_have_their_endpoints"}, set()),
    "ETL cannot leave for the endpoints": (etl_cannot_leave_for_the_endpoints,
                                           {"private_subnets_have_their_endpoints"}, set()),
    "password on a command line in user data": (password_on_a_command_line_in_user_data, {"no_plaintext_secrets"},
                                                set()),
    "etl_writer without TLS from a subnet": (etl_writer_without_tls_from_the_subnets,
                                             {"etl_writer_connects_over_tls_only"}, set()),
    "DW secret without verify-full": (dw_secret_without_verify_full, {"etl_writer_connects_over_tls_only"}, set()),
}


def test_every_rule_has_a_broken_copy_that_fails_it_alone():
    alone = {next(iter(rules)) for _, rules, _ in MUTATIONS.values() if len(rules) == 1}
    assert alone == set(ARCHITECTURE_RULES)


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_a_broken_copy_fails_exactly_the_right_rules(broken, mutation):
    breaks, rules, tags = MUTATIONS[mutation]
    folder = broken(breaks)
    failing = failing_rules(folder)
    assert set(failing) == rules, failing
    if tags:
        assert tags <= policy_tags(folder)


@pytest.mark.parametrize("inline", [False, True], ids=["conditional resource", "Fn::If"])
def test_a_learner_switch_that_defaults_to_closed_passes_every_rule(broken, inline):
    folder = broken(learner_switch("false", inline))
    assert failing_rules(folder) == {}
    assert [str(f) for f in policy_rules(folder)] == []


def test_conditions_combine_with_and_or_and_other_conditions(broken):
    def switches(t):
        network = t["network.yaml"]
        network.parameters.update(OpenWeb={"Type": "String", "Default": "yes"},
                                  OpenDashboard={"Type": "String", "Default": "no"})
        network.body["Conditions"] = {
            "Both": {"Fn::And": [{"Fn::Equals": [{"Ref": "OpenWeb"}, "yes"]}, {"Fn::Equals": [{"Ref": "OpenDashboard"}, "yes"]}]},
            "Either": {"Fn::Or": [{"Fn::Not": [{"Fn::Equals": [{"Ref": "OpenWeb"}, "yes"]}]}, {"Condition": "Both"},
                                  {"Fn::Equals": [{"Ref": "OpenDashboard"}, "no"]}]}}
        ingress(t, "network.yaml", "DwSecurityGroup").append(
            {"Fn::If": ["Both", tcp(8787, CidrIp="10.0.0.0/8"), {"Ref": "AWS::NoValue"}]})
        ingress(t, "network.yaml", "WebSecurityGroup").append(
            {"Fn::If": ["Either", tcp(8080, CidrIp="0.0.0.0/0"), {"Ref": "AWS::NoValue"}]})

    assert set(failing_rules(broken(switches))) == {"no_world_ingress_except_cloudfront_to_web"}


def test_make_check_templates_fails_on_a_broken_copy_and_passes_on_the_real_templates(broken):
    folder = broken(ssh_from_anywhere)
    failed = subprocess.run(["make", "-s", "check-templates", f"TEMPLATES_DIR={folder}"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert failed.returncode != 0, failed.stdout + failed.stderr
    assert "FAIL no_port_22" in failed.stdout and "WebSecurityGroup" in failed.stdout
    real = subprocess.run(["make", "-s", "check-templates"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert real.returncode == 0, real.stdout + real.stderr
    assert "all checks passed" in real.stdout


def test_the_cli_names_each_rule_and_exits_non_zero_on_findings(broken, capsys):
    assert checks.main([str(TEMPLATES)]) == 0
    assert checks.main([str(broken(nat_gateway_alone))]) == 1
    out = capsys.readouterr().out
    assert "FAIL no_nat_gateway" in out and "network.yaml NatGateway: is a NAT gateway" in out
    assert "FAIL policy rules (cfn-lint custom rules)" in out


def test_findings_name_the_broken_resource(broken):
    failing = failing_rules(broken(warehouse_admits_a_group_of_the_analytics_stack))
    assert failing["warehouse_postgres_admits_only_etl"] == [
        "analytics.yaml DwFromReporting: ingress tcp 5432 from SourceSecurityGroupId "
        '{"Fn::GetAtt": ["ReportingGroup", "GroupId"]} on sg_analytics_ShinyDWH: the warehouse admits only TCP 5432 '
        "from sg_Lambda_ETL"]
    failing = failing_rules(broken(secrets_manager_endpoint_in_subnet_a_only))
    assert failing["private_subnets_have_their_endpoints"] == [
        "analytics.yaml EtlFunction: its role calls secretsmanager, but private subnet PrivateSubnetB has no "
        "secretsmanager interface endpoint"]


# --- the rules for people -------------------------------------------------------------------------------
def test_security_group_rows_name_groups_peers_and_ports_for_people(real):
    rows = checks.security_group_rows(real)
    assert len(rows) == len(real.security_group_rules())
    assert {"group": "sg_analytics_ShinyDWH", "direction": "ingress", "protocol": "tcp", "port": "5432",
            "peer": "sg_Lambda_ETL", "declared in": "network.yaml DwIngressFromEtl"} in rows
    assert {"group": "sg_Lambda_ETL", "direction": "egress", "protocol": "tcp", "port": "443",
            "peer": "S3 (prefix list)", "declared in": "network.yaml EtlSecurityGroup"} in rows
    web_in = sorted((r["port"], r["peer"]) for r in rows if r["group"] == "sg_oltp_webDB" and r["direction"] == "ingress")
    assert web_in == [("80", "CloudFront (prefix list)")]


def test_security_group_rows_show_port_ranges_and_all_traffic(broken):
    def ranges(t):
        rules = ingress(t, "network.yaml", "WebSecurityGroup")
        rules[0].update(FromPort=8000, ToPort=8080)
        rules.append({"IpProtocol": -1, "SourcePrefixListId": {"Ref": "CloudFrontOriginPrefixListId"}})

    web_in = sorted((r["protocol"], r["port"]) for r in checks.security_group_rows(broken(ranges))
                    if r["group"] == "sg_oltp_webDB" and r["direction"] == "ingress")
    assert web_in == [("-1", "all"), ("tcp", "8000-8080")]


def test_the_readme_lists_every_rule_with_its_check():
    text = (TEMPLATES / "README.md").read_text()
    rules = text.split("### The architecture's rules\n", 1)[1].split("\n## ", 1)[0]
    items = rules.split("\n- ")[1:]
    named = [name for item in items for name in ARCHITECTURE_RULES if f"`{name}`" in item]
    assert sorted(named) == sorted(ARCHITECTURE_RULES)
    assert all(any(f"`{name}`" in item or "[CS-" in item for name in ARCHITECTURE_RULES) for item in items)


@pytest.mark.parametrize("breaks, problem", [
    (web_http_open_to_the_internet, "open to the internet"),
    (web_http_from_the_internet_instead_of_cloudfront, "CloudFront cannot reach the storefront"),
    (cloudfront_admitted_on_443_too, "admitted on TCP 80 of sg_oltp_webDB only"),
])
def test_the_web_tier_findings_say_what_is_wrong(broken, breaks, problem):
    findings = failing_rules(broken(breaks))["no_world_ingress_except_cloudfront_to_web"]
    assert any(f.startswith("network.yaml WebSecurityGroup: ") and problem in f for f in findings), findings
