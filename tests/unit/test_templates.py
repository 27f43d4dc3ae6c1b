"""The CloudFormation templates themselves: cfn-lint clean, least-privilege ingest role, locked-down raw bucket,
the HTTP API wired as documented. moto drops most of these properties, so they are checked on the template."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint_file
from cfnlint.decode import cfn_yaml

from clickstream.infra.templates import Stack, load_stacks, physical_ids_file
from clickstream.settings import Settings
from template_helpers import as_list, getatt_target

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = sorted((ROOT / "cloudformation").glob("*.yaml"))
INGESTION = ROOT / "cloudformation" / "ingestion.yaml"




def ref_target(value: Any) -> str:
    assert isinstance(value, dict) and list(value) == ["Ref"], f"not a Ref: {value}"
    return value["Ref"]


def lint_report(path: Path) -> list[str]:
    return [f"{m.rule.id} ({m.rule.severity}) line {m.linenumber}: {m.message}" for m in lint_file(path)]


@pytest.fixture(scope="module")
def ingestion() -> Stack:
    """ingestion.yaml, decoded by cfn-lint's loader, with the local resolver for Ref/Sub/GetAtt (and the
    frontend stack's exports it imports)."""
    stack = next(s for s in load_stacks(Settings()) if s.stem == INGESTION.stem)
    assert stack.body == cfn_yaml.load(str(INGESTION))
    return stack


@pytest.fixture(scope="module")
def function(ingestion) -> dict:
    """The ingest Lambda: the function the POST /clickstream route integrates."""
    (api,) = ingestion.http_apis()
    routes = [route for route in api.routes if route.key == "POST /clickstream"]
    assert len(routes) == 1, f"one POST /clickstream route, not {[route.key for route in api.routes]}"
    return ingestion.resources[routes[0].function]


def test_there_are_templates_to_lint():
    assert INGESTION in TEMPLATES


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda path: path.name)
def test_cfn_lint_reports_no_errors_or_warnings(path):
    assert lint_report(path) == []


def test_cfn_lint_as_called_here_does_report_errors_and_warnings(tmp_path):
    """The lint test above can fail: a deprecated runtime is an error, an unused parameter a warning."""
    broken = INGESTION.read_text().replace("Runtime: python3.12", "Runtime: python2.7")
    broken = broken.replace("\nResources:\n", "\n  Unused:\n    Type: String\n    Default: x\n\nResources:\n")
    (tmp_path / "broken.yaml").write_text(broken)
    report = lint_report(tmp_path / "broken.yaml")
    assert any(line.startswith("E") and "python2.7" in line for line in report), report
    assert any(line.startswith("W") and "Unused" in line for line in report), report


def test_ingest_role_may_only_put_raw_events_and_write_its_own_logs(ingestion, function):
    props = function["Properties"]
    role = ingestion.resources[getatt_target(props["Role"])]
    assert role["Type"] == "AWS::IAM::Role"
    assert "ManagedPolicyArns" not in role["Properties"], "managed policies grant more than the ingest needs"
    trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "lambda.amazonaws.com"}]
    role_id = getatt_target(props["Role"])
    attached = [
        lid for lid, res in ingestion.resources.items()
        if res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
        and {"Ref": role_id} in as_list(res["Properties"].get("Roles", []))
    ]
    assert attached == [], "every permission of the role is in its inline policies"

    statements = [s for policy in role["Properties"]["Policies"] for s in as_list(policy["PolicyDocument"]["Statement"])]
    grants = set()
    for statement in statements:
        assert statement["Effect"] == "Allow"
        assert not {"NotAction", "NotResource", "NotPrincipal"} & set(statement), statement
        for action in as_list(statement["Action"]):
            assert "*" not in action, f"wildcard action {action}"
            for resource in as_list(ingestion.resolve(statement["Resource"])):
                assert "*" != resource
                grants.add((action, resource))

    env = props["Environment"]["Variables"]
    bucket_arn = ingestion.get_att(ref_target(env["RAW_BUCKET"]), "Arn")
    log_group_arn = ingestion.get_att(ref_target(props["LoggingConfig"]["LogGroup"]), "Arn")
    assert env["RAW_PREFIX"] == "events/"
    assert grants == {
        ("s3:PutObject", f"{bucket_arn}/events/*"),
        ("logs:CreateLogStream", log_group_arn),
        ("logs:PutLogEvents", log_group_arn),
    }
    actions = {action.lower() for action, _ in grants}
    assert not {"s3:getobject", "s3:listbucket", "s3:deleteobject"} & actions


