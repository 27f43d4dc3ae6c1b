"""The ingest pure functions, through `handle_http_event` with moto S3 in-process and a fixed clock."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from clickstream import contract
from clickstream.ingestion import ingest
from clickstream.shop import samples
from clickstream.ingestion.ingest import (
    IngestSettings,
    ServerContext,
    handle_http_event,
    ingest_batch,
    object_key,
    truncate_ip,
)

from event_samples import BUCKET, RECEIVED_AT, load_sample

REQUEST_ID = "8f5b3c1e-2d4a-4b6c-9e8f-0a1b2c3d4e5f"


def fixed_clock() -> datetime:
    return RECEIVED_AT


def handle(event, s3, settings, now=fixed_clock):
    response = handle_http_event(event, REQUEST_ID, s3, settings, now=now)
    return response["statusCode"], json.loads(response["body"]), response


def body_of(*events) -> str:
    return contract.dumps(events[0] if len(events) == 1 else {"events": list(events)})


# IP truncation, keys, settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "truncated"),
    [
        ("203.0.113.77", "203.0.113.0"),
        ("10.1.2.255", "10.1.2.0"),
        (" 198.51.100.9 ", "198.51.100.0"),
        ("2001:db8:85a3:8d3:1319:8a2e:370:7348", "2001:db8:85a3::"),
        ("2001:DB8:ffff:1::1", "2001:db8:ffff::"),
        ("::ffff:198.51.100.23", "198.51.100.0"),
        ("2002:c633:6417::1", "198.51.100.0"),  # 6to4 of 198.51.100.23: its /48 is the whole IPv4 address
        ("2002:cb00:7107:4::9", "203.0.113.0"),
        ("fe80::1%eth0", "fe80::"),
        ("::1", "::"),
        ("not-an-ip", None),
        ("203.0.113.300", None),
        ("203.0.113.7:443", None),
        ("", None),
        (None, None),
        (2130706433, None),
    ],
)
def test_truncate_ip(ip, truncated):
    assert truncate_ip(ip) == truncated


def test_server_context_never_keeps_a_full_ip():
    context = ServerContext(request_id="r", source_ip_prefix="203.0.113.77", user_agent="u" * 2000)
    assert context.source_ip_prefix == "203.0.113.0"
    assert len(context.user_agent) == 512


def test_server_context_from_payload_2_event():
    context = ServerContext.from_http_event(load_sample("apigw_http_post_legacy_event.json"), "lambda-request")
    assert context.as_dict(RECEIVED_AT) == {
        "received_at": "2025-03-01T10:15:30.123Z",
        "request_id": "lambda-request",
        "api_request_id": "Jc5gZhNvoAMEMoy=",
        "api_id": "a1b2c3d4e5",
        "stage": "$default",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
        "source_ip_prefix": "2001:db8:85a3::",
    }


@pytest.mark.parametrize(
    ("received_at", "key"),
    [
        (datetime(2025, 3, 1, 10, 59, 59, 999999, tzinfo=timezone.utc), "events/2025/03/01/10/ID.json"),
        (datetime(2025, 3, 1, 11, 0, 0, tzinfo=timezone.utc), "events/2025/03/01/11/ID.json"),
        (datetime(2025, 3, 1, 3, 30, tzinfo=timezone(timedelta(hours=7))), "events/2025/02/28/20/ID.json"),
        (datetime(2024, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-1))), "events/2025/01/01/00/ID.json"),
        (datetime(2024, 2, 29, 0, 0, tzinfo=timezone.utc), "events/2024/02/29/00/ID.json"),
    ],
)
def test_object_key_is_partitioned_by_utc_hour(received_at, key):
    assert object_key(received_at, "ID") == key


def test_object_key_uses_the_prefix_and_refuses_naive_times():
    object_id = uuid.UUID("0b7c6f1e-3f0a-4c8e-9d1f-2a6b5c4d3e2f")
    assert object_key(RECEIVED_AT, object_id, "raw/events/") == f"raw/events/2025/03/01/10/{object_id}.json"
    with pytest.raises(ValueError):
        object_key(datetime(2025, 3, 1, 10), object_id)


def test_settings_from_template_environment():
    environ = {"RAW_BUCKET": "clickstream-s3-ingest-dev", "RAW_PREFIX": "events/", "MAX_BATCH_EVENTS": "500", "MAX_BODY_BYTES": "1048576"}
    assert IngestSettings.from_env(environ) == IngestSettings("clickstream-s3-ingest-dev", "events/", 500, 1_048_576)
    assert IngestSettings.from_env({"RAW_BUCKET": "b", "RAW_PREFIX": "raw"}).prefix == "raw/"


@pytest.mark.parametrize(
    "environ", [{}, {"RAW_BUCKET": " "}, {"RAW_BUCKET": "b", "MAX_BATCH_EVENTS": "many"}, {"RAW_BUCKET": "b", "MAX_BODY_BYTES": "0"}]
)
def test_settings_refuse_a_broken_environment(environ):
    with pytest.raises(ValueError):
        IngestSettings.from_env(environ)


# Accepted requests ----------------------------------------------------------------------------------------------


def test_single_event_is_stored_as_one_object_with_server_context(http_event, s3, settings, stored_objects):
    event = http_event()
    status, body, response = handle(event, s3, settings)

    assert status == 200
    assert body["accepted"] == 1 and body["rejected"] == [] and body["request_id"] == REQUEST_ID
    assert body["object_key"].startswith("events/2025/03/01/10/") and body["object_key"].endswith(".json")
    assert response["headers"]["content-type"] == "application/json"
    assert response["headers"]["x-request-id"] == REQUEST_ID

    objects = stored_objects()
    assert list(objects) == [body["object_key"]]
    raw_object = objects[body["object_key"]]
    assert contract.validate_raw_object(raw_object) == []
    assert raw_object["object_id"] in body["object_key"]
    assert (raw_object["schema_version"], raw_object["event_count"]) == ("1", 1)
    assert (raw_object["received_at"], raw_object["request_id"]) == ("2025-03-01T10:15:30.123Z", REQUEST_ID)
    [stored] = raw_object["events"]
    assert stored["event"] == contract.loads(event["body"])
    assert (stored["source"], stored["legacy"]) == ("canonical", None)
    assert stored["server"] == {
        "received_at": "2025-03-01T10:15:30.123Z",
        "request_id": REQUEST_ID,
        "api_request_id": "Jc5gXhNvoAMEMmw=",
        "api_id": "a1b2c3d4e5",
        "stage": "$default",
        "user_agent": event["requestContext"]["http"]["userAgent"],
        "source_ip_prefix": "203.0.113.0",
    }


def test_stored_object_is_encrypted_json_with_exact_money_and_no_full_ip(http_event, s3, settings):
    _, body, _ = handle(http_event(), s3, settings)
    stored = s3.get_object(Bucket=BUCKET, Key=body["object_key"])
    text = stored["Body"].read().decode("utf-8")
    assert stored["ContentType"] == "application/json"
    assert stored["ServerSideEncryption"] == "AES256"
    assert '"price":1299.90' in text and '"discount_price":"1199.00"' in text and '"value":1199.00' in text
    assert "203.0.113.77" not in text


def test_batch_sent_by_beacon_is_one_object(http_event, s3, settings, stored_objects):
    status, body, _ = handle(http_event(sample="apigw_http_post_batch_beacon.json"), s3, settings)
    assert (status, body["accepted"], body["rejected"]) == (200, 3, [])
    [raw_object] = stored_objects().values()
    assert [stored["event"]["event_name"] for stored in raw_object["events"]] == ["page_view", "search", "product_view"]
    assert raw_object["event_count"] == 3


def test_legacy_event_is_mapped_and_marked(http_event, s3, settings, stored_objects):
    status, body, _ = handle(http_event(sample="apigw_http_post_legacy_event.json"), s3, settings)
    assert (status, body["accepted"]) == (200, 1)
    [raw_object] = stored_objects().values()
    [stored] = raw_object["events"]
    assert stored["source"] == "legacy_tracker"
    assert stored["event"]["event_name"] == "add_to_cart"
    assert stored["legacy"]["event_name"] == "add_to_cart_click"
    assert stored["legacy"]["is_first_visit"] is False
    assert stored["server"]["source_ip_prefix"] == "2001:db8:85a3::"
    assert contract.validate_raw_object(raw_object) == []


def test_base64_encoded_body_is_decoded(http_event, s3, settings, stored_objects):
    event = http_event(sample="apigw_http_post_base64.json")
    status, body, _ = handle(event, s3, settings)
    assert (status, body["accepted"]) == (200, 1)
    [raw_object] = stored_objects().values()
    assert raw_object["events"][0]["event"]["event_id"] == "5f0c2a9e-8d7b-4c1a-b3e4-6f7a8b9c0d1e"


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "Application/JSON; charset=UTF-8", "text/plain;charset=UTF-8", "text/plain", 'text/plain; charset="utf-8"'],
)
def test_json_and_plain_text_are_accepted(http_event, s3, settings, content_type):
    status, body, _ = handle(http_event(content_type=content_type), s3, settings)
    assert (status, body["accepted"]) == (200, 1)


def test_header_names_are_case_insensitive(http_event, s3, settings):
    event = http_event(content_type=None)
    event["headers"]["Content-Type"] = "text/plain;charset=UTF-8"
    assert handle(event, s3, settings)[0] == 200


def test_receive_time_comes_from_the_injected_clock(http_event, s3, settings, stored_objects):
    late = datetime(2025, 12, 31, 23, 59, 59, 999000, tzinfo=timezone.utc)
    _, body, _ = handle(http_event(), s3, settings, now=lambda: late)
    assert body["object_key"].startswith("events/2025/12/31/23/")
    assert stored_objects()[body["object_key"]]["received_at"] == "2025-12-31T23:59:59.999Z"


def test_utf8_bom_and_non_ascii_text_are_accepted(http_event, s3, settings, stored_objects, make_event):
    event = make_event(product={"id": "KB-1", "name": "Bàn phím cơ ⌨"})
    payload = base64.b64encode(b"\xef\xbb\xbf" + json.dumps(event, ensure_ascii=False).encode("utf-8")).decode()
    status, _, _ = handle(http_event(payload, base64_encoded=True), s3, settings)
    assert status == 200
    [raw_object] = stored_objects().values()
    assert raw_object["events"][0]["event"]["product"]["name"] == "Bàn phím cơ ⌨"


# Partly and wholly invalid batches ------------------------------------------------------------------------------


def test_partly_invalid_batch_stores_exactly_the_valid_events(http_event, s3, settings, stored_objects, make_event, make_legacy_event):
    valid_first = make_event()
    unknown_name = make_event(event_name="checkout")
    valid_second = make_event(event_name="purchase", order_id="o-1", value="2499.00", currency="EUR")
    legacy = make_legacy_event(eventName="home_view", eventId="6a1d3b0f-9e8c-4d2b-a4f5-7a8b9c0d1e2f")
    batch = [valid_first, unknown_name, valid_second, "not an event", legacy, make_event(client_ts="yesterday")]

    status, body, _ = handle(http_event(body_of(*batch)), s3, settings)

    assert status == 200
    assert body["accepted"] == 3
    assert [rejection["index"] for rejection in body["rejected"]] == [1, 3, 5]
    assert body["rejected"][0]["reason"].startswith('$.event_name: "checkout" is not one of')
    assert body["rejected"][1]["errors"] == ["$: an event must be a JSON object, not a string"]
    assert body["rejected"][2]["errors"][0].startswith("$.client_ts: ")
    [raw_object] = stored_objects().values()
    assert [stored["event"]["event_id"] for stored in raw_object["events"]] == [
        valid_first["event_id"],
        valid_second["event_id"],
        "6a1d3b0f-9e8c-4d2b-a4f5-7a8b9c0d1e2f",
    ]
    assert raw_object["events"][1]["event"] == valid_second


def test_wholly_invalid_batch_is_400_with_every_rejection(http_event, s3, settings, stored_objects, make_event):
    batch = [make_event(event_id="nope"), 42, make_event(currency="eur")]
    status, body, _ = handle(http_event(body_of(*batch)), s3, settings)
    assert status == 400
    assert (body["error"], body["accepted"]) == ("no_valid_events", 0)
    assert [rejection["index"] for rejection in body["rejected"]] == [0, 1, 2]
    assert stored_objects() == {}


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"client_id": None}, "$.client_id: null is not of type 'string'"),
        ({"quantity": "2"}, "$.quantity"),
        ({"event_name": "checkout"}, "$.event_name"),
        ({"page_url": "u" * 3000}, "$.page_url: "),
        ({"properties": {f"k{i}": "v" for i in range(40)}}, "$.properties: has 40 keys"),
        ({"properties": {"text": "t" * 300}}, "$.properties.text"),
        ({"event_id": "1740823200000-9f3a"}, "$.event_id"),
        ({"client_ts": "2025-13-01T10:00:00Z"}, "$.client_ts"),
        ({"sent_ts": "Sat, 01 Mar 2025 10:15:30 GMT"}, "$.sent_ts"),
        ({"utm": {"source": "x", "extra": 1}}, "$.utm"),
    ],
)
def test_invalid_single_event_is_400_and_not_stored(http_event, s3, settings, stored_objects, make_event, fields, fragment):
    status, body, _ = handle(http_event(body_of(make_event(**fields))), s3, settings)
    assert status == 400
    assert body["error"] == "no_valid_events"
    [rejection] = body["rejected"]
    assert rejection["index"] == 0
    assert fragment in rejection["reason"]
    assert stored_objects() == {}


def test_missing_required_field_is_named(http_event, s3, settings, make_event):
    event = make_event()
    del event["session_id"]
    _, body, _ = handle(http_event(body_of(event)), s3, settings)
    assert body["rejected"][0]["errors"] == ["$: 'session_id' is a required property"]


# Malformed requests ---------------------------------------------------------------------------------------------

VALID = '{"event_id":"0b7c6f1e-3f0a-4c8e-9d1f-2a6b5c4d3e2f","event_name":"page_view","client_ts":"2025-03-01T10:00:00Z","client_id":"c","session_id":"s"}'


@pytest.mark.parametrize(
    ("body", "base64_encoded", "status", "error"),
    [
        (None, False, 400, "empty_body"),
        ("", False, 400, "empty_body"),
        (" \n\t", False, 400, "empty_body"),
        ("{", False, 400, "invalid_json"),
        ("event_name=page_view", False, 400, "invalid_json"),
        (VALID + "}", False, 400, "invalid_json"),
        ('{"price": NaN}', False, 400, "invalid_json"),
        ("[" * 100_000 + "]" * 100_000, False, 400, "invalid_json"),
        ("1" * 5000, False, 400, "invalid_json"),
        ("[" + VALID + "]", False, 400, "invalid_body"),
        ('"page_view"', False, 400, "invalid_body"),
        ("null", False, 400, "invalid_body"),
        ('{"events": {"a": 1}}', False, 400, "invalid_body"),
        ('{"events": [' + VALID + '], "sent_ts": "2025-03-01T10:00:00Z"}', False, 400, "invalid_body"),
        ('{"events": []}', False, 400, "empty_batch"),
        ("not base64!", True, 400, "invalid_encoding"),
        (base64.b64encode(b'{"event_name": "\xff\xfe"}').decode(), True, 400, "invalid_encoding"),
        ("", True, 400, "empty_body"),
    ],
)
def test_malformed_requests_are_4xx_and_store_nothing(http_event, s3, settings, stored_objects, body, base64_encoded, status, error):
    response_status, response_body, response = handle(http_event(body, base64_encoded=base64_encoded), s3, settings)
    assert (response_status, response_body["error"]) == (status, error)
    assert response_body["message"] and response_body["request_id"] == REQUEST_ID
    assert response["headers"]["x-request-id"] == REQUEST_ID
    assert stored_objects() == {}


def test_body_over_the_limit_is_413(http_event, s3, settings, stored_objects, make_event):
    padding = "p" * (settings.max_body_bytes - len(body_of(make_event())))
    too_big = body_of(make_event(page_url=None, properties=None) | {"x": padding})
    assert len(too_big.encode()) > settings.max_body_bytes
    status, body, _ = handle(http_event(too_big), s3, settings)
    assert (status, body["error"]) == (413, "body_too_large")
    status, body, _ = handle(http_event(base64.b64encode(too_big.encode()).decode(), base64_encoded=True), s3, settings)
    assert (status, body["error"]) == (413, "body_too_large")
    assert stored_objects() == {}


def test_limit_counts_utf8_bytes_not_characters(http_event, s3, stored_objects, make_event):
    text = body_of(make_event(page_type="é" * 60))
    small = IngestSettings(raw_bucket=BUCKET, max_body_bytes=len(text))
    assert len(text.encode("utf-8")) > small.max_body_bytes
    status, body, _ = handle(http_event(text), s3, small)
    assert (status, body["error"]) == (413, "body_too_large")


def test_batch_over_the_event_limit_is_400(http_event, s3, settings, stored_objects, make_event):
    status, body, _ = handle(http_event(body_of(*[make_event() for _ in range(501)])), s3, settings)
    assert (status, body["error"]) == (400, "batch_too_large")
    assert "500" in body["message"]
    assert stored_objects() == {}


def test_batch_at_the_event_limit_is_one_object(http_event, s3, settings, stored_objects, make_event):
    status, body, _ = handle(http_event(body_of(*[make_event() for _ in range(500)])), s3, settings)
    assert (status, body["accepted"]) == (200, 500)
    assert [raw_object["event_count"] for raw_object in stored_objects().values()] == [500]


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "application/xml",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "application/vnd.api+json",
        "text/html",
        "text/plain; charset=iso-8859-1",
        "application/json; charset=utf-16",
    ],
)
def test_other_content_types_are_415(http_event, s3, settings, stored_objects, content_type):
    status, body, _ = handle(http_event(content_type=content_type), s3, settings)
    assert (status, body["error"]) == (415, "unsupported_media_type")
    assert "application/json or text/plain" in body["message"] or "UTF-8" in body["message"]
    assert stored_objects() == {}


# Storage failures -----------------------------------------------------------------------------------------------


class FailingS3:
    """An S3 client whose put_object fails the way botocore does."""

    def __init__(self, error: Exception):
        self.error = error
        self.calls = 0

    def put_object(self, **kwargs):
        self.calls += 1
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}}, "PutObject"),
        EndpointConnectionError(endpoint_url="https://clickstream-s3-ingest.s3.amazonaws.com"),
    ],
)
def test_storage_failure_is_503_with_a_retry_hint(http_event, settings, error):
    s3 = FailingS3(error)
    status, body, response = handle(http_event(sample="apigw_http_post_batch_beacon.json"), s3, settings)
    assert s3.calls == 1
    assert (status, body["error"]) == (503, "storage_unavailable")
    assert "retry" in body["message"]
    assert response["headers"]["retry-after"] == "1"


def test_missing_bucket_is_503_not_4xx(http_event, s3, stored_objects):
    status, body, _ = handle(http_event(), s3, IngestSettings(raw_bucket="no-such-bucket"))
    assert (status, body["error"]) == (503, "storage_unavailable")


def test_invalid_request_never_touches_storage(http_event, settings):
    s3 = FailingS3(ClientError({"Error": {"Code": "InternalError", "Message": "x"}}, "PutObject"))
    status, _, _ = handle(http_event('{"events": ["x"]}'), s3, settings)
    assert (status, s3.calls) == (400, 0)


# ingest_batch, the path of the traffic simulator ----------------------------------------------------------------


def test_ingest_batch_with_injected_clock_and_object_id(s3, settings, stored_objects, make_event, make_legacy_event):
    object_id = uuid.UUID("0b7c6f1e-3f0a-4c8e-9d1f-2a6b5c4d3e2f")
    when = datetime(2024, 11, 29, 8, 5, tzinfo=timezone.utc)
    events = [make_event(value=Decimal("10.50"), currency="EUR"), make_legacy_event(), {"event_name": "page_view"}]
    context = ServerContext(request_id="simulator-1", user_agent="simulator", source_ip_prefix="198.51.100.23")

    result = ingest_batch(events, context, s3, settings, when, object_id=object_id)

    assert result.object_key == f"events/2024/11/29/08/{object_id}.json"
    assert result.accepted == 2 and [rejection.index for rejection in result.rejected] == [2]
    assert result.event_ids[0] == events[0]["event_id"]
    raw_object = stored_objects()[result.object_key]
    assert raw_object["received_at"] == "2024-11-29T08:05:00.000Z"
    assert raw_object["events"][0]["server"]["source_ip_prefix"] == "198.51.100.0"
    assert raw_object["events"][1]["event"]["client_ts"] == "2024-11-29T08:05:00.000Z"


def test_ingest_batch_stores_nothing_without_valid_events(s3, settings, stored_objects):
    result = ingest_batch([{}, []], ServerContext(request_id="r"), s3, settings, RECEIVED_AT)
    assert (result.accepted, result.object_key, len(result.rejected)) == (0, None, 2)
    assert stored_objects() == {}


def test_ingest_batch_refuses_more_than_the_batch_limit(s3, make_event):
    small = IngestSettings(raw_bucket=BUCKET, max_batch_events=2)
    with pytest.raises(ValueError):
        ingest_batch([make_event() for _ in range(3)], ServerContext(request_id="r"), s3, small, RECEIVED_AT)


def test_retried_request_keeps_the_event_ids(http_event, s3, settings, stored_objects):
    event = http_event(sample="apigw_http_post_legacy_event.json")
    first = handle(event, s3, settings)[1]
    retry = handle(event, s3, settings, now=lambda: RECEIVED_AT + timedelta(seconds=3))[1]
    objects = stored_objects()
    ids = [raw_object["events"][0]["event"]["event_id"] for raw_object in objects.values()]
    assert first["object_key"] != retry["object_key"]
    assert len(ids) == 2 and ids[0] == ids[1]


# Hostile events: each is rejected with its reason, its neighbours are stored, nothing answers 5xx -------------------


# (field, its value as JSON text, the reason's path, a fragment of the reason)
HOSTILE_FIELDS = [
    ("event_name", r'"\ud800"', "$.event_name", "unpaired surrogate"),
    ("client_id", r'"c-\udfff"', "$.client_id", "unpaired surrogate"),
    ("session_id", r'"\ud83d"', "$.session_id", "unpaired surrogate"),
    ("page_url", r'"https://shop.example/\u0000"', "$.page_url", "U+0000"),
    ("properties", r'{"note": {"deep": "x\u0000"}}', "$.properties.note.deep", "U+0000"),
    ("properties", r'{"k\u0000": 1}', "$.properties", "has a key that contains U+0000"),
    ("properties", '{"big": 1e200000}', "$.properties.big", "is not less than 1000000000000000"),
    ("properties", '{"int": 1' + "0" * 400 + "}", "$.properties.int", "is not less than 1000000000000000"),
    ("properties", '{"tiny": 1e-400}', "$.properties.tiny", "more than 340 decimal places"),
    ("properties", '{"long": 3.14159265358979323846}', "$.properties.long", "more than 17 significant digits"),
    ("value", "0.30000000000000004", "$.value", "send money as a decimal string"),
    ("value", "0.001", "$.value", "more than 2 decimals"),
    ("product", '{"id": "p", "price": "19.999"}', "$.product.price", "is not a decimal string"),
    ("client_ts", '"0001-01-01T00:00:00+01:00"', "$.client_ts", "is not an RFC 3339 date-time"),
    ("sent_ts", '"9999-12-31T23:59:59-01:00"', "$.sent_ts", "is not an RFC 3339 date-time"),
]
HOSTILE_IDS = [f"{field}={text[:24]}" for field, text, _, _ in HOSTILE_FIELDS]


def _json_with(make_event, field: str, json_text: str) -> str:
    """The JSON text of an event whose `field` is `json_text`, written as is (escapes, huge numbers)."""
    return json.dumps(make_event(**{field: "SLOT"})).replace('"SLOT"', json_text)


@pytest.mark.parametrize(("field", "json_text", "path", "fragment"), HOSTILE_FIELDS, ids=HOSTILE_IDS)
def test_a_hostile_event_is_rejected_with_its_reason_and_its_neighbour_is_stored(
        http_event, s3, settings, stored_objects, make_event, field, json_text, path, fragment):
    good = make_event()
    body = '{"events": [' + json.dumps(good) + "," + _json_with(make_event, field, json_text) + "]}"
    status, answer, _ = handle(http_event(body=body), s3, settings)
    assert status == 200, answer
    assert answer["accepted"] == 1
    [rejection] = answer["rejected"]
    assert rejection["index"] == 1
    assert any(reason.startswith(f"{path}: ") and fragment in reason for reason in rejection["errors"]), rejection
    [stored] = stored_objects().values()
    assert [e["event"]["event_id"] for e in stored["events"]] == [good["event_id"]]


@pytest.mark.parametrize(("field", "json_text", "path", "fragment"), HOSTILE_FIELDS, ids=HOSTILE_IDS)
def test_a_hostile_single_event_is_400_never_5xx(http_event, s3, settings, stored_objects, make_event, field,
                                                 json_text, path, fragment):
    status, answer, _ = handle(http_event(body=_json_with(make_event, field, json_text)), s3, settings)
    assert status == 400 and answer["error"] == "no_valid_events"
    assert any(reason.startswith(f"{path}: ") and fragment in reason for reason in answer["rejected"][0]["errors"])
    assert stored_objects() == {}


def test_every_invalid_event_of_a_full_batch_gets_a_reason_and_only_the_first_ones_get_several(
        http_event, s3, settings, make_event):
    broken = [make_event(event_id=i, client_id="", currency="eur") for i in range(settings.max_batch_events)]
    response = handle_http_event(http_event(body=json.dumps({"events": broken})), "req-1", s3, settings)
    rejected = json.loads(response["body"])["rejected"]
    assert [r["index"] for r in rejected] == list(range(settings.max_batch_events))
    assert all(len(r["errors"]) == 3 for r in rejected[: ingest.EXPLAINED_EVENTS])
    assert all(r["errors"] == ["$.event_id: 0 is not of type 'string'".replace("0", str(r["index"]), 1)]
               for r in rejected[ingest.EXPLAINED_EVENTS:])


def test_explaining_invalid_events_never_imports_the_slow_jsonschema_package():
    script = """
