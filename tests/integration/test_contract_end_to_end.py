"""What the ingest accepts, the warehouse stores: hostile events through the ingest's own code, then the ETL's
transform and load_chunk into the real warehouse. Every accepted event becomes a row; none becomes a reject.

The events are sent as the JSON text a client would send (lone surrogates as \\udXXX escapes, numbers written
exactly as drawn), base64-encoded so the bytes reach the handler unchanged."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from clickstream import aws, contract
from clickstream.analytics import warehouse
from clickstream.ingestion import raw
from clickstream.ingestion.ingest import IngestSettings, handle_http_event
from clickstream.local import stack
from clickstream.analytics.transform import COLUMNS, transform_body

pytestmark = pytest.mark.integration

RECEIVED_AT = datetime(2032, 6, 1, 12, tzinfo=timezone.utc)

def mostly(valid, hostile):
    """Nine draws in ten from `valid` (values at the edges of what the contract accepts), one from `hostile`: most
    events then have a hostile field or none, and many are accepted."""
    return st.integers(0, 9).flatmap(lambda draw: hostile if draw == 0 else valid)


HOSTILE_TEXT = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=20),  # surrogates and control characters included
    st.sampled_from(["", "\x00", "a\x00b", "\ud800", "x\udfff", "x" * 300, "\\u0000"]),
)
TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=40)  # all but NUL
SHORT_TEXT = st.one_of(TEXT, st.sampled_from(["😀", "Bàn phím", "\\u0000", "1e200000", "y" * 256]))
HOSTILE_NUMBERS = st.one_of(
    st.integers(min_value=-(10**400), max_value=10**400),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.sampled_from([Decimal("1E+200000"), Decimal("1E-400"), Decimal("1E+15"), Decimal("0.30000000000000004"),
                     2**63, -(2**63) - 1]),
)
NUMBERS = mostly(st.one_of(
    st.integers(min_value=-(10**15) + 1, max_value=10**15 - 1),
    st.decimals(min_value=Decimal("-999999999999999.99"), max_value=Decimal("999999999999999.99"),
                allow_nan=False, allow_infinity=False, places=2),
    st.decimals(min_value=-1, max_value=1, allow_nan=False, allow_infinity=False, places=17),
    st.floats(min_value=-1e15, max_value=1e15, exclude_min=True, exclude_max=True, allow_nan=False),
    st.sampled_from([Decimal("-0"), Decimal("5E-324"), Decimal("999999999999999"), Decimal("1E+14"), 0.1,
                     Decimal("0.30000000000000004"), 1.2345678901234567e-5]),
), HOSTILE_NUMBERS)
MONEY = mostly(st.one_of(
    st.decimals(min_value=0, max_value=Decimal("999999999.99"), places=2),
    st.integers(min_value=0, max_value=10**9 - 1).map(lambda cents: cents / 100),  # a float of whole cents
    st.from_regex(r"\A(0|[1-9][0-9]{0,8})(\.[0-9]{1,2}0{0,4})?\Z"),
    st.sampled_from([Decimal("1E+2"), Decimal("1.500"), 0, None]),
), st.one_of(HOSTILE_NUMBERS, st.from_regex(r"\A[0-9]{1,12}(\.[0-9]{0,8})?\Z"), HOSTILE_TEXT))
OFFSETS = st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59))
TIMESTAMPS = mostly(st.one_of(
    st.builds(lambda moment, offset: moment.replace(tzinfo=timezone(offset)).isoformat(),
              st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
              st.builds(timedelta, minutes=st.integers(-23 * 60 - 59, 23 * 60 + 59))),
    st.builds(lambda seconds: (RECEIVED_AT - timedelta(seconds=seconds)).isoformat(), st.integers(-10**6, 10**7)),
), st.one_of(HOSTILE_TEXT, st.builds(lambda moment, offset: moment.replace(tzinfo=timezone(offset)).isoformat(),
                                     st.datetimes(), OFFSETS)))
IDS = mostly(st.from_regex(r"\A[!-~]{1,128}\Z"), HOSTILE_TEXT)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, mostly(SHORT_TEXT, HOSTILE_TEXT))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(SHORT_TEXT, inner, max_size=4),
                    max_leaves=12)
KEYS = mostly(st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=64),
              HOSTILE_TEXT)
PROPERTIES = mostly(st.dictionaries(KEYS, st.one_of(SCALARS, st.lists(SCALARS, max_size=16),
                                                    st.dictionaries(KEYS, SCALARS, max_size=16)), max_size=8), JSON)


def optional(**fields):
    return st.fixed_dictionaries({}, optional=fields)


CANONICAL = st.builds(
    lambda required, extra: {**required, **extra},
    st.fixed_dictionaries({
        "event_id": mostly(st.uuids().map(str), HOSTILE_TEXT),
        "event_name": mostly(st.sampled_from(contract.EVENT_NAMES), HOSTILE_TEXT),
        "client_ts": TIMESTAMPS,
        "client_id": IDS,
        "session_id": IDS,
    }),
    optional(
        sent_ts=st.one_of(TIMESTAMPS, st.none()),
        user_id=st.one_of(IDS, st.none()),
        user_login_state=mostly(st.sampled_from([*contract.LOGIN_STATES, None]), HOSTILE_TEXT),
        page_url=mostly(st.one_of(TEXT, TEXT.map(lambda path: "https://shop.example/" + path)), HOSTILE_TEXT),
        page_type=mostly(st.text(max_size=64), HOSTILE_TEXT),
        referrer=mostly(st.one_of(TEXT, st.none()), HOSTILE_TEXT),
        utm=st.one_of(st.none(), optional(source=mostly(SHORT_TEXT, HOSTILE_TEXT), medium=SHORT_TEXT,
                                          term=mostly(SHORT_TEXT, HOSTILE_TEXT))),
        product=st.one_of(st.none(), st.fixed_dictionaries(
            {"id": IDS}, optional=dict(name=mostly(SHORT_TEXT, HOSTILE_TEXT), category=st.text(max_size=128),
                                       price=MONEY, discount_price=MONEY))),
        quantity=mostly(st.one_of(st.none(), st.integers(1, 10_000)), HOSTILE_NUMBERS),
        order_id=st.one_of(IDS, st.none()),
        value=MONEY,
        currency=mostly(st.sampled_from(["USD", "EUR", "VND", None]), HOSTILE_TEXT),
        properties=st.one_of(st.none(), PROPERTIES),
    ),
)
LEGACY = st.builds(
    lambda required, extra: {**required, **extra},
    st.fixed_dictionaries({"eventName": st.sampled_from(list(contract.LEGACY_EVENT_NAMES)), "clientId": IDS,
                           "sessionId": IDS}),
    optional(
        eventId=st.one_of(st.none(), st.uuids().map(str), IDS),
        userId=mostly(st.one_of(st.none(), st.just(""), st.from_regex(r"\A[!-~]{1,128}\Z")), HOSTILE_TEXT),
        userLoginState=mostly(st.one_of(st.none(), st.text(max_size=32)), HOSTILE_TEXT),
        pageUrl=mostly(TEXT, HOSTILE_TEXT),
        isFirstVisit=st.one_of(st.none(), st.booleans()),
        product=st.one_of(st.none(), st.fixed_dictionaries(
            {"id": mostly(st.one_of(IDS, st.integers(min_value=0, max_value=2**53 - 1)), HOSTILE_NUMBERS)},
            optional=dict(price=MONEY, discountPrice=MONEY, name=mostly(SHORT_TEXT, HOSTILE_TEXT)))),
        element=st.one_of(st.none(), optional(text=mostly(TEXT, HOSTILE_TEXT),
                                              dataset=st.dictionaries(KEYS, mostly(SHORT_TEXT, HOSTILE_TEXT),
                                                                      max_size=3))),
    ),
)
BATCHES = st.lists(st.one_of(CANONICAL, LEGACY), min_size=1, max_size=6)


LOADED: list[int] = []  # events loaded per example


@pytest.fixture(scope="module")
def pipeline(local_stack, dw, empty_warehouse):
    """(S3 client, raw bucket, etl_writer connection); the warehouse tables are emptied afterwards, after a check
    that the run loaded many events (hostile strategies that let nothing through would prove nothing)."""
    s3 = aws.client("s3", local_stack)
    bucket = stack.status(local_stack)["raw_bucket"]
    with psycopg.connect(dw[1], autocommit=True) as conn:
        yield s3, bucket, conn
    assert sum(LOADED) >= 100 and len(LOADED) >= 50, LOADED
    raw.delete_prefix(s3, bucket, "events/2032/")
    empty_warehouse(dw[0])


def post(s3, bucket: str, payload) -> dict:
    body = contract.dumps(payload).encode("utf-8", "backslashreplace")  # a lone surrogate as its \\udXXX escape
    event = {"version": "2.0", "routeKey": "POST /clickstream", "rawPath": "/clickstream",
             "headers": {"content-type": "application/json", "user-agent": "Mozilla/5.0 (X11; Linux x86_64)"},
             "requestContext": {"http": {"method": "POST", "path": "/clickstream", "sourceIp": "2002:c633:6417::1"},
                                "requestId": str(uuid.uuid4()), "stage": "$default"},
             "body": base64.b64encode(body).decode("ascii"), "isBase64Encoded": True}
    return handle_http_event(event, str(uuid.uuid4()), s3, IngestSettings(raw_bucket=bucket), now=lambda: RECEIVED_AT)


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
@given(BATCHES)
def test_every_event_the_ingest_accepts_becomes_a_warehouse_row(pipeline, events):
    s3, bucket, conn = pipeline
    response = post(s3, bucket, {"events": events})
    assert response["statusCode"] in (200, 400), response  # never a 5xx
    answer = contract.loads(response["body"])
    accepted = answer.get("accepted", 0)
    assert accepted + len(answer.get("rejected", [])) == len(events) or response["statusCode"] == 400
    if not accepted:
        return
    key = answer["object_key"]
    stored = s3.get_object(Bucket=bucket, Key=key)
    transformed = transform_body(stored["Body"].read(), key)
    assert transformed.rejects == [], [reject.reason for reject in transformed.rejects]
    assert len(transformed.rows) == accepted
    user_id = list(COLUMNS).index("user_id")
    assert [row[user_id] for row in transformed.rows] == [None] * accepted  # no token: a user_id is only a claim
    counts = warehouse.load_chunk(conn, [warehouse.ObjectLoad(key, stored["ETag"].strip('"'), transformed.rows, [])])
    assert counts[key].rejected == 0
    ids = sorted({row[0] for row in transformed.rows})
    assert conn.execute("SELECT count(*) FROM clickstream_events WHERE event_id = ANY(%s::uuid[])",
                        (ids,)).fetchone()[0] == len(ids)
    LOADED.append(len(ids))
