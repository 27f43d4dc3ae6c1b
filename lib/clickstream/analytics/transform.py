"""Pure transform of the raw S3 objects into warehouse rows (no I/O): `transform_body(body, key) -> Transformed`.

Rows are tuples in the order of `COLUMNS` (name -> PostgreSQL type), the columns the ETL copies into
`clickstream_events` (`loaded_at` is set by the database at commit). event_id is the UUID as lowercase text.

event_timestamp, when the interaction happened on the server's clock, never the load time:
    received_at - (sent_ts - client_ts)   when the event has a sent_ts and the delay the browser measured,
                                          sent_ts - client_ts, is plausible: 0 <= delay <= 7 days;
    received_at                           otherwise (no sent_ts, sent before it happened, or too long ago).
Both client times come from the same (possibly skewed) browser clock, so their difference is trustworthy
while each on its own is not; the corrected time is never after received_at nor more than 7 days before it.

is_bot and device_category (desktop | mobile | tablet | bot; null when the user agent says nothing) come from
maintained lists: crawlerdetect (bots, crawlers, HTTP libraries, headless browsers) and user-agents over
ua-parser's regexes (bots, tablets, phones, PCs). Results are cached per user agent string.

Legacy tracker events keep the original workshop's columns: identity_source, is_first_visit and a
user_login_state the v1 mapping could not place come from the stored `legacy` block; the legacy event
name, id and clicked element go to properties["legacy"]. utm term and content go to properties too.

Rejects, each with a reason, so nothing is dropped silently:
- an event that fails the v1 contract (`contract.validate_raw_object` and `contract.storage_errors`: e.g.
  U+0000, which PostgreSQL text and jsonb cannot hold, or an amount with more than 2 decimals: the money
  columns are numeric(12,2) and amounts are never rounded), or that cannot be made into a row;
- a whole object that is not UTF-8, not JSON or not a raw object: one reject with event_index None and the
  object's text (or its JSON) as payload.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache, lru_cache
from typing import Any
from urllib.parse import urlsplit

from clickstream import contract

COLUMNS: Mapping[str, str] = {
    "event_id": "uuid",
    "event_timestamp": "timestamptz",
    "event_name": "text",
    "user_id": "text",
    "user_login_state": "text",
    "identity_source": "text",
    "client_id": "text",
    "session_id": "text",
    "is_first_visit": "bool",
    "context_product_id": "text",
    "context_product_name": "text",
    "context_product_category": "text",
    "context_product_brand": "text",
    "context_product_price": "numeric",
    "context_product_discount_price": "numeric",
    "context_product_url_path": "text",
    "client_ts": "timestamptz",
    "received_at": "timestamptz",
    "page_url": "text",
    "page_path": "text",
    "page_type": "text",
    "referrer": "text",
    "utm_source": "text",
    "utm_medium": "text",
    "utm_campaign": "text",
    "user_agent": "text",
    "device_category": "text",
    "is_bot": "bool",
    "quantity": "int4",
    "cart_id": "text",
    "order_id": "text",
    "value": "numeric",
    "currency": "text",
    "properties": "jsonb",
    "schema_version": "text",
    "source_key": "text",
}
MAX_SEND_DELAY = timedelta(days=7)
LEGACY_PROPERTIES = ("event_name", "event_id", "event_id_source", "client_ts_source", "element")

Row = tuple[Any, ...]


@dataclass(frozen=True)
class Reject:
    """An event (event_index) or a whole object (event_index None) that is not loaded, and why."""

    source_key: str
    event_index: int | None
    reason: str
    payload: Any


@dataclass(frozen=True)
class Transformed:
    """The rows of an object's valid events and the rejects of the others."""

    rows: list[Row] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


class EventRejected(ValueError):
    """An event that passed the contract but cannot be stored as is; the message is the reason."""


