"""cloudformation/analytics.yaml: the ETL Lambda SBW_Lamda_ETL in private subnets with sg_Lambda_ETL, a
least-privilege role, the hourly schedule, the DW secret without a plain password, and the local wiring
the stack derives from it. moto keeps little of this (see notes/local-aws.md), so it is checked on the template.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cfnlint.api import ManualArgs, lint_file

from clickstream.infra.templates import Stack, TemplateError, find_function, load_stacks
from clickstream.local.scheduler import parse
from clickstream.settings import Settings
from template_helpers import as_list, getatt_target

ROOT = Path(__file__).resolve().parents[2]
ANALYTICS = ROOT / "cloudformation" / "analytics.yaml"
NETWORK = ROOT / "cloudformation" / "network.yaml"
INGESTION = ROOT / "cloudformation" / "ingestion.yaml"
ENI_ACTIONS = {
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
}




@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings.from_env({}, project=ROOT, home=ROOT / ".clickstream-unused")


@pytest.fixture(scope="module")
def stacks(settings) -> list[Stack]:
    return load_stacks(settings)


@pytest.fixture(scope="module")
def analytics(stacks) -> Stack:
    return next(stack for stack in stacks if stack.path == ANALYTICS)


@pytest.fixture(scope="module")
def network(stacks) -> Stack:
    return next(stack for stack in stacks if stack.path == NETWORK)


@pytest.fixture(scope="module")
def etl(analytics) -> dict:
    """The ETL function: the one the schedule targets."""
    (schedule,) = analytics.schedules()
    return analytics.resources[schedule.function]


def test_cfn_lint_reports_nothing_not_even_informational():
    """test_templates.py lints every template for errors and warnings; this one also for the I rules
    (e.g. I3011: a stateful resource, the secret, must say what happens to it on delete and replace)."""
    report = lint_file(ANALYTICS, config=ManualArgs(include_checks=["I"]))
    assert [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in report] == []


def test_the_function_is_sbw_lamda_etl_with_a_long_timeout(analytics, etl):
    props = etl["Properties"]
    assert analytics.resolve(props["FunctionName"]) == "SBW_Lamda_ETL-local"
    assert props["Runtime"] == "python3.12" and props["Handler"] == "handler.handler"
    assert etl["Metadata"]["clickstream"]["Source"] == "lambdas/etl"
    assert (ROOT / "lambdas" / "etl" / "handler.py").is_file()
    assert 300 <= int(props["Timeout"]) <= 900
    assert set(props["Code"]) == {"S3Bucket", "S3Key"}, "code from the artifacts bucket, not inline"


def test_the_function_runs_in_the_private_subnets_with_sg_lambda_etl(analytics, network, etl):
    """Subnets and security group are the network stack's exports (Fn::ImportValue), resolved locally."""
    vpc = etl["Properties"]["VpcConfig"]
    assert vpc["SubnetIds"] == [
        {"Fn::ImportValue": {"Fn::Sub": "${NetworkStackName}-PrivateSubnetAId"}},
        {"Fn::ImportValue": {"Fn::Sub": "${NetworkStackName}-PrivateSubnetBId"}},
    ]
    assert analytics.parameters["NetworkStackName"] == network.stack_name
    subnets = analytics.resolve(vpc["SubnetIds"])
    assert subnets == ["PrivateSubnetA", "PrivateSubnetB"]
    for subnet in subnets:
        props = network.props(subnet)
        assert props["MapPublicIpOnLaunch"] is False and props["VpcId"] == {"Ref": "Vpc"}
    (group_import,) = vpc["SecurityGroupIds"]
    group = network.resources[analytics.resolve(group_import)]
    assert group["Type"] == "AWS::EC2::SecurityGroup"
    assert group["Properties"]["GroupName"] == "sg_Lambda_ETL"
    assert group["Properties"]["VpcId"] == {"Ref": "Vpc"}


