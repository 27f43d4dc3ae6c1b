"""The event contract: schema, readable reasons, exact money, the legacy tracker mapping."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st
from jsonschema import Draft202012Validator

from clickstream import contract
from clickstream.contract import (
    EVENT_NAMES,
    LEGACY_EVENT_NAMES,
    ORIGINAL_EVENT_NAMES,
    SOURCE_CANONICAL,
    SOURCE_LEGACY,
    dumps,
    event_schema,
    is_legacy_event,
    legacy_event_id,
    loads,
    map_legacy_event,
    normalize_event,
    validate_event,
    validate_legacy_event,
)

from event_samples import RECEIVED_AT, load_sample


def sample_body(name: str) -> dict:
    return loads(load_sample(name)["body"])


# Schema ---------------------------------------------------------------------------------------------------------


def test_schema_is_valid_draft_2020_12_and_versioned():
    schema = event_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith(f"-v{contract.SCHEMA_VERSION}.json")
    assert contract.EVENT_SCHEMA_PATH.name == f"clickstream-event-v{contract.SCHEMA_VERSION}.json"
    assert schema["additionalProperties"] is False
    assert "additionalProperties" in schema["description"]


def test_event_names_in_code_and_schema_agree():
    schema = event_schema()
    assert tuple(schema["properties"]["event_name"]["enum"]) == EVENT_NAMES
    assert set(schema["$defs"]["legacy_event"]["properties"]["eventName"]["enum"]) == set(LEGACY_EVENT_NAMES)
    assert {name for name, _ in LEGACY_EVENT_NAMES.values()} <= set(EVENT_NAMES)


def test_minimal_event_is_valid(make_event):
    assert validate_event(make_event()) == []


@pytest.mark.parametrize(
    "sample", ["apigw_http_post_single_event.json", "apigw_http_post_batch_beacon.json"]
)
def test_sample_events_are_valid(sample):
    body = sample_body(sample)
    for event in body.get("events", [body]):
        assert validate_event(event) == []


def test_package_samples_follow_the_contract():
    from clickstream.shop import samples

    assert [reasons for event in samples.canonical_batch(60) if (reasons := validate_event(event))] == []
    for legacy_name in LEGACY_EVENT_NAMES:
        normalized, errors = normalize_event(samples.legacy_event(legacy_name), RECEIVED_AT)
        assert errors == [] and normalized.source == SOURCE_LEGACY


@pytest.mark.parametrize("name", EVENT_NAMES)
def test_every_canonical_event_name_is_valid(make_event, name):
    assert validate_event(make_event(event_name=name)) == []


@pytest.mark.parametrize(
    "fields",
    [
        {"user_id": None, "referrer": None, "utm": None, "product": None, "value": None, "currency": None},
        {"client_ts": "2025-03-01T03:15:30Z", "sent_ts": "2025-03-01t03:15:31.5z"},
        {"event_id": "0B7C6F1E-3F0A-4C8E-9D1F-2A6B5C4D3E2F"},
        {"product": {"id": "LAP-1", "price": Decimal("1299.90"), "discount_price": "1199.9"}, "value": 0},
        {"product": {"id": "LAP-1", "price": "0", "discount_price": "999999999.99"}},
        {"quantity": Decimal("2.0")},
        {"referrer": "", "page_type": "home", "user_login_state": "guest"},
        {"properties": {"query": "27 inch", "results": 12, "filters": ["dell", True], "sort": {"by": "price"}}},
        {"page_url": "https://shop.example/search?q=café", "product": {"id": "x", "name": "Bàn phím cơ"}},
    ],
)
def test_optional_fields_accept_documented_values(make_event, fields):
    assert validate_event(make_event(**fields)) == []


@pytest.mark.parametrize("field", ["event_id", "event_name", "client_ts", "client_id", "session_id"])
def test_each_required_field_is_required(make_event, field):
    event = make_event()
    del event[field]
    assert validate_event(event) == [f"$: '{field}' is a required property"]


@pytest.mark.parametrize(
    ("fields", "path", "fragment"),
    [
        ({"event_id": "not-a-uuid"}, "$.event_id", "is not a UUID"),
        ({"event_id": "0b7c6f1e3f0a4c8e9d1f2a6b5c4d3e2f"}, "$.event_id", "is not a UUID"),
        ({"event_id": "{0b7c6f1e-3f0a-4c8e-9d1f-2a6b5c4d3e2f}"}, "$.event_id", "is not a UUID"),
        ({"event_id": 42}, "$.event_id", "is not of type 'string'"),
        ({"event_name": "checkout"}, "$.event_name", '"checkout" is not one of "page_view"'),
        ({"event_name": "PAGE_VIEW"}, "$.event_name", "is not one of"),
        ({"client_ts": "yesterday"}, "$.client_ts", "is not an RFC 3339 date-time with an offset"),
        ({"client_ts": "2025-03-01T10:15:30"}, "$.client_ts", "is not an RFC 3339 date-time"),
        ({"client_ts": "2025-03-01 10:15:30Z"}, "$.client_ts", "is not an RFC 3339 date-time"),
        ({"client_ts": "2025-02-30T10:15:30Z"}, "$.client_ts", "is not an RFC 3339 date-time"),
        ({"client_ts": "2025-03-01T10:15:60Z"}, "$.client_ts", "is not an RFC 3339 date-time"),
        ({"client_ts": 1740823200000}, "$.client_ts", "is not of type 'string'"),
        ({"sent_ts": "soon"}, "$.sent_ts", "is not an RFC 3339 date-time"),
        ({"client_id": ""}, "$.client_id", "must not be empty"),
        ({"client_id": "has space"}, "$.client_id", "is not an identifier of 1 to 128 printable ASCII"),
        ({"client_id": "c" * 129}, "$.client_id", "is too long (at most 128 characters)"),
        ({"client_id": None}, "$.client_id", "null is not of type 'string'"),
        ({"session_id": 7}, "$.session_id", "7 is not of type 'string'"),
        ({"user_id": ""}, "$.user_id", "must not be empty"),
        ({"user_login_state": "admin"}, "$.user_login_state", '"admin" is not one of "logged_in", "anonymous", "guest", null'),
        ({"page_url": "https://shop.example/" + "p" * 2030}, "$.page_url", "is too long (at most 2048 characters)"),
        ({"page_type": "p" * 65}, "$.page_type", "is too long (at most 64 characters)"),
        ({"referrer": 7}, "$.referrer", "is not of type 'string', 'null'"),
        ({"utm": "google"}, "$.utm", "is not of type 'object', 'null'"),
        ({"utm": {"source": "google", "gclid": "x"}}, "$.utm", "'gclid' was unexpected"),
        ({"utm": {"campaign": "c" * 257}}, "$.utm.campaign", "at most 256 characters"),
        ({"product": {"name": "no id"}}, "$.product", "'id' is a required property"),
        ({"product": {"id": "p", "sku": "x"}}, "$.product", "'sku' was unexpected"),
        ({"product": {"id": "p", "price": -1}}, "$.product.price", "-1 is less than the minimum of 0"),
        ({"product": {"id": "p", "price": "12,50"}}, "$.product.price", 'is not a decimal string like "1299.90"'),
        ({"product": {"id": "p", "price": "-5"}}, "$.product.price", "is not a decimal string"),
        ({"product": {"id": "p", "price": "1e3"}}, "$.product.price", "is not a decimal string"),
        ({"product": {"id": "p", "price": "1.1234567"}}, "$.product.price", "is not a decimal string"),
        ({"product": {"id": "p", "price": True}}, "$.product.price", "is not of type 'number', 'string', 'null'"),
        ({"product": {"id": "p", "price": 1_000_000_000}}, "$.product.price", "1000000000"),
        ({"product": {"id": "p", "discount_price": Decimal("-0.01")}}, "$.product.discount_price", "less than the minimum"),
        ({"product": {"id": "p", "category": "c" * 129}}, "$.product.category", "at most 128 characters"),
        ({"product": {"id": 42}}, "$.product.id", "42 is not of type 'string'"),
        ({"quantity": 0}, "$.quantity", "0 is less than the minimum of 1"),
        ({"quantity": Decimal("1.5")}, "$.quantity", "is not of type 'integer', 'null'"),
        ({"quantity": "2"}, "$.quantity", "is not of type 'integer', 'null'"),
        ({"value": Decimal("-0.01")}, "$.value", "-0.01 is less than the minimum of 0"),
        ({"currency": "eur"}, "$.currency", "is not a 3-letter ISO 4217 code"),
        ({"currency": "EURO"}, "$.currency", "is not a 3-letter ISO 4217 code"),
        ({"properties": {f"k{i}": i for i in range(33)}}, "$.properties", "has 33 keys, at most 32 are allowed"),
        ({"properties": {"k" * 65: 1}}, "$.properties", "is too long (at most 64 characters)"),
        ({"properties": {"note": "n" * 257}}, "$.properties.note", "at most 256 characters"),
        ({"properties": {"ids": list(range(17))}}, "$.properties.ids", "has 17 items, at most 16 allowed"),
        ({"properties": {"filter": {"brand": {"name": "dell"}}}}, "$.properties.filter.brand", "is not of type"),
        ({"properties": ["a"]}, "$.properties", "an array is not of type 'object', 'null'"),
        ({"eventName": "page_view"}, "$", "'eventName' was unexpected"),
        ({"received_at": "2025-03-01T10:15:30Z"}, "$", "'received_at' was unexpected"),
        ({"page_url": "https://shop.example/\ud800"}, "$.page_url", "unpaired surrogate"),
    ],
)
def test_bad_values_fail_with_path_and_reason(make_event, fields, path, fragment):
    reasons = validate_event(make_event(**fields))
    assert any(reason.startswith(f"{path}: ") and fragment in reason for reason in reasons), reasons


def test_reason_is_path_colon_message(make_event):
    event = make_event(product={"id": "p", "price": -1})
    assert validate_event(event) == ["$.product.price: -1 is less than the minimum of 0"]


def test_long_values_are_shortened_in_reasons(make_event):
    [reason] = validate_event(make_event(page_type="x" * 5000))
    assert len(reason) < 150
    assert reason.endswith("is too long (at most 64 characters)")


def test_reasons_are_capped(make_event):
    event = make_event(event_id=1, event_name=2, client_ts=3, client_id=4, session_id=5, user_id=6, currency=7)
    reasons = validate_event(event)
    assert len(reasons) == contract.MAX_REASONS
    assert reasons[0] == "$.event_id: 1 is not of type 'string'"


def test_non_object_events_are_invalid():
    assert validate_event(["page_view"]) == ["$: an array is not of type 'object'"]
    assert normalize_event("page_view", RECEIVED_AT) == (None, ["$: an event must be a JSON object, not a string"])
    assert normalize_event(None, RECEIVED_AT) == (None, ["$: an event must be a JSON object, not null"])


# Exact JSON -----------------------------------------------------------------------------------------------------


def test_loads_keeps_money_exact_and_dumps_writes_it_back_unchanged():
    text = '{"price":1299.90,"discount_price":"1199.00","value":0.1,"big":12345678901234567890,"tiny":1e-7}'
    parsed = loads(text)
    assert parsed["price"] == Decimal("1299.90") and str(parsed["price"]) == "1299.90"
    assert parsed["value"] == Decimal("0.1")
    assert dumps(parsed) == '{"price":1299.90,"discount_price":"1199.00","value":0.1,"big":12345678901234567890,"tiny":1E-7}'


def test_dumps_is_compact_utf8_and_sorts_keys_on_request():
    assert dumps({"b": [True, None], "a": "Bàn phím\n"}, sort_keys=True) == '{"a":"Bàn phím\\n","b":[true,null]}'


@pytest.mark.parametrize("text", ["NaN", '{"price": Infinity}', '{"price": -Infinity}'])
def test_loads_refuses_non_finite_numbers(text):
    with pytest.raises(ValueError):
        loads(text)


def test_dumps_refuses_what_json_cannot_hold():
    with pytest.raises(ValueError):
        dumps(Decimal("NaN"))
    with pytest.raises(TypeError):
        dumps({1: "x"})


LOADED_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.text(max_size=40),
    st.decimals(allow_nan=False, allow_infinity=False), st.sampled_from([Decimal("1E+3"), Decimal("-0"), Decimal("0.10")]),
)
LOADED_JSON = st.recursive(
    LOADED_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=16,
)


@settings(max_examples=300, deadline=None)
@given(LOADED_JSON)
def test_dumps_loaded_writes_what_dumps_writes(value):
    assert contract.dumps_loaded(value) == dumps(value).encode("utf-8")
    assert loads(contract.dumps_loaded(value)) == value


def test_timestamps_parse_and_format_in_utc():
    parsed = contract.parse_timestamp("2025-03-01t17:15:30.5+07:00")
    assert parsed == datetime(2025, 3, 1, 10, 15, 30, 500000, tzinfo=timezone.utc)
    assert contract.isoformat_utc(parsed) == "2025-03-01T10:15:30.500Z"
    with pytest.raises(ValueError):
        contract.parse_timestamp("2025-03-01T10:15:30")
    with pytest.raises(ValueError):
        contract.isoformat_utc(datetime(2025, 3, 1))


# Legacy tracker -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("legacy_name", "event_name", "page_type"),
    [
        ("home_view", "page_view", "home"),
        ("category_view", "product_list_view", "category"),
        ("add_to_cart_click", "add_to_cart", None),
        ("remove_from_cart_click", "remove_from_cart", None),
        ("wishlist_toggle", "add_to_wishlist", None),
        ("share_click", "share", None),
        ("login_success", "login", None),
        ("checkout_start", "begin_checkout", None),
        ("checkout_complete", "purchase", None),
        ("page_view", "page_view", None),
        ("product_view", "product_view", None),
        ("click", "click", None),
        ("logout", "logout", None),
        ("login_open", "click", None),
    ],
)
def test_legacy_names_map_to_canonical_names(make_legacy_event, legacy_name, event_name, page_type):
    normalized, errors = normalize_event(make_legacy_event(eventName=legacy_name), RECEIVED_AT)
    assert errors == []
    assert normalized.source == SOURCE_LEGACY
    assert normalized.event["event_name"] == event_name
    assert normalized.event.get("page_type") == page_type
    assert normalized.legacy["event_name"] == legacy_name


def test_original_names_are_the_inverse_of_the_legacy_mapping():
    """Each v1 name that the original tracker calls otherwise has its original name, the one that maps to it."""
    renamed = {event_name for legacy_name, (event_name, _) in LEGACY_EVENT_NAMES.items()
               if event_name not in LEGACY_EVENT_NAMES}
    assert set(ORIGINAL_EVENT_NAMES) == renamed
    assert {event_name: LEGACY_EVENT_NAMES[original][0] for event_name, original in ORIGINAL_EVENT_NAMES.items()} == {
        event_name: event_name for event_name in ORIGINAL_EVENT_NAMES}
    issue_14 = {"product_list_view": "category_view", "add_to_cart": "add_to_cart_click",
                "begin_checkout": "checkout_start", "purchase": "checkout_complete", "login": "login_success",
                "add_to_wishlist": "wishlist_toggle", "share": "share_click"}
    assert ORIGINAL_EVENT_NAMES.items() >= issue_14.items()
    assert {"page_view", "product_view", "search", "click"}.isdisjoint(ORIGINAL_EVENT_NAMES)


def test_full_legacy_event_maps_every_field_and_keeps_the_rest():
    raw = sample_body("apigw_http_post_legacy_event.json")
    normalized, errors = normalize_event(raw, RECEIVED_AT)
    assert errors == []
    event, legacy = normalized.event, normalized.legacy
    assert event == {
        "event_id": str(uuid.uuid5(contract.LEGACY_NAMESPACE, "event-id:1740823200000-9f3a2c")),
        "event_name": "add_to_cart",
        "client_ts": "2025-03-01T10:00:00.000Z",
        "client_id": "c-5d1b0a4e",
        "session_id": "s-20250301-1",
        "user_id": None,
        "user_login_state": "anonymous",
        "page_url": "https://shop.example/products/zenbook-14",
        "referrer": "",
        "product": {
            "id": "42",
            "name": "Zenbook 14",
            "category": "laptop",
            "brand": "ASUS",
            "price": Decimal("1299.9"),
            "discount_price": 1199,
            "url_path": "/products/zenbook-14",
        },
    }
    assert legacy == {
        "event_name": "add_to_cart_click",
        "event_id": "1740823200000-9f3a2c",
        "event_id_source": "tracker_id_hash",
        "client_ts_source": "event_id_epoch_ms",
        "is_first_visit": False,
        "user_login_state": "anonymous",
        "identity_source": "client_id",
        "element": {"tag": "BUTTON", "id": "add-to-cart", "role": "button", "text": "Add to cart", "dataset": {"productId": "42"}},
    }
    assert validate_event(event) == []


def test_legacy_uuid_event_id_is_kept(make_legacy_event):
    tracker_id = "3f2b8c1d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
    normalized = map_legacy_event(make_legacy_event(eventId=tracker_id), RECEIVED_AT)
    assert normalized.event["event_id"] == tracker_id
    assert normalized.legacy["event_id_source"] == "tracker"
    assert normalized.event["client_ts"] == "2025-03-01T10:15:30.123Z"
    assert normalized.legacy["client_ts_source"] == "received_at"


def test_legacy_non_uuid_event_id_maps_to_a_stable_uuid5(make_legacy_event):
    first = legacy_event_id(make_legacy_event(eventId="1740823200000-9f3a2c"))
    retried = legacy_event_id(make_legacy_event(eventId="1740823200000-9f3a2c", pageUrl="https://shop.example/"))
    other = legacy_event_id(make_legacy_event(eventId="1740823200000-9f3a2d"))
    assert first == retried
    assert first[1] == "tracker_id_hash"
    assert uuid.UUID(first[0]).version == 5
    assert other[0] != first[0]


def test_legacy_event_without_id_gets_a_deterministic_content_id(make_legacy_event):
    event = make_legacy_event(eventName="product_view", product={"id": 7, "price": Decimal("449.00")})
    same_object_reordered = dict(reversed(list(make_legacy_event(eventName="product_view", product={"price": Decimal("449.00"), "id": 7}).items())))
    other_product = make_legacy_event(eventName="product_view", product={"id": 8, "price": Decimal("449.00")})
    other_session = make_legacy_event(eventName="product_view", sessionId="s-2", product={"id": 7, "price": Decimal("449.00")})
    event_id, source = legacy_event_id(event)
    assert source == "content_hash"
    assert uuid.UUID(event_id).version == 5
    assert legacy_event_id(same_object_reordered)[0] == event_id
    assert legacy_event_id(loads(dumps(event)))[0] == event_id
    assert len({event_id, legacy_event_id(other_product)[0], legacy_event_id(other_session)[0]}) == 3


def test_legacy_id_does_not_depend_on_receive_time(make_legacy_event):
    event = make_legacy_event()
    later = RECEIVED_AT + timedelta(hours=5)
    assert map_legacy_event(event, RECEIVED_AT).event["event_id"] == map_legacy_event(event, later).event["event_id"]


@pytest.mark.parametrize(
    ("tracker_id", "client_ts", "source"),
    [
        ("1740823200000-9f3a2c", "2025-03-01T10:00:00.000Z", "event_id_epoch_ms"),
        ("1740823200123-abc", "2025-03-01T10:00:00.123Z", "event_id_epoch_ms"),
        ("9999999999999-abc", "2025-03-01T10:15:30.123Z", "received_at"),
        ("0000000000001-abc", "2025-03-01T10:15:30.123Z", "received_at"),
        ("evt-17408232000", "2025-03-01T10:15:30.123Z", "received_at"),
        (None, "2025-03-01T10:15:30.123Z", "received_at"),
    ],
)
def test_legacy_client_ts_comes_from_the_epoch_ms_event_id_or_the_receive_time(make_legacy_event, tracker_id, client_ts, source):
    normalized = map_legacy_event(make_legacy_event(eventId=tracker_id), RECEIVED_AT)
    assert (normalized.event["client_ts"], normalized.legacy["client_ts_source"]) == (client_ts, source)


def test_legacy_identity_is_the_client_until_the_ingest_verifies_it_and_unknown_login_state(make_legacy_event):
    logged_in = map_legacy_event(make_legacy_event(userId="u-1", userLoginState="logged_in"), RECEIVED_AT)
    unknown = map_legacy_event(make_legacy_event(userId="", userLoginState="logged_out"), RECEIVED_AT)
    assert (logged_in.event["user_id"], logged_in.event["user_login_state"]) == ("u-1", "logged_in")
    assert logged_in.legacy["identity_source"] == "client_id"  # the body's userId is a claim: ingest.apply_identity
    assert (unknown.event["user_id"], unknown.event["user_login_state"]) == (None, None)
    assert (unknown.legacy["identity_source"], unknown.legacy["user_login_state"]) == ("client_id", "logged_out")


def test_legacy_event_is_recognised_by_event_name():
    assert is_legacy_event({"eventName": "click"})
    assert not is_legacy_event({"event_name": "click"})
    assert not is_legacy_event({"eventName": "click", "event_name": "click"})
    assert not is_legacy_event(["eventName"])


def test_canonical_event_is_stored_unchanged(make_event):
    event = make_event(product={"id": "p", "price": Decimal("1299.90")})
    normalized, errors = normalize_event(event, RECEIVED_AT)
    assert errors == []
    assert (normalized.source, normalized.event, normalized.legacy) == (SOURCE_CANONICAL, event, None)


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"clientId": None}, "$.clientId: null is not of type 'string'"),
        ({"eventName": "purchase"}, '$.eventName: "purchase" is not one of'),
        ({"timestamp": 1740823200000}, "$: Additional properties are not allowed ('timestamp' was unexpected)"),
        ({"product": {"id": 1.5}}, "$.product.id"),
        ({"product": {"id": 1, "discount_price": 5}}, "'discount_price' was unexpected"),
        ({"element": {"tag": "A", "dataset": {"x": 1}}}, "$.element.dataset.x: 1 is not of type 'string'"),
        ({"element": {"text": "t" * 2049}}, "$.element.text"),
        ({"isFirstVisit": "yes"}, "$.isFirstVisit"),
        ({"userId": "a b"}, "$.userId"),
        ({"eventId": ""}, "$.eventId"),
    ],
)
def test_invalid_legacy_events_fail_with_legacy_paths(make_legacy_event, fields, fragment):
    normalized, errors = normalize_event(make_legacy_event(**fields), RECEIVED_AT)
    assert normalized is None
    assert any(fragment in reason for reason in errors), errors


def test_missing_legacy_session_id_is_reported(make_legacy_event):
    event = make_legacy_event()
    del event["sessionId"]
    assert validate_legacy_event(event) == ["$: 'sessionId' is a required property"]


# OpenAPI --------------------------------------------------------------------------------------------------------


def test_bundled_openapi_inlines_the_event_schema():
    document = contract.openapi_document()
    refs = set()

    def collect(node):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.add(node["$ref"])
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(document)
    assert refs and all(ref.startswith("#/components/") for ref in refs)
    schemas = document["components"]["schemas"]
    assert schemas["ClickstreamEventV1"]["properties"]["event_name"]["enum"] == list(EVENT_NAMES)
    assert "ClickstreamEventV1.legacy_event" in schemas
    unbundled = json.dumps(contract.openapi_document(bundled=False))
    assert "clickstream-event-v1.json" in unbundled


@pytest.mark.parametrize("number", ["0.30000000000000004", "1.2345678901234567e-5", "5e-324", "-999999999999999",
                                    "1.500000000000000000000", "123456789012345.6", "0"])
def test_every_number_a_float64_writes_is_accepted_in_properties(make_event, number):
    assert validate_event(make_event(properties={"n": loads(number)})) == []


@pytest.mark.parametrize("amount", ["1299.9", "0.3", "12.500", "1E+2", "999999999.99", "0"])
def test_money_numbers_with_whole_cents_are_accepted(make_event, amount):
    assert validate_event(make_event(value=loads(amount), product={"id": "p", "price": loads(amount)})) == []


def test_a_huge_event_is_explained_quickly_and_its_sizes_are_the_real_ones(make_event):
    """jsonschema-rs would list every error of a megabyte of arrays (half a minute); the reasons come from a
    cut-down copy with the same errors, and sizes are those of the event sent."""
    event = make_event(properties={"a": [[] for _ in range(300_000)], "ids": list(range(1000))}, extra=[[]] * 10_000)
    reasons = validate_event(event)
    assert "$: Additional properties are not allowed ('extra' was unexpected)" in reasons
    assert "$.properties.ids: has 1000 items, at most 16 allowed" in reasons
    assert any(reason.startswith("$.properties.a") for reason in reasons), reasons
    [first] = validate_event(event, limit=1)
    assert first in reasons
