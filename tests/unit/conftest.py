"""Fixtures of the unit tests: a LambdaContext, sample API Gateway events, moto S3 in-process, event factories."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from clickstream import contract
from clickstream.aws import LambdaContext
from clickstream.ingestion.ingest import IngestSettings
from event_samples import BUCKET, load_sample

KEEP: Any = object()


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext(function_name="clickstream-ingest-unit", memory_limit_in_mb=256, timeout_seconds=10,
                         aws_request_id="8f5b3c1e-2d4a-4b6c-9e8f-0a1b2c3d4e5f")


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials, and no endpoint override, so moto's in-process mock receives every call."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")


@pytest.fixture(scope="session")
def _s3_client() -> Any:
    """One client for the session (creating one takes ~0.1 s); moto intercepts its calls while a mock runs."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
            patch.delenv(name, raising=False)
        return boto3.client("s3", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture
def s3(aws_credentials: None, _s3_client: Any) -> Iterator[Any]:
    """An S3 client on a fresh in-process moto mock, with the raw bucket created."""
    with mock_aws():
        _s3_client.create_bucket(Bucket=BUCKET)
        yield _s3_client


@pytest.fixture
def settings() -> IngestSettings:
    return IngestSettings(raw_bucket=BUCKET)


@pytest.fixture
def stored_objects(s3: Any) -> Callable[[], dict[str, Any]]:
    """Every object in the raw bucket as {key: parsed JSON (decimals exact)}, listed with pagination."""

    def read() -> dict[str, Any]:
        objects = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for item in page.get("Contents", []):
                body = s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
                objects[item["Key"]] = contract.loads(body)
        return objects

    return read


@pytest.fixture
def http_event() -> Callable[..., dict[str, Any]]:
    """A payload 2.0 POST /clickstream event from tests/events/; body, Content-Type (None: no header) and
    isBase64Encoded are replaced when given."""

    def make(
        body: str | None = KEEP,
        content_type: str | None = KEEP,
        *,
        sample: str = "apigw_http_post_single_event.json",
        base64_encoded: bool = KEEP,
    ) -> dict[str, Any]:
        event = copy.deepcopy(load_sample(sample))
        if body is not KEEP:
            event["body"] = body
        if base64_encoded is not KEEP:
            event["isBase64Encoded"] = base64_encoded
        if content_type is not KEEP:
            event["headers"].pop("content-type", None)
            if content_type is not None:
                event["headers"]["content-type"] = content_type
        return event

    return make


@pytest.fixture
def make_event() -> Callable[..., dict[str, Any]]:
    """A minimal valid version 1 event with a fresh id; keyword arguments override or add fields."""

    def make(**fields: Any) -> dict[str, Any]:
        event = {
            "event_id": str(uuid.uuid4()),
            "event_name": "page_view",
            "client_ts": "2025-03-01T17:15:30.123+07:00",
            "client_id": "c-5d1b0a4e",
            "session_id": "s-20250301-1",
        }
        event.update(fields)
        return event

    return make


@pytest.fixture
def make_legacy_event() -> Callable[..., dict[str, Any]]:
    """A minimal valid legacy tracker event (no eventId); keyword arguments override or add fields."""

    def make(**fields: Any) -> dict[str, Any]:
        event = {"eventName": "page_view", "clientId": "c-5d1b0a4e", "sessionId": "s-20250301-1"}
        event.update(fields)
        return event

    return make