def test_sg_lambda_etl_has_no_inbound_only_three_ways_out_and_the_dw_admits_it(analytics, network, etl):
    group_id = analytics.resolve(etl["Properties"]["VpcConfig"]["SecurityGroupIds"][0])
    props = network.resources[group_id]["Properties"]
    assert "SecurityGroupIngress" not in props
    assert not [res for res in network.of_type("AWS::EC2::SecurityGroupIngress").values()
                if res["Properties"].get("GroupId") == {"Ref": group_id}]
    rules = {
        (rule["IpProtocol"], json.dumps(rule["FromPort"]), json.dumps(rule["ToPort"]),
         json.dumps({k: v for k, v in rule.items() if k.startswith("Destination") or k.startswith("Cidr")}))
        for rule in props["SecurityGroupEgress"]
    }
    dw_port = json.dumps({"Ref": "DwPort"})
    assert rules == {
        ("tcp", dw_port, dw_port, json.dumps({"DestinationSecurityGroupId": {"Ref": "DwSecurityGroup"}})),
        ("tcp", "443", "443", json.dumps({"DestinationPrefixListId": {"Ref": "S3PrefixListId"}})),
        ("tcp", "443", "443", json.dumps({"DestinationSecurityGroupId": {"Ref": "EndpointSecurityGroup"}})),
    }, "no 0.0.0.0/0: the DW port to the warehouse, 443 to S3's prefix list and to the interface endpoints"

    (ingress,) = [res["Properties"] for res in network.of_type("AWS::EC2::SecurityGroupIngress").values()]
    assert ingress == {"GroupId": {"Ref": "DwSecurityGroup"}, "Description": ingress["Description"],
                       "IpProtocol": "tcp", "FromPort": {"Ref": "DwPort"}, "ToPort": {"Ref": "DwPort"},
                       "SourceSecurityGroupId": {"Ref": group_id}}, "the warehouse admits the ETL on its port only"
    assert network.parameters["DwPort"] == analytics.parameters["DwPort"], "both stacks' DwPort defaults agree"


def test_role_allows_only_reading_raw_events_the_dw_secret_its_logs_vpc_enis_and_failure_sends(analytics, etl):
    props = etl["Properties"]
    role_id = getatt_target(props["Role"])
    role = analytics.resources[role_id]["Properties"]
    assert "ManagedPolicyArns" not in role, "AWSLambdaVPCAccessExecutionRole would add logs:CreateLogGroup on *"
    assert [s["Principal"] for s in role["AssumeRolePolicyDocument"]["Statement"]] == [{"Service": "lambda.amazonaws.com"}]
    assert not [lid for lid, res in analytics.resources.items()
                if res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
                and {"Ref": role_id} in as_list(res["Properties"].get("Roles", []))]

    bucket_arn = "arn:aws:s3:::clickstream-s3-ingest-local"  # the ingestion stack's export, resolved locally
    log_group_arn = analytics.get_att(props["LoggingConfig"]["LogGroup"]["Ref"], "Arn")
    secret_id = props["Environment"]["Variables"]["DW_SECRET_ID"]["Ref"]
    (invoke_config,) = analytics.of_type("AWS::Lambda::EventInvokeConfig").values()
    failure_queue = getatt_target(invoke_config["Properties"]["DestinationConfig"]["OnFailure"]["Destination"])
    grants = set()
    for policy in role["Policies"]:
        for statement in as_list(policy["PolicyDocument"]["Statement"]):
            assert statement["Effect"] == "Allow"
            assert not {"NotAction", "NotResource", "NotPrincipal"} & set(statement), statement
            resources = as_list(statement["Resource"])
            for action in as_list(statement["Action"]):
                assert "*" not in action, f"wildcard action {action}"
                for resource in resources:
                    if resource == "*":
                        assert action in ENI_ACTIONS, f"only the VPC network-interface actions may use *: {action}"
                    key = f"secret:{resource['Ref']}" if resource == {"Ref": secret_id} else analytics.resolve(resource)
                    grants.add((action, key, json.dumps(statement.get("Condition"))))
    assert grants == {
        ("s3:ListBucket", bucket_arn, json.dumps({"StringLike": {"s3:prefix": "events/*"}})),
        ("s3:GetObject", f"{bucket_arn}/events/*", "null"),
        ("secretsmanager:GetSecretValue", f"secret:{secret_id}", "null"),
        ("logs:CreateLogStream", log_group_arn, "null"),
        ("logs:PutLogEvents", log_group_arn, "null"),
        ("sqs:SendMessage", analytics.get_att(failure_queue, "Arn"), "null"),
        *{(action, "*", "null") for action in ENI_ACTIONS},
    }
    actions = {action.lower() for action, _, _ in grants}
    assert not {"s3:putobject", "s3:deleteobject", "secretsmanager:putsecretvalue"} & actions


