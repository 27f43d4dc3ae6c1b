"""clickstream.target.open_workshop on the test stack: local mode, and the aws code rehearsed against the stacks
`clickstream deploy --target local` puts into moto (under a stack prefix of their own, destroyed at the end)."""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg
import pytest

from clickstream import aws
from clickstream.infra.deploy import stack_outputs
from clickstream.infra.templates import find_function, load_stacks
from clickstream.local import moto_deploy, stack
from clickstream.shop import samples, shoppers, tracker, traffic
from clickstream.settings import Settings
from clickstream.target import STAND_INS, history_target, ingest_api, open_workshop, rehearsal_environment

PREFIX = "cs-workshop"
STATUS_KEYS = ("region", "api_url", "ingest_url", "raw_bucket", "storefront_url", "dashboard_url", "dw_dsn",
               "dw_admin_dsn", "dw_secret_id", "aws_endpoint_url", "cognito_user_pool_id", "cognito_client_id")


def test_local_mode_gives_the_local_stacks_endpoints(local_stack):
    with open_workshop(local_stack) as workshop:
        status = stack.status(local_stack)
        assert (workshop.target, workshop.mode) == ("local", "local")
        assert {key: getattr(workshop, key) for key in STATUS_KEYS} == {key: status[key] for key in STATUS_KEYS}
        assert workshop.etl_function == find_function(load_stacks(local_stack), "EtlFunction").name
        assert workshop.ssm_commands == {} and workshop.stand_ins == {}


@pytest.fixture(scope="module")
def rehearsal(local_stack):
    """The templates deployed into the test stack's moto under PREFIX; settings and environment of a rehearsal."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CLICKSTREAM_STACK_PREFIX", PREFIX)
        moto_deploy.deploy(local_stack, delay=0.1)
        try:
            for name, value in rehearsal_environment(local_stack).items():
                patch.setenv(name, value)
            yield Settings.from_env()
        finally:
            patch.setenv("CLICKSTREAM_TARGET", "local")
            patch.delenv("AWS_ENDPOINT_URL")
            moto_deploy.destroy(local_stack)


def test_rehearsal_reads_the_deployed_stacks_outputs(rehearsal, local_stack):
    cf = aws.client("cloudformation", local_stack)
    ingestion, analytics = (stack_outputs(cf, f"{PREFIX}-{stem}") for stem in ("ingestion", "analytics"))
    with open_workshop(rehearsal) as workshop:
        assert (workshop.target, workshop.mode) == ("aws", "rehearsal")
        assert workshop.raw_bucket == ingestion["RawBucketName"]
        assert workshop.ingest_function == ingestion["IngestFunctionName"]
        assert workshop.etl_function == analytics["EtlFunctionName"]
        assert workshop.dw_secret_id == analytics["DwSecretArn"] and workshop.dw_admin_dsn is None
        assert set(workshop.stand_ins) == set(STAND_INS)
        assert all(reason in workshop.description() for reason in STAND_INS.values())
        # moto cannot serve the HTTP API: the local API stands in
        assert workshop.ingest_url == stack.status(local_stack)["ingest_url"]


def test_the_port_forward_commands_name_the_real_instance_id(rehearsal, local_stack):
    analytics = stack_outputs(aws.client("cloudformation", local_stack), f"{PREFIX}-analytics")
    instance_id = analytics["DwInstanceId"]
    reservations = aws.client("ec2", local_stack).describe_instances(InstanceIds=[instance_id])["Reservations"]
    assert instance_id.startswith("i-") and reservations[0]["Instances"][0]["InstanceId"] == instance_id
    with open_workshop(rehearsal) as workshop:
        dw, dashboard = workshop.ssm_commands["dw"], workshop.ssm_commands["dashboard"]
    assert f"--target {instance_id} " in dw and f"--target {instance_id} " in dashboard
    assert f'"portNumber":["{analytics["DashboardPort"]}"]' in dashboard
    assert f'"localPortNumber":["{local_stack.dw_port}"]' in dw


def test_an_event_sent_to_the_workshop_lands_in_its_bucket_and_its_etl_loads_it(rehearsal, local_stack,
                                                                                  empty_warehouse):
    events = samples.canonical_batch(4, seed=1616)
    s3 = aws.client("s3", rehearsal)
    with open_workshop(rehearsal) as workshop:
        report = tracker.send_events(workshop.ingest_url, events, batch_size=4)
        try:
            assert report.accepted == 4 and len(report.object_keys) == 1
            (key,) = report.object_keys
            assert s3.head_object(Bucket=workshop.raw_bucket, Key=key)["ContentLength"] > 0
            summary = workshop.invoke_etl({"prefix": key.rsplit("/", 1)[0] + "/"})
            assert summary["rows_inserted"] >= 4
            ids = [event["event_id"] for event in events]
            with psycopg.connect(workshop.dw_dsn) as conn:
                loaded = conn.execute("SELECT count(*) FROM clickstream_events WHERE event_id::text = ANY(%s)",
                                      (ids,)).fetchone()[0]
            assert loaded == 4
        finally:
            empty_warehouse(stack.status(local_stack)["dw_admin_dsn"])
            for key in report.object_keys:
                s3.delete_object(Bucket=workshop.raw_bucket, Key=key)


def test_status_on_aws_prints_the_rehearsals_endpoints(rehearsal, local_stack):
    result = subprocess.run([sys.executable, "-m", "clickstream.cli", "status", "--json"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    ingestion = stack_outputs(aws.client("cloudformation", local_stack), f"{PREFIX}-ingestion")
    assert (printed["mode"], printed["raw_bucket"]) == ("rehearsal", ingestion["RawBucketName"])
    assert set(printed["ssm_commands"]) == {"dw", "dashboard"}


def test_the_history_target_writes_as_the_deployed_ingest_with_the_pools_shoppers(rehearsal, local_stack):
    with open_workshop(rehearsal) as workshop:
        target = history_target(workshop, rehearsal, aws.client("s3", rehearsal))
        deployed = aws.client("lambda", rehearsal).get_function_configuration(FunctionName=workshop.ingest_function)
    assert target.ingest_settings.raw_bucket == workshop.raw_bucket
    assert target.ingest_settings.raw_bucket == deployed["Environment"]["Variables"]["RAW_BUCKET"]
    # the objects it writes name the API and stage, as the ingest would: in a rehearsal the stand-in local API's
    stand_in = traffic.IngestTarget.from_templates(local_stack, aws.client("s3", local_stack))
    assert (target.api_id, target.stage) == (stand_in.api_id, stand_in.stage) == ingest_api(workshop.ingest_url,
                                                                                            rehearsal)
    assert target.api_id and target.stage == "$default"
    # the local stack's user pool stands in for Cognito: the simulated shoppers are its users
    assert set(target.subs) == set(traffic.SHOPPERS)
    assert target.subs == {email: shoppers.shopper_sub(local_stack, email) for email in traffic.SHOPPERS}


def test_a_deployed_apis_id_comes_from_its_execute_api_host(local_stack):
    deployed = "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/clickstream"
    assert ingest_api(deployed, local_stack) == ("a1b2c3d4e5", "$default")
