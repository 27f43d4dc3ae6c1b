"""The running local API (gateway emulation + ingest Lambda + moto S3) conforms to ingest-openapi.yaml under fuzzing."""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from clickstream import aws, contract
from clickstream.ingestion import raw
from clickstream.local import stack
from tests.schemathesis_checks import invalid_events_are_rejected

FUZZ_EXAMPLES = int(os.environ.get("CLICKSTREAM_FUZZ_EXAMPLES", "50"))

# Loaded at import: schemathesis.pytest.from_fixture does not work with pytest 9.
INGEST_API = schemathesis.openapi.from_path(contract.OPENAPI_PATH)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture(scope="module")
def api_url(local_stack) -> str:
    return stack.status(local_stack)["api_url"]


@pytest.fixture(scope="module", autouse=True)
def remove_fuzz_objects(local_stack):
    """The fuzzing writes hundreds of raw objects; later tests and notebooks share the bucket, so they go."""
    s3, bucket = aws.client("s3", local_stack), stack.status(local_stack)["raw_bucket"]
    before = {item["Key"] for item in raw.list_objects(s3, bucket)}
    yield
    raw.delete_objects(s3, bucket, sorted({item["Key"] for item in raw.list_objects(s3, bucket)} - before))


@INGEST_API.parametrize()
@hypothesis_settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_local_api_conforms_to_openapi_under_fuzzing(case, api_url):
    """The documented checks over real HTTP. unsupported_method is left out: API Gateway answers a method
    without a route 404 (its own {"message": "Not Found"}), not 405, and the spec only covers POST."""
    case.call_and_validate(base_url=api_url, checks=[*CHECKS, invalid_events_are_rejected], timeout=30)
