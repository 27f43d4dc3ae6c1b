"""clickstream.infra.deploy and clickstream.local.moto_deploy without a server: the order and names from the real
templates, the local template (what moto can hold), and the AWS change-set path.

The AWS path is tested with botocore's Stubber on a real CloudFormation client (the calls, their parameters
and AWS's documented answers), because AWS cannot be reached from here; cfn-lint and the template tests
cover the templates themselves.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import boto3
import pytest
from botocore.stub import ANY, Stubber

from clickstream.infra import deploy
from clickstream.infra.deploy import DeployConfig, DeployError, dependency_order, load_templates
from clickstream.local.moto_deploy import PREFIX_LIST_INGRESS_NOTE, local_template, moto_supported_types
from clickstream.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.timezone.utc)


def settings(target: str = "local") -> Settings:
    return Settings(target=target, project=ROOT, home=ROOT / ".clickstream")


def templates(target: str = "local", folder: Path | None = None, env: dict | None = None):
    config = DeployConfig.load(settings(target), env=env or {})
    return load_templates(settings(target), config, folder)


# --- order and names -----------------------------------------------------------------------------
def test_every_template_comes_after_the_templates_whose_exports_it_imports():
    order = dependency_order(templates())
    position = {t.stem: i for i, t in enumerate(order)}
    exporter = {name: t.stem for t in order for name in t.exports}
    assert {t.stem for t in order} == {p.stem for p in (ROOT / "cloudformation").glob("*.yaml")}
    for template in order:
        for name in template.imports:
            assert position[exporter[name]] < position[template.stem], (template.stem, name)
    # the seed's chain: the raw bucket is ingestion's, analytics reads it
    assert "clickstream-ingestion-RawBucketName" in next(t for t in order if t.stem == "analytics").imports
    assert position["ingestion"] < position["analytics"]
    if "network" in position:
        assert position["network"] < position["analytics"]


def test_the_stack_prefix_names_the_stacks_and_the_cross_stack_parameters():
    order = dependency_order(templates(env={deploy.PREFIX_ENV: "shop1"}))
    analytics = next(t for t in order if t.stem == "analytics")
    assert analytics.stack_name == "shop1-analytics"
    assert analytics.parameters["IngestionStackName"] == "shop1-ingestion"
    assert "shop1-ingestion-RawBucketName" in analytics.imports


def write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(text)


TOPIC = """
Resources:
  Topic: {{Type: AWS::SNS::Topic}}
Outputs:
  Out:
    Value: {{"Fn::ImportValue": {imports}}}
    Export: {{Name: !Sub "${{AWS::StackName}}-Out"}}
"""


def test_a_cycle_and_a_missing_export_are_clear_errors(tmp_path):
    write(tmp_path / "cycle", "a", TOPIC.format(imports="clickstream-b-Out"))
    write(tmp_path / "cycle", "b", TOPIC.format(imports="clickstream-a-Out"))
    with pytest.raises(DeployError, match=r"cycle: a, b"):
        dependency_order(templates(folder=tmp_path / "cycle"))
    write(tmp_path / "missing", "a", TOPIC.format(imports="clickstream-nowhere-Out"))
    with pytest.raises(DeployError, match=r"a.yaml imports clickstream-nowhere-Out, which no template"):
        dependency_order(templates(folder=tmp_path / "missing"))


def test_a_reference_to_an_undeclared_resource_names_the_resource(tmp_path):
    write(tmp_path, "a", """
Resources:
  Fn:
    Type: AWS::Lambda::Function
    Properties: {Role: !GetAtt MissingRole.Arn}
