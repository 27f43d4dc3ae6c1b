"""clickstream.target: how the target is chosen, the aws path's prerequisites, the port-forward commands, and the
aws path against an account mocked in-process (moto) with a fake `aws` CLI for the port forwards."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from clickstream.infra import ssm
from clickstream.settings import Settings
from clickstream.target import (STAND_INS, Connections, Workshop, WorkshopError, choose_mode, open_workshop,
                                port_forward_commands, rehearsal_environment, require_outputs)
from test_ssm import fake_env, fake_path, free_port  # noqa: F401 - fake_path is a fixture

ROOT = Path(__file__).resolve().parents[2]
INSTANCE = "i-0123456789abcdef0"
PREFIX = "cs-unit"


def aws_settings() -> Settings:
    return Settings(target="aws", project=ROOT, home=ROOT / ".clickstream-unused")


@pytest.mark.parametrize(("target", "endpoint", "mode"), [
    ("local", None, "local"),
    ("local", "http://127.0.0.1:4566", "local"),
    ("aws", None, "aws"),
    ("aws", "https://cloudformation.eu-west-1.amazonaws.com", "aws"),
    ("aws", "http://127.0.0.1:4566", "rehearsal"),
    ("aws", "http://localhost:35001/", "rehearsal"),
])
def test_the_mode_follows_the_target_and_the_endpoint(target, endpoint, mode):
    env = {} if endpoint is None else {"AWS_ENDPOINT_URL": endpoint}
    assert choose_mode(Settings(target=target), env) == mode


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_ENDPOINT_URL", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_aws_without_credentials_says_how_to_get_them(no_credentials):
    with pytest.raises(WorkshopError) as error:
        open_workshop(aws_settings(), env={"AWS_REGION": "us-east-1"}, which=lambda tool: f"/usr/bin/{tool}")
    assert "no AWS credentials: run `aws configure`" in str(error.value)
    assert "region" not in str(error.value) and "session-manager-plugin" not in str(error.value)


def test_aws_without_region_and_plugin_names_both(aws_credentials, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION")
    with pytest.raises(WorkshopError) as error:
        open_workshop(aws_settings(), env={}, which=lambda tool: None if tool == "session-manager-plugin" else "/bin/aws")
    message = str(error.value)
    assert "no AWS region: set AWS_REGION" in message
    assert "need session-manager-plugin on PATH" in message and ssm.INSTALL["session-manager-plugin"] in message
    assert "credentials" not in message and ssm.INSTALL["aws"] not in message


def test_the_rehearsal_does_not_need_the_plugin_but_the_local_stacks_moto(aws_credentials, tmp_path):
    settings = Settings(target="aws", project=ROOT, home=tmp_path, aws_port=free_port())
    with pytest.raises(WorkshopError, match="the local stack's moto is http://127.0.0.1:"):
        open_workshop(settings, env={"AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_REGION": "us-east-1"},
                      which=lambda tool: None)


def test_port_forward_commands_go_to_the_instance_of_the_outputs():
    outputs = {"DwInstanceId": INSTANCE, "DashboardPort": "8787"}
    commands = port_forward_commands(outputs, 5432, Connections(dw_port=15999, dashboard_port=18787), "eu-west-1")
    assert commands == {
        "dw": ssm.shell_command(ssm.port_forward_command(INSTANCE, 5432, 15999, "eu-west-1")),
        "dashboard": ssm.shell_command(ssm.port_forward_command(INSTANCE, 8787, 18787, "eu-west-1")),
    }
    assert '"portNumber":["5432"],"localPortNumber":["15999"]' in commands["dw"]


def test_a_logical_instance_id_is_refused_with_where_the_real_one_is():
    with pytest.raises(WorkshopError, match="DwInstanceId"):
        port_forward_commands({"DwInstanceId": "DwInstance", "DashboardPort": "8787"}, 5432,
                              Connections(15999, 18787), "us-east-1")


def test_missing_outputs_are_named_with_their_template():
    with pytest.raises(WorkshopError) as error:
        require_outputs(aws_settings(), {"ApiUrl": "https://x/clickstream"}, PREFIX,
                        ("ApiUrl", "RawBucketName", "DwInstanceId", "NoSuchOutput"))
    message = str(error.value)
    assert "RawBucketName (ingestion.yaml), DwInstanceId (analytics.yaml), NoSuchOutput (no template" in message
    assert "ApiUrl" not in message and f"stack prefix {PREFIX}" in message


def workshop(**changes) -> Workshop:
    values = dict(target="aws", mode="rehearsal", region="us-east-1", api_url="http://127.0.0.1:1",
                  ingest_url="http://127.0.0.1:1/clickstream", raw_bucket="b", storefront_url=None,
                  dashboard_url="http://127.0.0.1:2", dw_dsn="host=127.0.0.1", dw_admin_dsn=None, dw_secret_id="s",
                  aws_endpoint_url="http://127.0.0.1:3", cognito_user_pool_id=None, cognito_client_id=None,
                  ingest_function="ingest", etl_function="etl", ssm_commands={"dw": "aws ssm start-session ..."},
                  stand_ins=dict(STAND_INS))
    return Workshop(**{**values, **changes})


def test_the_description_names_every_stand_in_and_command():
    text = workshop().description()
    assert "ingest URL http://127.0.0.1:1/clickstream  (raw bucket s3://b)" in text
    assert "moto at http://127.0.0.1:3" in text and "dw port forward: aws ssm start-session ..." in text
    assert all(f"stand-in for {what}: {how}" in text for what, how in STAND_INS.items())
    assert "stand-in" not in workshop(mode="aws", stand_ins={}).description()


def test_as_dict_is_json_and_close_stops_what_was_started():
    stopped = []
    opened = workshop(_invoke=lambda name, event: {"name": name, **event})
    opened._exit.callback(stopped.append, "forward")
    assert json.loads(json.dumps(opened.as_dict()))["etl_function"] == "etl"
    assert not any(key.startswith("_") for key in opened.as_dict())
    assert opened.invoke_etl({"date": "2026-12-07"}) == {"name": "etl", "date": "2026-12-07"}
    with opened:
        assert stopped == []
    assert stopped == ["forward"]


# --- the aws path against a mocked account ------------------------------------------------------------
@contextmanager
def deployed_account(dashboard_port: int):
    """Stacks named as `clickstream deploy` names them under PREFIX, with the outputs the templates declare."""
    with mock_aws(config={"lambda": {"use_docker": False}}):  # without Docker moto's Invoke echoes the event
        role = boto3.client("iam").create_role(RoleName="etl-unit", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
        boto3.client("lambda").create_function(FunctionName="etl-unit", Runtime="python3.12", Role=role,
                                               Handler="handler.handler", Code={"ZipFile": code.getvalue()})
        secret = boto3.client("secretsmanager").create_secret(Name="dw", SecretString=json.dumps(
            {"username": "etl_writer", "password": "pw", "host": "10.20.10.10", "port": 5432,
             "dbname": "clickstream_dw", "engine": "postgres", "sslmode": "verify-full",
             "sslrootcert_pem": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}))["ARN"]
        instance = boto3.client("ec2").run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)
        outputs = {
            "ingestion": {"ApiUrl": "https://a1b2c3.execute-api.us-east-1.amazonaws.com/clickstream",
                          "RawBucketName": "raw-unit", "IngestFunctionName": "ingest-unit"},
            "analytics": {"EtlFunctionName": "etl-unit", "DwSecretArn": secret, "DashboardPort": str(dashboard_port),
                          "DwInstanceId": instance["Instances"][0]["InstanceId"]},
            "frontend": {"StorefrontUrl": "https://d111.cloudfront.net", "UserPoolId": "us-east-1_unit",
                         "UserPoolClientId": "client-unit"},
        }
        cf = boto3.client("cloudformation")
        for stem, values in outputs.items():
            body = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                    "Outputs": {name: {"Value": value} for name, value in values.items()}}
            cf.create_stack(StackName=f"{PREFIX}-{stem}", TemplateBody=json.dumps(body))
        yield {name: value for values in outputs.values() for name, value in values.items()}


def test_aws_reads_the_outputs_and_forwards_the_warehouse_and_dashboard(aws_credentials, monkeypatch, fake_path):
    monkeypatch.setenv("CLICKSTREAM_STACK_PREFIX", PREFIX)
    dashboard = free_port()
    with deployed_account(dashboard) as outputs:
        env = {**fake_env(fake_path), "AWS_REGION": "us-east-1", "CLICKSTREAM_STACK_PREFIX": PREFIX}
        with open_workshop(aws_settings(), env=env) as opened:
            assert (opened.mode, opened.aws_endpoint_url, opened.dw_admin_dsn) == ("aws", None, None)
            assert (opened.ingest_url, opened.api_url) == (outputs["ApiUrl"],
                                                           "https://a1b2c3.execute-api.us-east-1.amazonaws.com")
            assert (opened.raw_bucket, opened.etl_function, opened.storefront_url) == (
                "raw-unit", "etl-unit", "https://d111.cloudfront.net")
            assert opened.dashboard_url == f"http://127.0.0.1:{dashboard}"
            dw_port = int(opened.dw_dsn.split("port=")[1].split()[0])
            assert "user=etl_writer" in opened.dw_dsn and "host=127.0.0.1" in opened.dw_dsn
            assert ssm.accepts_connections(dw_port) and ssm.accepts_connections(dashboard)
            last_started = json.loads((fake_path / "argv.json").read_text())
            assert ssm.shell_command(["aws", *last_started]) == opened.ssm_commands["dashboard"]
            assert f"--target {outputs['DwInstanceId']} " in opened.ssm_commands["dw"]
            assert '"portNumber":["5432"]' in opened.ssm_commands["dw"]
            assert opened.invoke_etl({"date": "2026-12-07"}) == {"date": "2026-12-07"}  # Invoke of etl-unit
        assert not ssm.accepts_connections(dw_port) and not ssm.accepts_connections(dashboard)


def test_aws_without_the_stacks_says_to_deploy_them(aws_credentials, monkeypatch, fake_path):
    monkeypatch.setenv("CLICKSTREAM_STACK_PREFIX", PREFIX)
    with mock_aws(), pytest.raises(WorkshopError, match="deploy them first with `clickstream deploy`"):
        open_workshop(aws_settings(), env={**fake_env(fake_path), "AWS_REGION": "us-east-1",
                                           "CLICKSTREAM_STACK_PREFIX": PREFIX})



def test_aws_without_forwarding_gives_the_commands_to_run_and_needs_no_plugin(aws_credentials, monkeypatch):
    monkeypatch.setenv("CLICKSTREAM_STACK_PREFIX", PREFIX)
    dashboard, dw = free_port(), free_port()
    settings = aws_settings().with_(dw_port=dw)
    with deployed_account(dashboard) as outputs:
        with open_workshop(settings, env={"AWS_REGION": "us-east-1", "CLICKSTREAM_STACK_PREFIX": PREFIX},
                           which=lambda tool: None, forward=False) as described:
            assert f"port={dw} " in described.dw_dsn + " " and described.dashboard_url == f"http://127.0.0.1:{dashboard}"
            assert not ssm.accepts_connections(dw) and not ssm.accepts_connections(dashboard)
            assert described.ssm_commands["dw"] == ssm.shell_command(
                ssm.port_forward_command(outputs["DwInstanceId"], 5432, dw, "us-east-1"))


def test_status_on_aws_without_credentials_is_one_clear_message(no_credentials, tmp_path):
    env = {**os.environ, "AWS_REGION": "us-east-1", "CLICKSTREAM_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "clickstream.cli", "--target", "aws", "status"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "no AWS credentials: run `aws configure`" in result.stderr


def test_the_rehearsal_environment_chooses_the_rehearsal_of_that_stack(tmp_path):
    local = Settings(target="local", home=tmp_path, aws_port=free_port(), region="eu-west-1")
    env = rehearsal_environment(local)
    settings = Settings.from_env({**env, "CLICKSTREAM_HOME": str(tmp_path)})
    assert (settings.target, settings.region, choose_mode(settings, env)) == ("aws", "eu-west-1", "rehearsal")
    assert env["AWS_ENDPOINT_URL"] == local.aws_endpoint_url
