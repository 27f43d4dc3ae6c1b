"""The templates resolve to the local wiring the stack uses (routes, handler, environment, buckets)."""

import json
import shutil
from pathlib import Path

import pytest

from clickstream.infra.templates import Stack, TemplateError, load_stacks, local_api_id
from clickstream.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env({}, project=ROOT, home=ROOT / ".clickstream-unused")


@pytest.fixture
def ingestion(settings) -> Stack:
    return next(s for s in load_stacks(settings) if s.path.stem == "ingestion")


def test_ingest_route_invokes_the_ingest_function_with_payload_2(ingestion):
    (api,) = ingestion.http_apis()
    assert api.name == "clickstream-http-api"
    assert [(r.key, r.function) for r in api.routes] == [("POST /clickstream", "IngestFunction"),
                                                        ("POST /clickstream/user", "IngestFunction")]
    assert api.stage == "$default"
    assert api.api_id == local_api_id("clickstream-http-api") and len(api.api_id) == 10
    assert "POST" in api.cors["AllowMethods"] and api.cors["AllowOrigins"] == [
        "https://StorefrontDistribution.DomainName"]  # the frontend's StorefrontOrigin (a CloudFront name on AWS)


def test_function_environment_resolves_refs_to_local_resources(ingestion):
    function = ingestion.functions()["IngestFunction"]
    assert function.name == "clickstream-ingest-local"
    assert function.handler == "handler.handler"
    assert function.source_dir == ROOT / "lambdas" / "ingest"
    assert function.environment["RAW_BUCKET"] == "clickstream-s3-ingest-local"
    assert function.timeout == 10


def test_buckets_and_outputs(ingestion):
    assert [(b.name, b.encryption) for b in ingestion.buckets()] == [("clickstream-s3-ingest-local", "AES256")]
    outputs = ingestion.outputs()
    assert outputs["RawBucketName"] == "clickstream-s3-ingest-local"
    assert outputs["ApiUrl"].endswith(".execute-api.us-east-1.amazonaws.com/clickstream")


def test_sub_getatt_and_escapes(ingestion):
    assert ingestion.resolve({"Fn::Sub": "${RawBucket.Arn}/events/*"}) == "arn:aws:s3:::clickstream-s3-ingest-local/events/*"
    assert ingestion.resolve({"Fn::Sub": "${!NotAVariable}-${AWS::Region}"}) == "${NotAVariable}-us-east-1"
    assert ingestion.resolve({"Fn::Sub": ["${A}-${NameSuffix}", {"A": "x"}]}) == "x-local"
    assert ingestion.resolve({"Fn::Join": ["/", ["a", {"Ref": "NameSuffix"}]]}) == "a/local"


def test_unknown_reference_is_a_clear_error(ingestion):
    with pytest.raises(TemplateError, match="Ref to unknown Nope"):
        ingestion.resolve({"Ref": "Nope"})
    with pytest.raises(TemplateError, match="Fn::GetAZs is not supported"):
        ingestion.resolve({"Fn::GetAZs": ""})
    with pytest.raises(TemplateError, match="unknown condition c"):
        ingestion.resolve({"Fn::If": ["c", 1, 2]})


def test_a_changed_template_changes_the_wiring(tmp_path, settings):
    shutil.copytree(ROOT / "cloudformation", tmp_path / "cloudformation")
    path = tmp_path / "cloudformation" / "ingestion.yaml"
    text = path.read_text().replace("RouteKey: POST /clickstream\n", "RouteKey: PUT /v2/events/{stream}\n")
    path.write_text(text.replace("RAW_PREFIX: events/", "RAW_PREFIX: other/"))
    stack = next(s for s in load_stacks(settings.with_(project=tmp_path)) if s.path.stem == "ingestion")
    assert [r.key for r in stack.http_apis()[0].routes] == ["PUT /v2/events/{stream}", "POST /clickstream/user"]
    assert stack.functions()["IngestFunction"].environment["RAW_PREFIX"] == "other/"