import json, sys
from clickstream import contract
reasons = contract.validate_event({"event_id": 1, "properties": {"a": [[1]]}})
assert reasons, reasons
assert "jsonschema" not in sys.modules, sorted(m for m in sys.modules if m.startswith("jsonschema"))
print(json.dumps(reasons))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "$.event_id: 1 is not of type 'string'" in json.loads(result.stdout)


# Identity: only a JWT authorizer's verified claims sign an event in -------------------------------------------


def identity_request(*events, claims: dict | None = None) -> dict:
    """A payload 2.0 POST of `events`; with `claims`, as a JWT authorizer passes them (POST /clickstream/user)."""
    context = {"requestId": "r", **({"authorizer": {"jwt": {"claims": claims, "scopes": None}}} if claims else {})}
    return {"version": "2.0", "headers": {"content-type": "application/json"}, "body": body_of(*events),
            "isBase64Encoded": False, "requestContext": context}


def identities(stored: dict) -> list[tuple]:
    return [(e["event"]["user_id"], e["event"].get("user_login_state"), (e["event"].get("properties") or {}).get(
        ingest.UNVERIFIED_USER_ID), (e["legacy"] or {}).get("identity_source")) for e in stored["events"]]


def test_the_verified_sub_is_every_events_user_id_whatever_the_body_says(s3, settings, stored_objects):
    events = [samples.canonical_event("purchase", user_id="forged", user_login_state="anonymous"),
              samples.canonical_event("page_view", user_id=None),
              samples.legacy_event("login_success", event_id=str(uuid.uuid4()), userId="", userLoginState="guest")]
    status, body, _ = handle(identity_request(*events, claims={"sub": "the-sub"}), s3, settings)
    assert status == 200, body
    (stored,) = stored_objects().values()
    assert identities(stored) == [("the-sub", "logged_in", None, None), ("the-sub", "logged_in", None, None),
                                  ("the-sub", "logged_in", None, "user_id")]