def transform_body(body: bytes, source_key: str) -> Transformed:
    """Parse and transform the bytes of one raw object; an unreadable object is quarantined whole."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        return _quarantine(source_key, f"not valid UTF-8 ({error.reason} at byte {error.start})",
                           body.decode("utf-8", "replace"))
    try:
        raw_object = contract.loads(text)
    except RecursionError:
        return _quarantine(source_key, "not valid JSON: nested too deeply", text)
    except ValueError as error:
        return _quarantine(source_key, f"not valid JSON: {error}", text)
    try:
        return transform_object(raw_object, source_key, check_text=contract.has_bad_text_escape(body))
    except Exception as error:  # an object nobody foresaw must not stop the other objects of its chunk
        return _quarantine(source_key, f"cannot be transformed: {type(error).__name__}: {error}", text)


def transform_object(raw_object: Any, source_key: str, *, check_text: bool = True) -> Transformed:
    """Rows and rejects of one parsed raw object (as `contract.loads` returns it). `check_text=False` skips the
    search for U+0000 and unpaired surrogates (for an object parsed from JSON without such escapes)."""
    errors = contract.validate_raw_object(raw_object, check_text=check_text, timestamps_parsed_later=True)
    envelope_errors = [error for error in errors if not error.startswith("$.events[")]
    if envelope_errors:
        return _quarantine(source_key, "not a valid raw object: " + "; ".join(envelope_errors), raw_object)
    events = raw_object["events"]
    if raw_object["event_count"] != len(events):
        return _quarantine(
            source_key, f"event_count is {raw_object['event_count']} but the object has {len(events)} events", raw_object
        )
    result = Transformed()
    for index, stored in enumerate(events):
        reasons = _stored_event_errors(raw_object, stored) if errors else []
        if not reasons:
            try:
                result.rows.append(event_row(stored, source_key))
                continue
            except EventRejected as error:
                reasons = [str(error)]
            except ValueError as error:  # a timestamp the fast check let through (a leap second): the contract says why
                reasons = _stored_event_errors(raw_object, stored) or [str(error)]
            except Exception as error:  # one event that breaks the transform must not stop the others
                reasons = [f"cannot be transformed: {type(error).__name__}: {error}"]
        result.rejects.append(Reject(source_key, index, "; ".join(reasons), storable(stored)))
    return result


def _stored_event_errors(raw_object: Mapping[str, Any], stored: Any) -> list[str]:
    """The contract's reasons for one stored event, with paths relative to it ("$.event.client_ts: ...")."""
    single = {**raw_object, "event_count": 1, "events": [stored]}
    return ["$" + error.removeprefix("$.events[0]") for error in contract.validate_raw_object(single)]


def _quarantine(source_key: str, reason: str, payload: Any) -> Transformed:
    return Transformed(rejects=[Reject(source_key, None, reason, storable(payload))])


def event_row(stored: Mapping[str, Any], source_key: str) -> Row:
    """The row of one valid stored event; raises EventRejected when it cannot be stored exactly."""
    event, server, legacy = stored["event"], stored["server"], stored["legacy"]
    not_storable = contract.storage_errors(event)
    if not_storable:
        raise EventRejected("; ".join("$.event" + reason.removeprefix("$") for reason in not_storable))
    product = event.get("product") or {}
    utm = event.get("utm") or {}
    user_id = event.get("user_id")
    client_ts = contract.parse_timestamp(event["client_ts"])
    sent_ts = _request_time(event["sent_ts"]) if event.get("sent_ts") else None
    received_at = _request_time(server["received_at"])
    properties = event.get("properties") or {}
    term, content = utm.get("term"), utm.get("content")
    if term is not None or content is not None or legacy:
        properties = dict(properties)  # a copy: the stored event stays as it was parsed
        for part, value in (("term", term), ("content", content)):
            if value is not None:
                properties.setdefault(f"utm_{part}", value)
    if legacy:
        properties["legacy"] = {name: legacy[name] for name in LEGACY_PROPERTIES}
        is_first_visit = legacy["is_first_visit"]
        identity_source = legacy["identity_source"]
        user_login_state = event.get("user_login_state") or legacy["user_login_state"] or None
    else:
        first_visit = properties.get("is_first_visit")
        is_first_visit = first_visit if isinstance(first_visit, bool) else None
        identity_source = "user_id" if user_id else "client_id"
        user_login_state = event.get("user_login_state")
    user_agent = server.get("user_agent")
    is_bot, device_category = classify_user_agent(user_agent)
    quantity = event.get("quantity")
    page_url = event.get("page_url")
    # In the order of COLUMNS (a test keeps them in step).
    return (
        event["event_id"].lower(),  # the contract's UUID pattern: one spelling per id
        event_timestamp(client_ts, sent_ts, received_at),
        event["event_name"],
        user_id,
        user_login_state,
        identity_source,
        event["client_id"],
        event["session_id"],
        is_first_visit,
        product.get("id"),
        product.get("name"),
        product.get("category"),
        product.get("brand"),
        money(product.get("price")),
        money(product.get("discount_price")),
        product.get("url_path"),
        client_ts,
        received_at,
        page_url,
        page_path(page_url),
        event.get("page_type"),
        event.get("referrer"),
        utm.get("source"),
        utm.get("medium"),
        utm.get("campaign"),
        user_agent,
        device_category,
        is_bot,
        None if quantity is None else int(quantity),
        event.get("cart_id"),
        event.get("order_id"),
        money(event.get("value")),
        event.get("currency"),
        properties,
        stored["schema_version"],
        source_key,
    )