""")
    with pytest.raises(DeployError, match=r"a.yaml: Fn refers to MissingRole.Arn, which the template does not declare"):
        templates(folder=tmp_path)


def test_aws_parameters_come_from_the_file_and_the_defaults(tmp_path):
    path = tmp_path / "aws.json"
    path.write_text('{"stack_prefix": "prod", "parameters": {"*": {"NameSuffix": "acme"}, '
                    '"ingestion": {"RawRetentionDays": 90}}}')
    config = DeployConfig.load(settings("aws"), path, env={})
    ingestion = next(t for t in load_templates(settings("aws"), config) if t.stem == "ingestion")
    assert ingestion.stack_name == "prod-ingestion"
    assert ingestion.parameters["NameSuffix"] == "acme" and ingestion.parameters["RawRetentionDays"] == 90
    assert ingestion.parameters["RawBucketBaseName"] == "clickstream-s3-ingest"  # the template's default
    path.write_text('{"parameters": {"ingestion": {"NoSuchParameter": 1}}}')
    with pytest.raises(DeployError, match="ingestion.yaml declares no parameters \\['NoSuchParameter'\\]"):
        load_templates(settings("aws"), DeployConfig.load(settings("aws"), path, env={}))


CLOUDFRONT_LIST = "com.amazonaws.global.cloudfront.origin-facing"


def ec2_stub():
    client = boto3.client("ec2", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    return client, Stubber(client)


def network_for_aws(path: Path, text: str = "{}"):
    path.write_text(text)
    config = DeployConfig.load(settings("aws"), path, env={})
    return config, next(t for t in load_templates(settings("aws"), config) if t.stem == "network")


def test_the_cloudfront_prefix_list_id_is_looked_up_by_name_in_the_region(tmp_path):
    config, network = network_for_aws(tmp_path / "aws.json")
    assert network.parameters["CloudFrontOriginPrefixListId"] is None  # per region: no default
    ec2, stubber = ec2_stub()
    stubber.add_response("describe_managed_prefix_lists", {"PrefixLists": [
        {"PrefixListId": "pl-4fa04526", "PrefixListName": CLOUDFRONT_LIST, "OwnerId": "AWS"}]},
        {"Filters": [{"Name": "prefix-list-name", "Values": [CLOUDFRONT_LIST]}]})
    with stubber:
        deploy.resolve_prefix_lists(ec2, [network], config)
    stubber.assert_no_pending_responses()
    assert network.parameters["CloudFrontOriginPrefixListId"] == "pl-4fa04526"


def test_a_prefix_list_id_the_parameters_file_sets_is_not_looked_up(tmp_path):
    config, network = network_for_aws(tmp_path / "aws.json",
                                      '{"parameters": {"network": {"CloudFrontOriginPrefixListId": "pl-0123abcd"}}}')
    ec2, stubber = ec2_stub()
    with stubber:  # no responses queued: any call would fail
        deploy.resolve_prefix_lists(ec2, [network], config)
    assert network.parameters["CloudFrontOriginPrefixListId"] == "pl-0123abcd"


def test_a_region_without_the_prefix_list_is_a_clear_error(tmp_path):
    config, network = network_for_aws(tmp_path / "aws.json")
    ec2, stubber = ec2_stub()
    stubber.add_response("describe_managed_prefix_lists", {"PrefixLists": []})
    with stubber, pytest.raises(DeployError, match=f"no managed prefix list {CLOUDFRONT_LIST} in eu-west-1; "
                                                   "set CloudFrontOriginPrefixListId"):
        deploy.resolve_prefix_lists(ec2, [network], config)


def test_deploy_looks_the_prefix_list_up_before_asking_for_what_has_no_default(tmp_path, monkeypatch):
    ec2, stubber = ec2_stub()
    stubber.add_response("describe_managed_prefix_lists", {"PrefixLists": [
        {"PrefixListId": "pl-4fa04526", "PrefixListName": CLOUDFRONT_LIST, "OwnerId": "AWS"}]})
    clients = {"ec2": ec2, "cloudformation": cfn()[0], "s3": None, "ssm": None}  # the network has no instance
    monkeypatch.setattr(deploy.aws, "client", lambda service, _settings=None: clients[service])
    (tmp_path / "aws.json").write_text("{}")
    with stubber, pytest.raises(DeployError) as error:
        deploy.deploy(settings("aws"), "network", parameters_file=tmp_path / "aws.json", build=False)
    assert "set S3PrefixListId in" in str(error.value) and "CloudFrontOriginPrefixListId" not in str(error.value)
    stubber.assert_no_pending_responses()


def test_a_managed_prefix_list_of_an_undeclared_parameter_is_a_template_error(tmp_path):
    write(tmp_path, "net", """
