"""POST /clickstream over real HTTP against the running local API, checked in the real (moto) raw bucket."""

from __future__ import annotations

import random
import re
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from clickstream import aws, contract
from clickstream.ingestion import raw
from clickstream.shop import samples
from clickstream.infra.templates import load_stacks, local_api_id
from clickstream.local import stack

USER_AGENT = "clickstream-integration-test/1.0 (+httpx)"
KEY_RE = re.compile(r"^events/(\d{4})/(\d{2})/(\d{2})/(\d{2})/([0-9a-f-]{36})\.json$")
API_NAME = "clickstream-http-api"


@pytest.fixture(scope="module")
def ingest_url(local_stack) -> str:
    return stack.status(local_stack)["ingest_url"]


@pytest.fixture(scope="module")
def bucket(local_stack) -> str:
    return stack.status(local_stack)["raw_bucket"]


@pytest.fixture(scope="module")
def s3(local_stack):
    return aws.client("s3", local_stack)


@pytest.fixture
def http():
    with httpx.Client(timeout=30.0, headers={"user-agent": USER_AGENT}) as client:
        yield client


@pytest.fixture
def keys(s3, bucket):
    """The raw keys as a set, now; call it again after the request to see what the request wrote."""
    return lambda: {item["Key"] for item in raw.list_objects(s3, bucket)}


def post_json(http: httpx.Client, url: str, payload, content_type: str = "application/json") -> httpx.Response:
    return http.post(url, content=contract.dumps(payload).encode(), headers={"content-type": content_type})


def test_single_event_is_stored_with_server_context_encrypted(http, ingest_url, s3, bucket, keys):
    event = samples.canonical_event("add_to_cart", random.Random())
    before = keys()
    sent_at = datetime.now(timezone.utc)

    response = post_json(http, ingest_url, event)

    done_at = datetime.now(timezone.utc)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["accepted"] == 1 and body["rejected"] == []
    assert response.headers["x-request-id"] == body["request_id"]
    (key,) = keys() - before
    assert key == body["object_key"]
    match = KEY_RE.match(key)
    assert match, key

    stored = raw.read_object(s3, bucket, key)
    received_at = datetime.fromisoformat(stored["received_at"])
    assert sent_at - timedelta(seconds=1) <= received_at <= done_at + timedelta(seconds=1)
    assert match.groups()[:4] == tuple(received_at.astimezone(timezone.utc).strftime("%Y %m %d %H").split())
    assert stored["object_id"] == match.group(5)
    assert stored["event_count"] == 1 and stored["request_id"] == body["request_id"]
    (item,) = stored["events"]
    assert item["event"] == contract.loads(contract.dumps(event)), "the event is stored exactly as sent"
    assert item["source"] == "canonical" and item["legacy"] is None
    assert item["server"] == {
        "received_at": stored["received_at"],
        "request_id": body["request_id"],
        "api_request_id": response.headers["apigw-requestid"],
        "api_id": local_api_id(API_NAME),
        "stage": "$default",
        "user_agent": USER_AGENT,
        "source_ip_prefix": "127.0.0.0",  # 127.0.0.1 truncated to its /24
    }
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ContentType"] == "application/json"


def test_batch_of_100_is_one_object_with_100_events_in_order(http, ingest_url, s3, bucket, keys):
    events = samples.canonical_batch(100, seed=random.randrange(1 << 30))
    before = keys()

    response = post_json(http, ingest_url, {"events": events})

    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 100 and response.json()["rejected"] == []
    (key,) = keys() - before
    stored = raw.read_object(s3, bucket, key)
    assert stored["event_count"] == 100
    assert [item["event"]["event_id"] for item in stored["events"]] == [event["event_id"] for event in events]
    assert len({item["server"]["request_id"] for item in stored["events"]}) == 1


def test_partly_invalid_batch_stores_only_the_valid_events_and_lists_the_others(http, ingest_url, s3, bucket, keys):
    rng = random.Random()
    events = [samples.canonical_event("page_view", rng) for _ in range(5)]
    events[1]["event_name"] = "checkout"  # not a v1 event name
    del events[3]["client_id"]  # required
    before = keys()

    response = post_json(http, ingest_url, {"events": events})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 3
    assert [rejection["index"] for rejection in body["rejected"]] == [1, 3]
    first, second = body["rejected"]
    assert "$.event_name" in first["reason"] and "checkout" in first["reason"]
    assert "client_id" in second["reason"] and "required" in second["reason"]
    assert all(rejection["reason"] == "; ".join(rejection["errors"]) for rejection in body["rejected"])
    (key,) = keys() - before
    assert key == body["object_key"]
    stored = raw.read_object(s3, bucket, key)
    assert [item["event"]["event_id"] for item in stored["events"]] == [events[i]["event_id"] for i in (0, 2, 4)]


@pytest.mark.parametrize("legacy_name", sorted(contract.LEGACY_EVENT_NAMES))
def test_legacy_tracker_event_is_stored_with_its_canonical_name(http, ingest_url, s3, bucket, keys, legacy_name):
    event = samples.legacy_event(legacy_name, event_id=str(uuid.uuid4()))
    before = keys()

    response = post_json(http, ingest_url, event)

    assert response.status_code == 200, response.text
    (key,) = keys() - before
    (item,) = raw.read_object(s3, bucket, key)["events"]
    canonical_name, page_type = contract.LEGACY_EVENT_NAMES[legacy_name]
    assert item["event"]["event_name"] == canonical_name
    assert item["event"]["event_id"] == event["eventId"]
    assert item["event"]["client_id"] == event["clientId"] and item["event"]["session_id"] == event["sessionId"]
    if page_type:
        assert item["event"]["page_type"] == page_type
    assert item["source"] == "legacy_tracker"
    assert item["legacy"]["event_name"] == legacy_name


