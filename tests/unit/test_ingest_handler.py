"""lambdas/ingest/handler.py as the Lambda runtime loads it: by file path, settings and client built lazily."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from moto import mock_aws

from clickstream.local.lambda_runtime import load_module
from event_samples import BUCKET

HANDLER_PATH = Path(__file__).resolve().parents[2] / "lambdas" / "ingest" / "handler.py"
TEMPLATE_ENV = {"RAW_BUCKET": BUCKET, "RAW_PREFIX": "events/", "MAX_BATCH_EVENTS": "500", "MAX_BODY_BYTES": "1048576"}


def load_handler_module():
    return load_module(HANDLER_PATH, "ingest_handler_under_test")


@pytest.fixture
def handler_module(monkeypatch, aws_credentials):
    """A freshly imported handler with no ingest settings in the environment at import time."""
    for name in TEMPLATE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLICKSTREAM_TARGET", "aws")
    return load_handler_module()


def test_import_needs_no_settings_or_credentials(handler_module):
    assert handler_module.settings.cache_info().currsize == 0
    assert handler_module.s3_client.cache_info().currsize == 0


def test_handler_stores_the_sample_event(handler_module, monkeypatch, http_event, lambda_context):
    for name, value in TEMPLATE_ENV.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        handler_module.s3_client().create_bucket(Bucket=BUCKET)
        response = handler_module.handler(http_event(), lambda_context)
        body = json.loads(response["body"])
        assert response["statusCode"] == 200
        assert body["request_id"] == lambda_context.aws_request_id
        stored = json.loads(handler_module.s3_client().get_object(Bucket=BUCKET, Key=body["object_key"])["Body"].read())
        assert stored["request_id"] == lambda_context.aws_request_id


def test_settings_are_read_once(handler_module, monkeypatch):
    monkeypatch.setenv("RAW_BUCKET", "first-bucket")
    assert handler_module.settings().raw_bucket == "first-bucket"
    monkeypatch.setenv("RAW_BUCKET", "second-bucket")
    assert handler_module.settings().raw_bucket == "first-bucket"


def test_missing_bucket_setting_is_a_loud_error(handler_module, http_event, lambda_context):
    with pytest.raises(ValueError, match="RAW_BUCKET"):
        handler_module.handler(http_event(), lambda_context)