def test_the_raw_bucket_is_the_ingestion_stacks_export(analytics, stacks, etl):
    env = etl["Properties"]["Environment"]["Variables"]
    assert env["RAW_BUCKET"] == {"Fn::ImportValue": {"Fn::Sub": "${IngestionStackName}-RawBucketName"}}
    ingestion = next(stack for stack in stacks if stack.path.stem == "ingestion")
    assert analytics.parameters["IngestionStackName"] == ingestion.stack_name
    assert analytics.resolve(env["RAW_BUCKET"]) == ingestion.outputs()["RawBucketName"]


def test_hourly_schedule_invokes_the_function_with_permission_from_that_rule_only(analytics, etl):
    rules = analytics.of_type("AWS::Events::Rule")
    ((rule_id, rule),) = rules.items()
    props = rule["Properties"]
    assert props["State"] == "ENABLED"
    expression = analytics.resolve(props["ScheduleExpression"])
    assert expression in ("rate(1 hour)", "cron(0 * * * ? *)")
    from datetime import datetime, timezone
    start = datetime(2026, 11, 24, 13, 0, tzinfo=timezone.utc)
    schedule = parse(expression, anchor=start)
    assert schedule.next_after(start) - start == schedule.next_after(schedule.next_after(start)) - schedule.next_after(start)
    assert (schedule.next_after(start) - start).total_seconds() == 3600
    (target,) = props["Targets"]
    assert analytics.resources[getatt_target(target["Arn"])] is etl
    assert "Input" not in target, "a scheduled event is a default run; the handler treats it as {}"

    (permission,) = [p["Properties"] for p in analytics.of_type("AWS::Lambda::Permission").values()]
    assert permission["Principal"] == "events.amazonaws.com"
    assert permission["Action"] == "lambda:InvokeFunction"
    assert analytics.resources[permission["FunctionName"]["Ref"]] is etl
    assert getatt_target(permission["SourceArn"]) == rule_id


def test_dw_secret_is_generated_never_written_in_the_template(analytics, etl):
    secret_id = etl["Properties"]["Environment"]["Variables"]["DW_SECRET_ID"]["Ref"]
    secret = analytics.resources[secret_id]
    props = secret["Properties"]
    assert analytics.resolve(props["Name"]) == "clickstream/dw/etl_writer-local"
    assert "SecretString" not in props
    generate = props["GenerateSecretString"]
    assert generate["GenerateStringKey"] == "password" and int(generate["PasswordLength"]) >= 20
    shape = json.loads(analytics.resolve(generate["SecretStringTemplate"]))
    assert shape == {"username": "etl_writer", "host": "127.0.0.1", "port": 5432, "dbname": "clickstream_dw",
                     "engine": "postgres"}, "RDS-style JSON without a password"
    assert secret["Metadata"]["clickstream"]["LocalValue"] == "dw_etl_writer"
    text = ANALYTICS.read_text().lower()
    assert '"password"' not in text and "password:" not in text


def test_no_environment_variable_carries_a_credential(etl):
    env = etl["Properties"]["Environment"]["Variables"]
    assert set(env) == {"CLICKSTREAM_TARGET", "RAW_BUCKET", "RAW_PREFIX", "DW_SECRET_ID", "LOOKBACK_DAYS",
                        "ETL_WORKERS", "POWERTOOLS_SERVICE_NAME"}
    assert env["CLICKSTREAM_TARGET"] == "aws" and env["RAW_PREFIX"] == "events/"
    assert not [name for name in env if any(word in name for word in ("PASSWORD", "DSN", "USER"))]