def test_raw_bucket_is_private_encrypted_tls_only_and_expires_objects(ingestion, function):
    bucket_id = ref_target(function["Properties"]["Environment"]["Variables"]["RAW_BUCKET"])
    bucket = ingestion.resources[bucket_id]
    props = bucket["Properties"]
    assert bucket["DeletionPolicy"] == "Retain"
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True,
    }
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms", "aws:kms:dsse")

    policies = [res["Properties"] for res in ingestion.of_type("AWS::S3::BucketPolicy").values()
                if res["Properties"]["Bucket"] == {"Ref": bucket_id}]
    assert len(policies) == 1
    bucket_arn = ingestion.get_att(bucket_id, "Arn")
    tls_denials = [
        s for s in as_list(policies[0]["PolicyDocument"]["Statement"])
        if s["Effect"] == "Deny"
        and s.get("Principal") in ("*", {"AWS": "*"})
        and as_list(s["Action"]) in (["s3:*"], ["*"])
        and str(s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport")).lower() == "false"
    ]
    assert len(tls_denials) == 1, "a Deny of every action when aws:SecureTransport is false"
    assert {bucket_arn, f"{bucket_arn}/*"} <= set(as_list(ingestion.resolve(tls_denials[0]["Resource"])))

    rules = [r for r in props["LifecycleConfiguration"]["Rules"] if r["Status"] == "Enabled"]
    expiring = [r for r in rules if int(ingestion.resolve(r.get("ExpirationInDays", 0))) > 0]
    assert expiring, "an enabled lifecycle rule deletes raw objects"
    assert all(r.get("Prefix", r.get("Filter", {}).get("Prefix", "")) in ("", "events/") for r in expiring)


def test_http_api_route_is_a_lambda_proxy_with_payload_2_cors_and_throttling(ingestion, function):
    apis = ingestion.of_type("AWS::ApiGatewayV2::Api")
    ((api_id, api),) = apis.items()
    assert api["Properties"]["ProtocolType"] == "HTTP"
    cors = ingestion.resolve(api["Properties"]["CorsConfiguration"])
    assert cors["AllowOrigins"] and "POST" in cors["AllowMethods"]
    assert {"content-type", "authorization"} <= {header.lower() for header in cors["AllowHeaders"]}
    assert int(cors["MaxAge"]) > 0

    routes = {r["Properties"]["RouteKey"]: r["Properties"] for r in ingestion.of_type("AWS::ApiGatewayV2::Route").values()}
    assert set(routes) == {"POST /clickstream", "POST /clickstream/user"}
    assert routes["POST /clickstream/user"]["Target"] == routes["POST /clickstream"]["Target"], "the same Lambda"
    route = routes["POST /clickstream"]
    assert route["ApiId"] == {"Ref": api_id}
    target = ingestion.resolve(route["Target"])
    assert target.startswith("integrations/")
    integration = ingestion.resources[target.removeprefix("integrations/")]["Properties"]
    assert integration["ApiId"] == {"Ref": api_id}
    assert integration["IntegrationType"] == "AWS_PROXY"
    assert str(integration["PayloadFormatVersion"]) == "2.0"
    assert ingestion.resources[getatt_target(integration["IntegrationUri"])] is function

    stages = [s["Properties"] for s in ingestion.of_type("AWS::ApiGatewayV2::Stage").values()]
    assert [s["ApiId"] for s in stages] == [{"Ref": api_id}]
    throttling = ingestion.resolve(stages[0]["DefaultRouteSettings"])
    assert int(throttling["ThrottlingRateLimit"]) > 0 and int(throttling["ThrottlingBurstLimit"]) > 0

    permissions = [p["Properties"] for p in ingestion.of_type("AWS::Lambda::Permission").values()]
    assert len(permissions) == 1 and permissions[0]["Principal"] == "apigateway.amazonaws.com"
    source_arn = ingestion.resolve(permissions[0]["SourceArn"])
    assert source_arn.endswith(f":{ingestion.physical_id(api_id)}/*/*/clickstream*"), "invocable from its routes only"


def test_signed_in_route_has_a_jwt_authorizer_on_the_shop_pool_and_its_app_client(ingestion):
    frontend = next(s for s in load_stacks(Settings()) if s.stem == "frontend")
    (api,) = ingestion.http_apis()
    authorizers = {route.key: route.authorizer for route in api.routes}
    assert authorizers["POST /clickstream"] is None
    signed_in = authorizers["POST /clickstream/user"]
    assert signed_in.identity_source == ("$request.header.Authorization",)
    pool, client = frontend.resolve({"Ref": "UserPool"}), frontend.resolve({"Ref": "UserPoolClient"})
    assert signed_in.issuer == f"https://cognito-idp.{ingestion.region}.amazonaws.com/{pool}"
    assert signed_in.audience == (client,)


def test_user_pools_come_from_the_template_as_create_parameters():
    frontend = next(s for s in load_stacks(Settings()) if s.stem == "frontend")
    (pool,) = frontend.user_pools()
    assert (pool.logical_id, pool.name, pool.settings["PoolName"]) == ("UserPool", "clickstream-shop-local",
                                                                          "clickstream-shop-local")
    assert pool.settings["Policies"]["PasswordPolicy"]["MinimumLength"] == 12
    (client,) = pool.clients
    assert client.logical_id == "UserPoolClient" and "UserPoolId" not in client.settings
    assert client.settings["GenerateSecret"] is False
    assert "ALLOW_USER_PASSWORD_AUTH" in client.settings["ExplicitAuthFlows"]


def test_recorded_physical_ids_are_what_ref_resolves_to(tmp_path):
    settings = Settings.from_env({"CLICKSTREAM_HOME": str(tmp_path)})
    physical_ids_file(settings).write_text('{"frontend": {"UserPool": "us-east-1_abc", "UserPoolClient": "c1"}}')
    stacks = {s.stem: s for s in load_stacks(settings)}
    assert stacks["frontend"].outputs()["UserPoolId"] == "us-east-1_abc"
    (api,) = stacks["ingestion"].http_apis()
    signed_in = next(route.authorizer for route in api.routes if route.authorizer)
    assert signed_in.issuer.endswith("/us-east-1_abc") and signed_in.audience == ("c1",)
