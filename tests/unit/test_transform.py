"""The pure transform: raw object bytes, exactly as the ingest writes them, to warehouse rows and rejects."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from clickstream import contract
from clickstream.shop import samples
from clickstream.contract import NormalizedEvent
from clickstream.ingestion.ingest import ServerContext, build_raw_object
from clickstream.analytics.transform import (
    COLUMNS,
    classify_user_agent,
    event_row,
    event_timestamp,
    page_path,
    transform_body,
    transform_object,
)

RECEIVED_AT = datetime(2026, 11, 24, 12, 0, 6, tzinfo=timezone.utc)
KEY = "events/2026/11/24/12/0b7c6f1e-3f0a-4c8e-9d1f-2a6b5c4d3e2f.json"
UA = {
    "googlebot": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "curl": "curl/8.4.0",
    "headless": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
    "iphone": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
              "Version/17.0 Mobile/15E148 Safari/604.1",
    "android_phone": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
                     "Chrome/120.0.0.0 Mobile Safari/537.36",
    "ipad": "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/17.0 Mobile/15E148 Safari/604.1",
    "android_tablet": "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) "
                      "Chrome/120.0.0.0 Safari/537.36",
    "windows": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
               "Chrome/120.0.0.0 Safari/537.36",
    "mac": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
           "Version/17.0 Safari/605.1.15",
}


def raw_body(*raw_events: dict, user_agent: str | None = UA["windows"], received_at: datetime = RECEIVED_AT) -> bytes:
    """The bytes the ingest stores for one request carrying `raw_events` (v1 or legacy)."""
    normalized = []
    for raw in raw_events:
        event, errors = contract.normalize_event(contract.loads(contract.dumps(raw)), received_at)
        assert not errors, errors
        normalized.append(event)
    server = ServerContext(request_id="req-1", user_agent=user_agent, source_ip_prefix="203.0.113.7")
    raw_object = build_raw_object(normalized, server, received_at, uuid.UUID(int=1))
    return contract.dumps(raw_object).encode("utf-8")


def unchecked_body(*events: dict) -> bytes:
    """The bytes of a raw object holding `events` as they are, unvalidated: what an older ingest, with a looser
    contract, may have stored."""
    server = ServerContext(request_id="req-1", user_agent=UA["windows"], source_ip_prefix="203.0.113.7")
    normalized = [NormalizedEvent(event=contract.loads(contract.dumps(e))) for e in events]
    return contract.dumps(build_raw_object(normalized, server, RECEIVED_AT, uuid.UUID(int=1))).encode("utf-8")


def rows_of(body: bytes) -> list[dict[str, Any]]:
    result = transform_body(body, KEY)
    assert result.rejects == []
    return [dict(zip(COLUMNS, row)) for row in result.rows]


def one_row(*raw_events: dict, **kwargs) -> dict[str, Any]:
    [row] = rows_of(raw_body(*raw_events, **kwargs))
    return row


def event(**overrides) -> dict:
    return samples.canonical_event("product_view", at=RECEIVED_AT - timedelta(seconds=5), **overrides)


# Canonical events -----------------------------------------------------------------------------------------------


def test_canonical_event_fills_every_column_from_the_event_and_the_server_block():
    sent = event(user_id="u-42", user_login_state="logged_in", quantity=2, cart_id="cart-1",
                 utm={"source": "news", "medium": "email", "campaign": "bf", "term": "laptop", "content": None},
                 properties={"color": "silver"}, page_url="https://shop.example.com/products/aero?ref=x#top")
    row = one_row(sent)
    assert row["event_id"] == sent["event_id"]
    assert row["event_name"] == "product_view"
    assert (row["user_id"], row["user_login_state"], row["identity_source"]) == ("u-42", "logged_in", "user_id")
    assert (row["client_id"], row["session_id"]) == (sent["client_id"], sent["session_id"])
    assert row["context_product_id"] == sent["product"]["id"]
    assert row["context_product_name"] == sent["product"]["name"]
    assert row["context_product_url_path"] == sent["product"]["url_path"]
    assert row["page_path"] == "/products/aero"
    assert (row["utm_source"], row["utm_medium"], row["utm_campaign"]) == ("news", "email", "bf")
    assert row["properties"] == {"color": "silver", "utm_term": "laptop"}
    assert (row["quantity"], row["cart_id"]) == (2, "cart-1")
    assert row["received_at"] == RECEIVED_AT
    assert row["client_ts"] == contract.parse_timestamp(sent["client_ts"])
    assert row["user_agent"] == UA["windows"]
    assert (row["schema_version"], row["source_key"]) == ("1", KEY)
    assert row["is_first_visit"] is None


def test_a_property_the_sender_set_wins_over_the_utm_term_and_the_stored_event_is_left_as_parsed():
    sent = event(utm={"source": "news", "medium": "email", "campaign": "bf", "term": "laptop", "content": "banner"},
                 properties={"utm_term": "set by the page"})
    stored = contract.loads(raw_body(sent))["events"][0]
    row = dict(zip(COLUMNS, event_row(stored, KEY)))
    assert row["properties"] == {"utm_term": "set by the page", "utm_content": "banner"}
    assert stored["event"]["properties"] == {"utm_term": "set by the page"}


def test_events_sent_together_share_the_send_time_and_keep_their_own_delays():
    sent_ts = contract.isoformat_utc(RECEIVED_AT - timedelta(seconds=1))
    first, second = (event(client_ts=contract.isoformat_utc(RECEIVED_AT - timedelta(seconds=delay)), sent_ts=sent_ts)
                     for delay in (3, 61))
    rows = rows_of(raw_body(first, second))
    assert [row["event_timestamp"] for row in rows] == [RECEIVED_AT - timedelta(seconds=2),
                                                         RECEIVED_AT - timedelta(seconds=60)]


def test_anonymous_event_is_identified_by_client_id_and_first_visit_comes_from_properties():
    row = one_row(event(user_id=None, properties={"is_first_visit": True}))
    assert row["identity_source"] == "client_id"
    assert row["is_first_visit"] is True


def test_row_has_one_value_per_column():
    result = transform_body(raw_body(event(), event()), KEY)
    assert [len(row) for row in result.rows] == [len(COLUMNS), len(COLUMNS)]


def test_duplicates_inside_one_object_are_kept_for_the_load_to_deduplicate():
    sent = event()
    assert len(rows_of(raw_body(sent, sent))) == 2


# Money ----------------------------------------------------------------------------------------------------------


def test_event_id_is_one_spelling_of_the_uuid():
    sent = event(event_id="0B7C6F1E-3F0A-4C8E-9D1F-2A6B5C4D3E2F")
    assert one_row(sent)["event_id"] == "0b7c6f1e-3f0a-4c8e-9d1f-2a6b5c4d3e2f"


def test_money_is_exact_decimal_from_numbers_and_strings():
    product = {**samples.PRODUCTS[0], "price": 1234.56, "discount_price": "0.10"}
    row = one_row(samples.canonical_event("purchase", product=product, value=0.1, currency="EUR"))
    assert row["context_product_price"] == Decimal("1234.56")
    assert row["context_product_discount_price"] == Decimal("0.10")
    assert row["value"] == Decimal("0.1")
    assert all(isinstance(row[name], Decimal) for name in ("context_product_price", "value"))
    assert row["currency"] == "EUR"


def test_money_with_trailing_zero_decimals_is_accepted_and_more_cents_are_rejected_not_rounded():
    assert one_row(event(value="1299.900"))["value"] == Decimal("1299.90")
    result = transform_body(unchecked_body(event(), event(value=Decimal("19.995"))), KEY)
    assert len(result.rows) == 1
    [reject] = result.rejects
    assert reject.event_index == 1
    assert reject.reason.startswith("$.event.value: 19.995 has more than 2 decimals: send money as a decimal string")


# event_timestamp ------------------------------------------------------------------------------------------------


def test_event_timestamp_corrects_a_skewed_browser_clock():
    # The browser's clock is 2 hours behind; the event waited 5 s before it was sent.
    client = RECEIVED_AT - timedelta(hours=2, seconds=6)
    row = one_row(event(client_ts=contract.isoformat_utc(client),
                        sent_ts=contract.isoformat_utc(client + timedelta(seconds=5))))
    assert row["event_timestamp"] == RECEIVED_AT - timedelta(seconds=5)


@pytest.mark.parametrize(
    ("sent_after_client", "expected"),
    [
        (None, RECEIVED_AT),  # no sent_ts
        (timedelta(seconds=-1), RECEIVED_AT),  # sent before it happened
        (timedelta(0), RECEIVED_AT),  # sent at once
        (timedelta(days=7), RECEIVED_AT - timedelta(days=7)),  # the longest plausible wait
        (timedelta(days=7, seconds=1), RECEIVED_AT),  # waited too long to be believed
    ],
)
def test_event_timestamp_falls_back_to_received_at_when_the_client_times_are_implausible(sent_after_client, expected):
    client = datetime(2020, 1, 1, tzinfo=timezone.utc)
    sent = None if sent_after_client is None else client + sent_after_client
    assert event_timestamp(client, sent, RECEIVED_AT) == expected


def test_event_timestamp_without_sent_ts_is_received_at_whatever_the_client_says():
    row = one_row(event(client_ts="2020-01-01T00:00:00Z", sent_ts=None))
    assert row["event_timestamp"] == RECEIVED_AT
    assert row["client_ts"] == datetime(2020, 1, 1, tzinfo=timezone.utc)


# Legacy tracker ---------------------------------------------------------------------------------------------------


def test_legacy_event_fills_the_workshop_columns():
    sent = samples.legacy_event("add_to_cart_click", event_id="1700000000000-ab12", userId="",
                                userLoginState="guest", isFirstVisit=True)
    row = one_row(sent)
    assert row["event_name"] == "add_to_cart"
    assert (row["identity_source"], row["is_first_visit"], row["user_login_state"]) == ("client_id", True, "guest")
    assert row["user_id"] is None
    assert row["context_product_id"] == "LAP-001"
    assert row["context_product_price"] == Decimal("1299.0")
    legacy = row["properties"]["legacy"]
    assert legacy["event_name"] == "add_to_cart_click"
    assert legacy["event_id"] == "1700000000000-ab12"
    assert legacy["event_id_source"] == "tracker_id_hash"
    assert legacy["client_ts_source"] == "event_id_epoch_ms"
    assert legacy["element"]["id"] == "add-to-cart"
    # the legacy tracker sends no sent_ts: the rule takes the receive time
    assert row["event_timestamp"] == RECEIVED_AT


def test_legacy_login_state_outside_v1_is_kept_as_sent_and_the_identity_source_is_the_stored_one():
    """The legacy mapping says client_id; only the ingest, with a verified sub, makes it user_id (test_ingest)."""
    row = one_row(samples.legacy_event("login_success", userId="shop-user-9", userLoginState="member",
                                       isFirstVisit=False))
    assert (row["event_name"], row["user_id"]) == ("login", "shop-user-9")
    assert (row["identity_source"], row["is_first_visit"], row["user_login_state"]) == ("client_id", False, "member")


# User agent -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("googlebot", (True, "bot")),
        ("curl", (True, "bot")),
        ("headless", (True, "bot")),
        ("iphone", (False, "mobile")),
        ("android_phone", (False, "mobile")),
        ("ipad", (False, "tablet")),
        ("android_tablet", (False, "tablet")),
        ("windows", (False, "desktop")),
        ("mac", (False, "desktop")),
    ],
)
def test_user_agent_classification(name, expected):
    assert classify_user_agent(UA[name]) == expected
    row = one_row(event(), user_agent=UA[name])
    assert (row["is_bot"], row["device_category"]) == expected


def test_missing_user_agent_is_not_a_bot_and_has_no_device_category():
    assert one_row(event(), user_agent=None)["device_category"] is None
    assert classify_user_agent(None) == (False, None)


def test_user_agent_results_are_cached():
    classify_user_agent(UA["mac"])
    hits = classify_user_agent.cache_info().hits
    classify_user_agent(UA["mac"])
    assert classify_user_agent.cache_info().hits == hits + 1


# Rejects and quarantine -------------------------------------------------------------------------------------------


def test_nul_character_rejects_only_that_event_with_a_storable_payload():
    result = transform_body(unchecked_body(event(), event(page_type="pro\x00duct")), KEY)
    assert len(result.rows) == 1
    [reject] = result.rejects
    assert (reject.source_key, reject.event_index) == (KEY, 1)
    assert reject.reason == "$.event.page_type: contains U+0000 (NUL), which the warehouse cannot store"
    assert reject.payload["event"]["page_type"] == "pro\ufffdduct"


def test_event_failing_the_contract_is_rejected_with_its_reason_and_the_others_load():
    raw_object = contract.loads(raw_body(event(), event(), event()))
    raw_object["events"][1]["event"]["event_name"] = "teleport"
    result = transform_object(raw_object, KEY)
    assert len(result.rows) == 2
    [reject] = result.rejects
    assert reject.event_index == 1
    assert reject.reason.startswith('$.event.event_name: "teleport" is not one of "page_view"')
    assert reject.payload["event"]["event_name"] == "teleport"


@pytest.mark.parametrize("field", ["client_ts", "sent_ts"])
def test_a_leap_second_passes_the_fast_check_but_is_rejected_with_the_contracts_reason(field):
    raw_object = contract.loads(raw_body(event(), event()))
    raw_object["events"][0]["event"][field] = "2026-11-24T23:59:60Z"
    assert contract.validate_raw_object(raw_object, timestamps_parsed_later=True) == []
    strict = contract.validate_raw_object(raw_object)
    result = transform_object(raw_object, KEY)
    assert len(result.rows) == 1
    [reject] = result.rejects
    assert (reject.event_index, reject.reason) == (0, strict[0].replace("$.events[0]", "$"))
    assert f"$.event.{field}" in reject.reason and "RFC 3339" in reject.reason


def test_invalid_json_is_quarantined_whole_with_its_text():
    [reject] = transform_body(b'{"schema_version": "1", "events": [', KEY).rejects
    assert reject.event_index is None
    assert reject.reason.startswith("not valid JSON: Expecting value")
    assert reject.payload == '{"schema_version": "1", "events": ['


def test_bytes_that_are_not_utf8_are_quarantined():
    result = transform_body(b'{"a": "\xff"}', KEY)
    assert result.rows == []
    [reject] = result.rejects
    assert reject.reason == "not valid UTF-8 (invalid start byte at byte 7)"
    assert reject.payload == '{"a": "\ufffd"}'


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda obj: obj.pop("object_id"), "not a valid raw object: $: 'object_id' is a required property"),
        (lambda obj: obj.update(event_count=3), "event_count is 3 but the object has 2 events"),
        (lambda obj: obj.update(events=[]), "not a valid raw object: $.events: has 0 items, at least 1 allowed"),
    ],
)
def test_an_object_that_is_not_a_raw_object_is_quarantined_whole(change, reason):
    raw_object = contract.loads(raw_body(event(), event()))
    change(raw_object)
    result = transform_body(contract.dumps(raw_object).encode(), KEY)
    assert result.rows == []
    [reject] = result.rejects
    assert (reject.event_index, reject.reason) == (None, reason)
    assert reject.payload == json.loads(contract.dumps(raw_object), parse_float=Decimal)


def test_json_that_is_not_an_object_is_quarantined():
    [reject] = transform_body(b"[1, 2]", KEY).rejects
    assert reject.reason == "not a valid raw object: $: an array is not of type 'object'"
    assert reject.payload == [1, 2]


# Helpers --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("https://shop.example.com/products/x?a=1#b", "/products/x"),
        ("/cart", "/cart"),
        ("https://shop.example.com", None),
        ("http://[broken/path", None),
        (None, None),
    ],
)
def test_page_path(url, path):
    assert page_path(url) == path


@pytest.mark.parametrize("escape, rows, rejected", [(rb"\ud800", 1, [1]), (rb"\ud83d\ude00", 2, []), (rb"\u00e9", 2, [])])
def test_an_escaped_unpaired_surrogate_rejects_only_its_event(escape, rows, rejected):
    body = raw_body(event(), event(page_type="SLOT")).replace(b'"SLOT"', b'"' + escape + b'"')
    assert contract.has_bad_text_escape(body) == (b"\\ud8" in body)
    result = transform_body(body, KEY)
    assert len(result.rows) == rows
    assert [r.event_index for r in result.rejects] == rejected
    assert all("unpaired surrogate" in r.reason for r in result.rejects)