def test_without_a_token_a_body_user_id_is_only_an_unverified_claim_in_the_properties(s3, settings, stored_objects):
    events = [samples.canonical_event("purchase", user_id="someone-else", user_login_state="logged_in",
                                      properties={"button": "buy"}),
              samples.canonical_event("page_view", user_id=None, user_login_state="anonymous"),
              samples.legacy_event("login_success", event_id=str(uuid.uuid4()), userId="shop-7",
                                   userLoginState="logged_in")]
    status, body, _ = handle(identity_request(*events), s3, settings)
    assert (status, body["accepted"]) == (200, 3), body
    (stored,) = stored_objects().values()
    assert contract.validate_raw_object(stored) == []
    assert identities(stored) == [(None, None, "someone-else", None), (None, "anonymous", None, None),
                                  (None, None, "shop-7", "client_id")]
    assert stored["events"][0]["event"]["properties"] == {"button": "buy", "unverified_user_id": "someone-else"}
    assert stored["events"][2]["legacy"]["user_login_state"] is None


def test_an_unverified_claim_needs_room_in_the_properties(s3, settings, stored_objects):
    full = {f"p{n}": n for n in range(ingest.MAX_PROPERTIES)}
    events = [samples.canonical_event("page_view", user_id="claimed", properties=full),
              samples.canonical_event("page_view", user_id=None, properties=full),
              samples.canonical_event("page_view", user_id="claimed", properties={
                  **{key: value for key, value in full.items() if key != "p0"}, "unverified_user_id": "sent"})]
    status, body, _ = handle(identity_request(*events), s3, settings)
    assert (status, body["accepted"]) == (200, 2), body
    ((index, reason),) = [(r["index"], r["reason"]) for r in body["rejected"]]
    assert index == 0 and reason.startswith("$.properties: has 32 keys; without a token the user_id is kept")
    (stored,) = stored_objects().values()
    assert [e["event"]["properties"].get("unverified_user_id") for e in stored["events"]] == [None, "claimed"]


@pytest.mark.parametrize("context", [{}, {"authorizer": {}}, {"authorizer": {"jwt": {"claims": {}}}}])
def test_no_verified_sub_without_an_authorizers_claims(context):
    assert ingest.verified_user_id({"requestContext": context}) is None