def event_timestamp(client_ts: datetime, sent_ts: datetime | None, received_at: datetime) -> datetime:
    """received_at - (sent_ts - client_ts) when that delay is plausible (0 to 7 days), else received_at."""
    if sent_ts is None:
        return received_at
    delay = sent_ts - client_ts
    return received_at - delay if timedelta(0) <= delay <= MAX_SEND_DELAY else received_at


def money(value: Any) -> Decimal | None:
    """An amount as an exact Decimal (`contract.storage_errors` has refused more than 2 decimals)."""
    if value is None:
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value))


@lru_cache(maxsize=1024)
def _request_time(text: str) -> datetime:
    """A time the same for every event of a request (received_at, sent_ts), parsed once."""
    return contract.parse_timestamp(text)


@lru_cache(maxsize=16384)
def page_path(page_url: str | None) -> str | None:
    """The path of a page URL ("/products/x" for "https://shop/products/x?a=1"); None if there is none."""
    if not page_url:
        return None
    try:
        return urlsplit(page_url).path or None
    except ValueError:
        return None


@cache
def user_agent_parsers() -> tuple[Any, Any]:
    """user-agents' parse and a CrawlerDetect, imported on first use (or by the ETL before it forks its workers):
    their patterns cost a quarter of a CPU-second to import, which a process that loads no event does not pay."""
    import user_agents
    from crawlerdetect import CrawlerDetect

    return user_agents.parse, CrawlerDetect()


@lru_cache(maxsize=16384)
def classify_user_agent(user_agent: str | None) -> tuple[bool, str | None]:
    """(is_bot, device_category) of a user agent: bot, tablet, mobile, desktop, or None when unknown."""
    if not user_agent:
        return False, None
    parse, crawler_detect = user_agent_parsers()
    parsed = parse(user_agent)
    if parsed.is_bot or crawler_detect.isCrawler(user_agent):
        return True, "bot"
    if parsed.is_tablet:
        return False, "tablet"
    if parsed.is_mobile:
        return False, "mobile"
    if parsed.is_pc:
        return False, "desktop"
    return False, None


def storable(value: Any) -> Any:
    """`value` made storable in jsonb (a reject's payload): in strings and keys U+0000 and unpaired surrogates
    become U+FFFD; a number beyond what jsonb's numeric holds becomes its text."""
    if isinstance(value, str):
        return _storable_text(value)
    if isinstance(value, Mapping):
        return {_storable_text(str(key)): storable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable(item) for item in value]
    if isinstance(value, Decimal) and not _fits_numeric(value):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _fits_numeric(number: Decimal) -> bool:
    """PostgreSQL's numeric: up to 131072 digits before the decimal point and 16383 after."""
    return number.is_finite() and number.adjusted() < 131072 and number.as_tuple().exponent >= -16383


def _storable_text(text: str) -> str:
    return text.replace("\x00", "\ufffd").encode("utf-8", "surrogatepass").decode("utf-8", "replace")