def test_text_plain_body_is_accepted_like_json(http, ingest_url, s3, bucket, keys):
    event = samples.canonical_event("page_view", random.Random())
    before = keys()

    response = post_json(http, ingest_url, {"events": [event]}, content_type="text/plain;charset=UTF-8")

    assert response.status_code == 200, response.text
    (key,) = keys() - before
    (item,) = raw.read_object(s3, bucket, key)["events"]
    assert item["event"]["event_id"] == event["event_id"]


@pytest.mark.parametrize("content_type", ["application/xml", "application/x-www-form-urlencoded", "text/plain; charset=iso-8859-1"])
def test_other_content_type_is_415_and_nothing_is_stored(http, ingest_url, keys, content_type):
    before = keys()

    response = post_json(http, ingest_url, samples.canonical_event(), content_type=content_type)

    assert response.status_code == 415, response.text
    assert response.json()["error"] == "unsupported_media_type"
    assert keys() == before


def test_cors_preflight_is_answered_as_the_template_configures(http, ingest_url, local_stack, keys):
    (api,) = [api for s in load_stacks(local_stack) for api in s.http_apis()]
    before = keys()

    response = http.options(
        ingest_url,
        headers={
            "origin": "http://localhost:5173",  # a development server: locally the loopback's origins are admitted
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        },
    )

    assert response.status_code == 200, response.text
    assert "*" not in api.cors["AllowOrigins"]  # the storefront's origin (test_aws_web.py)
    assert response.headers["access-control-allow-origin"] == "http://localhost:5173"
    foreign = http.options(ingest_url, headers={"origin": "https://shop.example.com",
                                                "access-control-request-method": "POST"})
    assert foreign.status_code == 400 and "access-control-allow-origin" not in foreign.headers
    assert response.headers["access-control-max-age"] == str(api.cors["MaxAge"]) == "600"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "content-type" in response.headers["access-control-allow-headers"].lower()
    assert keys() == before


def test_body_over_1_mib_is_413_and_nothing_is_stored(http, ingest_url, keys):
    event = samples.canonical_event("page_view", random.Random(), properties={"padding": "x" * 1_048_576})
    before = keys()

    response = post_json(http, ingest_url, {"events": [event]})

    assert response.status_code == 413, response.text
    assert response.json()["error"] == "body_too_large"
    assert keys() == before


def test_body_that_is_not_json_is_400(http, ingest_url, keys):
    before = keys()

    response = http.post(ingest_url, content=b'{"events": [', headers={"content-type": "application/json"})

    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_json"
    assert keys() == before


@pytest.mark.parametrize(("method", "path"), [("POST", "/nope"), ("POST", "/clickstream/extra"), ("GET", "/clickstream")])
def test_unknown_route_is_api_gateways_404(http, local_stack, method, path):
    response = http.request(method, stack.status(local_stack)["api_url"] + path, json=samples.canonical_event())

    assert response.status_code == 404
    assert response.json() == {"message": "Not Found"}


def test_raw_objects_survive_down_and_up(http, ingest_url, local_stack, s3, bucket, keys):
    """Restarts the session's stack; it is running again afterwards whatever happens."""
    before = keys()
    for size in (1, 7):
        assert post_json(http, ingest_url, {"events": samples.canonical_batch(size, seed=size)}).status_code == 200
    written = keys() - before
    assert len(written) == 2
    everything = {key: s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys()}
    try:
        stopped = stack.down(local_stack)
        assert {"api", "aws"} <= set(stopped)
        assert stack.status(local_stack)["services"]["aws"]["healthy"] is False
        with pytest.raises(httpx.TransportError):
            http.post(ingest_url, json={})
    finally:
        stack.up(local_stack)
    assert stack.status(local_stack)["healthy"] is True

    fresh = aws.client("s3", local_stack)
    assert {item["Key"] for item in raw.list_objects(fresh, bucket)} == set(everything)
    for key, content in everything.items():
        assert fresh.get_object(Bucket=bucket, Key=key)["Body"].read() == content, key
    for key in written:
        head = fresh.head_object(Bucket=bucket, Key=key)
        assert head["ServerSideEncryption"] == "AES256" and head["ContentType"] == "application/json", head
    after = post_json(http, ingest_url, samples.canonical_event())
    assert after.status_code == 200, "the restarted API writes again"


def test_source_ip_is_the_tcp_peer_not_x_forwarded_for(http, ingest_url, s3, bucket, keys):
    """API Gateway takes sourceIp from the connection; a client-sent X-Forwarded-For must not spoof it."""
    before = keys()
    response = http.post(ingest_url, content=contract.dumps(samples.canonical_event()).encode(),
                         headers={"content-type": "application/json", "x-forwarded-for": "203.0.113.9"})

    assert response.status_code == 200, response.text
    (key,) = keys() - before
    (item,) = raw.read_object(s3, bucket, key)["events"]
    assert item["server"]["source_ip_prefix"] == "127.0.0.0"