# --- the local wiring derived from the template ------------------------------------------------
def test_local_function_schedule_and_secret(stacks, analytics):
    function = find_function(stacks, "EtlFunction")
    assert function.name == "SBW_Lamda_ETL-local"
    assert function.source_dir == ROOT / "lambdas" / "etl"
    assert function.timeout == 900
    assert function.environment == {
        "CLICKSTREAM_TARGET": "aws", "RAW_BUCKET": "clickstream-s3-ingest-local", "RAW_PREFIX": "events/",
        "DW_SECRET_ID": "clickstream/dw/etl_writer-local", "LOOKBACK_DAYS": "3", "ETL_WORKERS": "auto",
        "POWERTOOLS_SERVICE_NAME": "clickstream-etl",
    }
    (schedule,) = analytics.schedules()
    assert (schedule.name, schedule.expression, schedule.function, schedule.enabled, schedule.input) == (
        "clickstream-etl-local", "rate(1 hour)", "EtlFunction", True, None)
    assert analytics.get_att(schedule.logical_id, "Arn") == \
        "arn:aws:events:us-east-1:123456789012:rule/clickstream-etl-local"
    assert [(s.name, s.local_value) for s in analytics.secrets()] == [("clickstream/dw/etl_writer-local", "dw_etl_writer")]
    assert [(s.name, s.local_value) for stack in stacks for s in stack.secrets()] == \
        [("clickstream/dw/etl_writer-local", "dw_etl_writer"), ("clickstream/storefront/cookie-secret-local", None)]


def test_parameters_only_aws_knows_get_local_values_from_the_templates_metadata(analytics, network):
    assert network.parameters["S3PrefixListId"] == "pl-00000000"
    assert analytics.parameters["DwHost"] == "127.0.0.1"
    assert "Default" not in network.body["Parameters"]["S3PrefixListId"], "the deployer must choose it in AWS"
    assert "Default" not in analytics.body["Parameters"]["DwHost"], "the deployer must choose it in AWS"
    assert not {"VpcId", "PrivateSubnetIds", "DwSecurityGroupId", "EndpointSecurityGroupId"} & set(
        analytics.body["Parameters"]), "the network comes from the network stack's exports, not parameters"


def test_overrides_win_and_a_parameter_without_any_local_value_is_named(tmp_path, settings):
    stack = Stack.load(ANALYTICS, settings, {"DwPort": 6543})
    assert stack.resolve({"Fn::Sub": "${DwPort}"}) == "6543"
    listed = Stack.load(INGESTION, settings, {"CorsAllowOrigins": "https://a.example, https://b.example"})
    assert listed.parameters["CorsAllowOrigins"] == ["https://a.example", "https://b.example"]
    broken = tmp_path / "analytics.yaml"
    broken.write_text(ANALYTICS.read_text().replace("      DwHost: 127.0.0.1\n", ""))
    with pytest.raises(TemplateError, match="parameter DwHost has no default and no local value"):
        Stack.load(broken, settings)


def test_exports_resolve_whatever_the_template_order(tmp_path, settings):
    shutil.copytree(ROOT / "cloudformation", tmp_path / "cloudformation")
    (tmp_path / "cloudformation" / "analytics.yaml").rename(tmp_path / "cloudformation" / "zz_analytics.yaml")
    stacks = load_stacks(settings.with_(project=tmp_path))
    assert find_function(stacks, "EtlFunction").environment["RAW_BUCKET"] == "clickstream-s3-ingest-local"
    (tmp_path / "cloudformation" / "ingestion.yaml").unlink()
    with pytest.raises(TemplateError, match="no export named clickstream-ingestion-RawBucketName"):
        find_function(load_stacks(settings.with_(project=tmp_path)), "EtlFunction")


def test_the_local_api_still_finds_exactly_one_http_api(stacks):
    assert [api.name for stack in stacks for api in stack.http_apis()] == ["clickstream-http-api"]