def test_load_template_reads_every_template_as_cfn_lint_does():
    """The project's own loader (cfn-lint costs half a second to import) gives the same data as cfn-lint's."""
    from cfnlint.decode import cfn_yaml

    from clickstream.infra.templates import load_template

    def plain(value):
        return json.loads(json.dumps(value, default=str))

    templates = sorted((Path(__file__).parents[2] / "cloudformation").glob("*.yaml"))
    assert len(templates) >= 4
    for path in templates:
        assert plain(load_template(path)) == plain(cfn_yaml.load(str(path))), path.name


# --- the one model: names, parameter values, one evaluator ------------------------------------------------
def test_one_rule_names_the_stacks_and_the_sibling_stack_parameters():
    from clickstream.infra.templates import Template, parameter_values, stack_name

    assert stack_name("analytics") == "clickstream-analytics" and stack_name("analytics", "shop1") == "shop1-analytics"
    analytics = Template.load(ROOT / "cloudformation" / "analytics.yaml")
    values = parameter_values(analytics, "aws", {"ingestion": stack_name("ingestion", "shop1")})
    assert values["IngestionStackName"] == "shop1-ingestion"
    assert values["NetworkStackName"] == "clickstream-network"  # no sibling given: the template's default


def test_parameter_values_differ_by_target_and_overrides_win():
    from clickstream.infra.templates import (LOCAL_PLACEHOLDERS, Template, UnknownParameterError,
                                             parameter_values)

    analytics = Template.load(ROOT / "cloudformation" / "analytics.yaml")
    local, on_aws = parameter_values(analytics, "local"), parameter_values(analytics, "aws")
    assert (local["NameSuffix"], local["DwHost"]) == ("local", "127.0.0.1")  # Metadata.clickstream.LocalParameters
    assert (on_aws["NameSuffix"], on_aws["DwHost"]) == ("dev", None)  # the default; the deployer must choose
    assert parameter_values(analytics, "aws", overrides={"DwHost": "10.20.10.10"})["DwHost"] == "10.20.10.10"
    with pytest.raises(UnknownParameterError, match=r"analytics.yaml declares no parameters \['Nope'\]"):
        parameter_values(analytics, "aws", overrides={"Nope": 1})
    network = Template.load(ROOT / "cloudformation" / "network.yaml")
    typed = {name for name, spec in network.parameters.items() if spec["Type"] in LOCAL_PLACEHOLDERS}
    for name in typed:
        assert parameter_values(network, "aws")[name] is None
        assert parameter_values(network, "aws", placeholders=LOCAL_PLACEHOLDERS)[name] is not None


def test_the_same_value_resolves_to_local_values_and_to_the_checks_symbols(settings):
    from clickstream.infra.checks import Templates

    value = {"Fn::Sub": "${RawBucket.Arn}/${!Literal}-${AWS::Region}-${NameSuffix}"}
    ingestion = next(s for s in load_stacks(settings) if s.path.stem == "ingestion")
    assert ingestion.resolve(value) == "arn:aws:s3:::clickstream-s3-ingest-local/${Literal}-us-east-1-local"
    checked = Templates(ROOT / "cloudformation")
    template = next(t for t in checked if t.stem == "ingestion")
    assert checked.text(template, value) == "arn:aws:s3:::{ingestion.yaml#RawBucket}/${Literal}-{AWS::Region}-dev"


def test_an_export_that_imports_itself_is_a_template_error(tmp_path):
    from clickstream.infra.templates import TemplateSet

    (tmp_path / "loop.yaml").write_text("""
Resources:
  Topic: {Type: AWS::SNS::Topic}
Outputs:
  Out:
    Value: {"Fn::ImportValue": clickstream-loop-Out}
    Export: {Name: !Sub "${AWS::StackName}-Out"}
""")
    (stack,) = TemplateSet(tmp_path).stacks("local", "us-east-1")
    assert stack.exports == {"clickstream-loop-Out": "Out"} and stack.imports == {"clickstream-loop-Out"}
    with pytest.raises(TemplateError, match="export clickstream-loop-Out depends on itself"):
        stack.outputs()