Metadata:
  clickstream:
    ManagedPrefixLists: {NoSuchParameter: com.amazonaws.global.cloudfront.origin-facing}
Resources:
  Topic: {Type: AWS::SNS::Topic}
""")
    ec2, stubber = ec2_stub()
    with stubber, pytest.raises(DeployError, match=r"net.yaml: .*ManagedPrefixLists names undeclared parameters "
                                                   r"\['NoSuchParameter'\]"):
        deploy.resolve_prefix_lists(ec2, templates("aws", tmp_path), DeployConfig())


# --- the local template ----------------------------------------------------------------------------
SUPPORTED = {"AWS::Logs::LogGroup", "AWS::IAM::Role", "AWS::Lambda::Function", "AWS::Lambda::Permission",
             "AWS::EC2::VPC", "AWS::EC2::Subnet", "AWS::EC2::VPCEndpoint", "AWS::EC2::SecurityGroup",
             "AWS::S3::Bucket", "AWS::IAM::InstanceProfile", "AWS::EC2::Instance"}


def test_ingestion_for_moto_keeps_the_function_and_role_and_lists_what_the_project_wires():
    ingestion = next(t for t in templates() if t.stem == "ingestion")
    body, result = local_template(ingestion, SUPPORTED, {})
    skipped = {item["logical_id"]: item["reason"] for item in result.skipped}
    assert {"HttpApi", "IngestIntegration", "IngestRoute", "DefaultStage"} <= set(skipped)
    assert "local HTTP API" in skipped["HttpApi"]
    assert "clickstream up" in skipped["RawBucket"] and "RawBucketPolicy" in skipped
    assert {"IngestFunction", "IngestFunctionRole", "IngestLogGroup", "IngestInvokePermission"} <= set(body["Resources"])
    # references to the left-out bucket and API become the names the local stack uses
    env = body["Resources"]["IngestFunction"]["Properties"]["Environment"]["Variables"]
    assert env["RAW_BUCKET"] == "clickstream-s3-ingest-local"
    policy = body["Resources"]["IngestFunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    assert policy["Statement"][0]["Resource"] == {"Fn::Sub": "arn:aws:s3:::clickstream-s3-ingest-local/events/*"}
    assert body["Outputs"]["RawBucketName"]["Value"] == "clickstream-s3-ingest-local"
    assert [o["name"] for o in result.skipped_outputs] == ["ApiUrl"]


def test_dns_entries_outputs_are_dropped_and_dependents_of_unsupported_resources_cascade(tmp_path):
    write(tmp_path, "net", """
Resources:
  Vpc: {Type: AWS::EC2::VPC, Properties: {CidrBlock: 10.0.0.0/16}}
  Endpoint:
    Type: AWS::EC2::VPCEndpoint
    Properties: {VpcId: !Ref Vpc, VpcEndpointType: Interface, ServiceName: com.amazonaws.us-east-1.ssm}
  Pool: {Type: AWS::Cognito::UserPool}
  PoolUser:
    Type: AWS::IAM::Role
    DependsOn: Endpoint
    Properties: {RoleName: !GetAtt Pool.ProviderName}
Outputs:
  VpcId: {Value: !Ref Vpc}
  EndpointDns: {Value: !Select [0, !GetAtt Endpoint.DnsEntries]}
""")
    (net,) = templates(folder=tmp_path)
    body, result = local_template(net, SUPPORTED, {})
    assert set(body["Resources"]) == {"Vpc", "Endpoint"}
    reasons = {item["logical_id"]: item["reason"] for item in result.skipped}
    assert "Cognito" in reasons["Pool"] and "refers to Pool.ProviderName" in reasons["PoolUser"]
    assert list(body["Outputs"]) == ["VpcId"]
    assert "DnsEntries" in result.skipped_outputs[0]["reason"]


# --- the AWS path (Stubber: AWS cannot be reached here) ----------------------------------------------
def cfn():
    client = boto3.client("cloudformation", region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="x")
    return client, Stubber(client)


def stack(status: str, outputs: list | None = None) -> dict:
    return {"Stacks": [{"StackName": "clickstream-ingestion", "StackId": "arn:stack", "CreationTime": NOW,
                        "StackStatus": status, "Outputs": outputs or []}]}


def missing_stack(stubber: Stubber) -> None:
    stubber.add_client_error("describe_stacks", "ValidationError", "Stack with id clickstream-ingestion does not exist")


def event(lid: str, rtype: str, status: str, reason: str | None = None) -> dict:
    item = {"StackId": "arn:stack", "EventId": f"{lid}-{status}", "StackName": "clickstream-ingestion",
            "LogicalResourceId": lid, "ResourceType": rtype, "Timestamp": NOW, "ResourceStatus": status}
    return {**item, "ResourceStatusReason": reason} if reason else item


def test_a_new_stack_is_created_by_a_create_change_set_and_waited_for():
    client, stubber = cfn()
    missing_stack(stubber)
    stubber.add_response("create_change_set", {"Id": "arn:cs", "StackId": "arn:stack"},
                         {"StackName": "clickstream-ingestion", "ChangeSetName": ANY, "ChangeSetType": "CREATE",
                          "TemplateBody": "body", "Parameters": [{"ParameterKey": "NameSuffix", "ParameterValue": "acme"}],
                          "Capabilities": ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]})
    stubber.add_response("describe_change_set", {"Status": "CREATE_COMPLETE", "ExecutionStatus": "AVAILABLE"})
    stubber.add_client_error("describe_stack_events", "ValidationError", "Stack does not exist")
    stubber.add_response("execute_change_set", {}, {"ChangeSetName": "arn:cs", "StackName": "clickstream-ingestion"})
    stubber.add_response("describe_stacks", stack("CREATE_IN_PROGRESS"))
    stubber.add_response("describe_stacks", stack("CREATE_COMPLETE"))
    stubber.add_response("describe_stacks", stack("CREATE_COMPLETE"))
    with stubber:
        status = deploy.deploy_with_change_set(client, "clickstream-ingestion", "body",
                                               [{"ParameterKey": "NameSuffix", "ParameterValue": "acme"}], delay=0)
    assert status == "CREATE_COMPLETE"
    stubber.assert_no_pending_responses()


def test_an_update_without_changes_is_success_and_the_change_set_is_removed():
    client, stubber = cfn()
    stubber.add_response("describe_stacks", stack("UPDATE_COMPLETE"))
    stubber.add_response("create_change_set", {"Id": "arn:cs"}, {"StackName": "clickstream-ingestion",
                         "ChangeSetName": ANY, "ChangeSetType": "UPDATE", "TemplateBody": "body", "Parameters": [],
                         "Capabilities": ANY})
    stubber.add_response("describe_change_set", {"Status": "FAILED", "StatusReason": "The submitted information "
                         "didn't contain changes. Submit different information to create a change set."})
    stubber.add_response("describe_change_set", {"Status": "FAILED", "StatusReason": "The submitted information "
                         "didn't contain changes. Submit different information to create a change set."})
    stubber.add_response("delete_change_set", {}, {"ChangeSetName": "arn:cs", "StackName": "clickstream-ingestion"})
    with stubber:
        assert deploy.deploy_with_change_set(client, "clickstream-ingestion", "body", [], delay=0) == deploy.NO_CHANGES
    stubber.assert_no_pending_responses()


def test_a_failed_create_lists_the_failed_resources_and_their_reasons():
    client, stubber = cfn()
    missing_stack(stubber)
    stubber.add_response("create_change_set", {"Id": "arn:cs"})
    stubber.add_response("describe_change_set", {"Status": "CREATE_COMPLETE"})
    stubber.add_client_error("describe_stack_events", "ValidationError", "Stack does not exist")
    stubber.add_response("execute_change_set", {})
    stubber.add_response("describe_stacks", stack("CREATE_IN_PROGRESS"))  # the waiter polls
    stubber.add_response("describe_stacks", stack("ROLLBACK_COMPLETE"))  # its failure state
    stubber.add_response("describe_stacks", stack("ROLLBACK_COMPLETE"))  # the report
    stubber.add_response("describe_stack_events", {"StackEvents": [
        event("clickstream-ingestion", "AWS::CloudFormation::Stack", "ROLLBACK_COMPLETE"),
        event("IngestLogGroup", "AWS::Logs::LogGroup", "CREATE_FAILED", "Resource creation cancelled"),
        event("IngestFunction", "AWS::Lambda::Function", "CREATE_FAILED",
              "Resource handler returned message: \"Error occurred while GetObject. S3 Error Code: NoSuchKey\""),
    ]})
    with stubber, pytest.raises(DeployError) as failure:
        deploy.deploy_with_change_set(client, "clickstream-ingestion", "body", [], delay=0)
    message = str(failure.value)
    assert "stack clickstream-ingestion: ROLLBACK_COMPLETE" in message
    assert "IngestFunction (AWS::Lambda::Function) CREATE_FAILED: Resource handler returned message" in message
    assert "IngestLogGroup" not in message, "cancelled resources are consequences, not causes"


def test_a_rolled_back_stack_must_be_destroyed_before_deploying_again():
    client, stubber = cfn()
    stubber.add_response("describe_stacks", stack("ROLLBACK_COMPLETE"))
    stubber.add_response("describe_stacks", stack("ROLLBACK_COMPLETE"))
    stubber.add_response("describe_stack_events", {"StackEvents": []})
    with stubber, pytest.raises(DeployError, match="clickstream destroy --stack clickstream-ingestion"):
        deploy.deploy_with_change_set(client, "clickstream-ingestion", "body", [], delay=0)


# --- the choice of target ------------------------------------------------------------------------------
def test_the_cli_chooses_the_deployer_by_target_and_the_aws_deployer_refuses_local():
    from clickstream import cli
    from clickstream.local import moto_deploy

    assert cli._deployer(settings("local")) is moto_deploy
    assert cli._deployer(settings("aws")) is deploy
    with pytest.raises(DeployError, match="clickstream.local.moto_deploy"):
        deploy.deploy(settings("local"))


def test_frontend_for_moto_reports_what_it_leaves_out_and_fakes_none_of_it():
    frontend = next(t for t in templates() if t.stem == "frontend")
    body, result = local_template(frontend, moto_supported_types(), {})  # the installed moto's types
    skipped = {item["logical_id"]: item["reason"] for item in result.skipped}
    # moto's CloudFormation has no Cognito, CloudFront or secrets; only the policy that reads the secret goes with it
    assert {"UserPool", "UserPoolClient", "StorefrontDistribution", "StorefrontOriginAccessControl",
            "StorefrontCookieSecret", "OltpCookieSecretPolicy"} <= set(skipped)
    assert "StorefrontCookieSecret" in skipped["OltpCookieSecretPolicy"]
    assert not set(skipped) & set(body["Resources"])
    assert {"OltpInstanceRole", "OltpInstanceProfile", "OltpInstance"} <= set(body["Resources"])
    assert "DependsOn" not in body["Resources"]["OltpInstance"]  # on a left-out resource: dropped
    assert {o["name"] for o in result.skipped_outputs} == {"UserPoolId", "UserPoolClientId", "StorefrontUrl",
                                                           "StorefrontOrigin"}


def test_network_for_moto_says_the_web_tier_ingress_from_the_prefix_list_is_dropped():
    network = next(t for t in templates() if t.stem == "network")
    _, result = local_template(network, moto_supported_types(), {})
    noted = {item["logical_id"] for item in result.notes if item["note"] == PREFIX_LIST_INGRESS_NOTE}
    assert noted == {"WebSecurityGroup"}


# --- pinned images ----------------------------------------------------------------------------------
LATEST_AMI = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"


def frontend_for_aws(path: Path, text: str = "{}"):
    path.write_text(text)
    config = DeployConfig.load(settings("aws"), path, env={})
    return config, next(t for t in load_templates(settings("aws"), config) if t.stem == "frontend")


def ssm_stub(image: str | None = None):
    client = boto3.client("ssm", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stubber = Stubber(client)
    if image:
        stubber.add_response("get_parameter", {"Parameter": {"Name": LATEST_AMI, "Type": "String", "Value": image}},
                             {"Name": LATEST_AMI})
    return client, stubber


def deployed_frontend(parameters: list[dict]) -> dict:
    return {"Stacks": [{"StackName": "clickstream-frontend", "StackId": "arn:stack", "CreationTime": NOW,
                        "StackStatus": "UPDATE_COMPLETE", "Parameters": parameters}]}


def test_the_instance_image_is_a_pinned_id_named_by_the_latest_ami_parameter():
    frontend = next(t for t in templates("aws") if t.stem == "frontend")
    spec = frontend.template.parameters["OltpImageId"]
    assert spec["Type"] == "AWS::EC2::Image::Id" and "Default" not in spec  # never re-resolved by CloudFormation
    assert deploy.templates.image_parameters(frontend.template) == {"OltpImageId": LATEST_AMI}


def test_a_first_deployment_pins_the_image_the_ssm_parameter_names_now(tmp_path):
    config, frontend = frontend_for_aws(tmp_path / "aws.json")
    client, stubber = cfn()
    missing_stack(stubber)
    ssm, ssm_stubber = ssm_stub("ami-0aaa1111bbbb22223")
    with stubber, ssm_stubber:
        deploy.resolve_images(ssm, client, [frontend], config)
    ssm_stubber.assert_no_pending_responses()
    assert frontend.parameters["OltpImageId"] == "ami-0aaa1111bbbb22223"


def test_an_update_keeps_the_deployed_image_even_one_an_ssm_typed_parameter_resolved():
    for deployed in ({"ParameterKey": "OltpImageId", "ParameterValue": "ami-0deployed000000001"},
                     {"ParameterKey": "OltpImageId", "ParameterValue": LATEST_AMI,
                      "ResolvedValue": "ami-0deployed000000001"}):
        config = DeployConfig.load(settings("aws"), Path("/nonexistent/aws.json"), env={})
        frontend = next(t for t in load_templates(settings("aws"), config) if t.stem == "frontend")
        client, stubber = cfn()
        stubber.add_response("describe_stacks", deployed_frontend([deployed]))
        stubber.add_response("describe_stacks", deployed_frontend([deployed]))
        ssm, ssm_stubber = ssm_stub()  # nothing queued: a lookup would fail
        with stubber, ssm_stubber:
            deploy.resolve_images(ssm, client, [frontend], config)
        assert frontend.parameters["OltpImageId"] == "ami-0deployed000000001"


def test_new_images_moves_a_deployed_stack_to_the_current_image(tmp_path):
    config, frontend = frontend_for_aws(tmp_path / "aws.json")
    client, stubber = cfn()  # nothing queued: the deployed stack is not asked
    ssm, ssm_stubber = ssm_stub("ami-0new0000000000001")
    with stubber, ssm_stubber:
        deploy.resolve_images(ssm, client, [frontend], config, new_images=True)
    assert frontend.parameters["OltpImageId"] == "ami-0new0000000000001"


def test_an_image_the_parameters_file_sets_is_used_as_it_is(tmp_path):
    config, frontend = frontend_for_aws(tmp_path / "aws.json",
                                        '{"parameters": {"frontend": {"OltpImageId": "ami-0chosen0000000001"}}}')
    client, stubber = cfn()
    ssm, ssm_stubber = ssm_stub()
    with stubber, ssm_stubber:
        deploy.resolve_images(ssm, client, [frontend], config, new_images=True)
    assert frontend.parameters["OltpImageId"] == "ami-0chosen0000000001"


def test_destroy_reports_the_data_volumes_as_kept_only_with_protect_data(tmp_path):
    for protect, kept in (("false", []), ("true", ["OltpDataVolume"])):
        _, frontend = frontend_for_aws(tmp_path / "aws.json",
                                       f'{{"parameters": {{"frontend": {{"ProtectData": "{protect}"}}}}}}')
        assert [lid for lid in deploy._retained(frontend) if "Volume" in lid] == kept
