"""The event contract shared by the ingest Lambda, the ETL and the tests.

- `clickstream-event-v1.json` (JSON Schema 2020-12) defines a version 1 event, the legacy Next.js
  tracker event and the raw S3 object; `validate_*` return readable reasons ("$.path: message").
- `normalize_event` turns one posted object (v1 or legacy) into a v1 event; legacy events are mapped
  with deterministic ids (`map_legacy_event`).
- `loads` / `dumps` read and write JSON with floats as `Decimal`, so money is kept exactly as sent.
"""

from __future__ import annotations

import copy
import gc
import itertools
import json
import re
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
import msgspec
from rfc3339_validator import RFC3339_REGEX

SCHEMA_VERSION = "1"
SCHEMAS_DIR = Path(__file__).parent / "schemas"
EVENT_SCHEMA_PATH = SCHEMAS_DIR / "clickstream-event-v1.json"
OPENAPI_PATH = SCHEMAS_DIR / "ingest-openapi.yaml"

SOURCE_CANONICAL = "canonical"
SOURCE_LEGACY = "legacy_tracker"

EVENT_NAMES = (
    "page_view",
    "product_list_view",
    "product_view",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "add_to_wishlist",
    "begin_checkout",
    "purchase",
    "login",
    "logout",
    "sign_up",
    "click",
    "share",
)
LOGIN_STATES = ("logged_in", "anonymous", "guest")

# legacy eventName -> (v1 event_name, page_type set by the mapping)
LEGACY_EVENT_NAMES: Mapping[str, tuple[str, str | None]] = {
    "page_view": ("page_view", None),
    "home_view": ("page_view", "home"),
    "category_view": ("product_list_view", "category"),
    "product_view": ("product_view", None),
    "add_to_cart_click": ("add_to_cart", None),
    "remove_from_cart_click": ("remove_from_cart", None),
    "wishlist_toggle": ("add_to_wishlist", None),
    "share_click": ("share", None),
    "login_open": ("click", None),
    "login_success": ("login", None),
    "logout": ("logout", None),
    "checkout_start": ("begin_checkout", None),
    "checkout_complete": ("purchase", None),
    "click": ("click", None),
}
# v1 event_name -> the original tracker's eventName of the same meaning (the inverse of LEGACY_EVENT_NAMES where a v1
# name has another name there); the warehouse's `sbw` schema shows new-tracker events under it (migration 0006).
ORIGINAL_EVENT_NAMES: Mapping[str, str] = {
    "product_list_view": "category_view",
    "add_to_cart": "add_to_cart_click",
    "remove_from_cart": "remove_from_cart_click",
    "add_to_wishlist": "wishlist_toggle",
    "share": "share_click",
    "login": "login_success",
    "begin_checkout": "checkout_start",
    "purchase": "checkout_complete",
}
LEGACY_PRODUCT_FIELDS = {
    "id": "id",
    "name": "name",
    "category": "category",
    "brand": "brand",
    "price": "price",
    "discountPrice": "discount_price",
    "urlPath": "url_path",
}
# Fixed namespace of the uuid5 ids given to legacy events.
LEGACY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://clickstream.example/schemas/legacy-tracker")

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
LEGACY_EPOCH_MS_ID_RE = re.compile(r"^(\d{13})-")
EARLIEST_LEGACY_TS = datetime(2015, 1, 1, tzinfo=timezone.utc)
MAX_REASONS = 5
MAX_SHOWN_CHARS = 60


# JSON that keeps numbers exact ---------------------------------------------------------------------------------


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = msgspec.json.Decoder(float_hook=Decimal)


def loads(text: str | bytes) -> Any:
    """Parse JSON with every non-integer number as `Decimal` (exact money); NaN and Infinity are refused.

    msgspec parses (what it accepts, it reads as the standard library does); what it refuses is parsed again
    by the standard library, which says why in its words or reads what msgspec refuses (a lone surrogate).
    The cycle collector is paused meanwhile: parsed JSON holds no cycles, and a megabyte of small arrays would
    otherwise start full collections over the whole process (0.3 s in a warm Lambda)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _DECODER.decode(text)
    except msgspec.DecodeError:
        return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    finally:
        if collecting:
            gc.enable()


_ENCODER = msgspec.json.Encoder(decimal_format="number")


def dumps_loaded(value: Any) -> bytes:
    """UTF-8 JSON of a value `loads` returned (JSON types, finite numbers), byte for byte what `dumps` writes,
    ~10x faster. Unlike `dumps` it does not refuse what JSON cannot hold (NaN, non-string keys, dates):
    give anything else to `dumps`."""
    return _ENCODER.encode(value)


def dumps(value: Any, *, sort_keys: bool = False) -> str:
    """Compact JSON (UTF-8 text) that writes `Decimal` numbers back exactly as parsed."""
    parts: list[str] = []
    _write_json(value, parts.append, sort_keys)
    return "".join(parts)


def _write_json(value: Any, out: Callable[[str], Any], sort_keys: bool) -> None:
    if isinstance(value, str):
        out(json.encoder.encode_basestring(value))
    elif value is None or isinstance(value, bool):
        out({None: "null", True: "true", False: "false"}[value])
    elif isinstance(value, int):
        out(int.__repr__(value))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not valid JSON")
        out(str(value))
    elif isinstance(value, float):
        out(json.dumps(value, allow_nan=False))
    elif isinstance(value, Mapping):
        out("{")
        items = sorted(value.items()) if sort_keys else value.items()
        for position, (key, item) in enumerate(items):
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings, not {type(key).__name__}")
            out(("," if position else "") + json.encoder.encode_basestring(key) + ":")
            _write_json(item, out, sort_keys)
        out("}")
    elif isinstance(value, (list, tuple)):
        out("[")
        for position, item in enumerate(value):
            if position:
                out(",")
            _write_json(item, out, sort_keys)
        out("]")
    else:
        raise TypeError(f"{type(value).__name__} is not JSON serializable")


# Timestamps ----------------------------------------------------------------------------------------------------


def parse_timestamp(text: str) -> datetime:
    """An RFC 3339 date-time with an offset as an aware datetime (the ETL parses client_ts with this)."""
    parsed = datetime.fromisoformat(text.upper())
    if parsed.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return parsed


def isoformat_utc(moment: datetime) -> str:
    """`2025-03-01T10:15:30.123Z`: UTC, millisecond precision."""
    if moment.tzinfo is None:
        raise ValueError("a timezone-aware datetime is required")
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# Schema and validation -----------------------------------------------------------------------------------------
#
# The contract is what the warehouse can store: the JSON Schema states most of it, and two named functions beside
# it state what a schema cannot: `text_errors` (no U+0000, no unpaired surrogate, in any string or key at any
# depth) and `storage_errors` (money with at most 2 decimals by value, numbers in `properties` with at most
# MAX_PROPERTY_DIGITS significant digits and MAX_PROPERTY_DECIMALS decimal places). Timestamps must also convert
# to UTC (`_is_timestamp`).
# Reasons come from jsonschema-rs's own errors, worded by `_describe`; at most `limit` per instance.

MAX_PROPERTY_DIGITS = 17  # what a float64 carries: every number a JavaScript tracker can send
MAX_PROPERTY_DECIMALS = 340  # 5e-324, the smallest float64, written with 17 digits
MONEY_FIELDS = (("value",), ("product", "price"), ("product", "discount_price"))
CENT = Decimal("0.01")


def _is_timestamp(value: object) -> bool:
    """RFC 3339 (offset required), parseable by `parse_timestamp` and within the range of a UTC datetime, so the
    ETL can read and the warehouse can store every accepted value.

    The RFC 3339 shape comes from rfc3339-validator's pattern; the calendar check (no 31 November, no year 0)
    is `datetime.fromisoformat`'s, which refuses the same dates."""
    if not isinstance(value, str):
        return True
    text = value.upper()
    if RFC3339_REGEX.match(text) is None:
        return False
    try:
        parse_timestamp(text).astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return False
    return True


@cache
def event_schema() -> dict:
    """The version 1 JSON Schema (a shared object: do not modify it)."""
    return json.loads(EVENT_SCHEMA_PATH.read_text(encoding="utf-8"))


@cache
def _fast_validator(definition: str | None = None, builtin_date_time: bool = False) -> jsonschema_rs.Validator:
    """The schema (or one of its $defs) compiled by jsonschema-rs.

    With `builtin_date_time`, jsonschema-rs checks date-times itself (twice as fast: no Python call per
    timestamp); it accepts what the contract refuses: a leap second (:60), a time beyond UTC's range."""
    schema = event_schema()
    target = schema if definition is None else {"$ref": f"{schema['$id']}#/$defs/{definition}"}
    return jsonschema_rs.validator_for(
        target,
        registry=jsonschema_rs.Registry([(schema["$id"], schema)]),
        validate_formats=True,
        formats=None if builtin_date_time else {"date-time": _is_timestamp},
    )


def validate_event(event: Any, *, check_text: bool = True, limit: int = MAX_REASONS) -> list[str]:
    """Reasons (at most `limit`) why `event` is not a valid version 1 event; empty when it is.

    `check_text=False` skips the search for U+0000 and unpaired surrogates: only for an event parsed from JSON
    that has no `\\u0000` or surrogate escape (see `has_bad_text_escape`)."""
    return _reasons(None, event, check_text=check_text, limit=limit)


def validate_legacy_event(event: Any, *, check_text: bool = True, limit: int = MAX_REASONS) -> list[str]:
    """Reasons why `event` is not a valid legacy tracker event; empty when it is."""
    return _reasons("legacy_event", event, check_text=check_text, limit=limit)


def validate_raw_object(raw_object: Any, *, check_text: bool = True, timestamps_parsed_later: bool = False) -> list[str]:
    """Reasons why a stored S3 object does not match the raw object format; empty when it does.

    A caller that has the object's JSON text can pass `check_text=has_bad_text_escape(text)`. A caller that
    parses every timestamp with `parse_timestamp` afterwards (the ETL) can pass `timestamps_parsed_later=True`
    for a faster check that lets a leap second through: its parse refuses it, and it asks again without the
    flag for the reason. The money and number rules of `storage_errors` are the ETL's to apply per event."""
    return _reasons("raw_object", raw_object, check_text=check_text, builtin_date_time=timestamps_parsed_later)


BAD_TEXT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


def has_bad_text_escape(json_bytes: bytes) -> bool:
    """JSON carries U+0000 or a surrogate only as an escape (\\u0000, \\ud800): without one, no string holds one."""
    return BAD_TEXT_ESCAPE.search(json_bytes) is not None


def _reasons(
    definition: str | None, instance: Any, *, check_text: bool = True, builtin_date_time: bool = False,
    limit: int = MAX_REASONS,
) -> list[str]:
    if check_text:
        bad_text = text_errors(instance, limit)
        if bad_text:  # before the schema: jsonschema-rs cannot take a string with a surrogate
            return bad_text
    validator = _fast_validator(definition, builtin_date_time)
    if validator.is_valid(instance):
        return storage_errors(instance)[:limit] if definition is None else []
    # jsonschema-rs finds every error (with every branch of every anyOf) before it reports one: on a 1 MB array
    # that takes half a minute. It explains a cut-down copy with the same errors instead.
    explained = _explainable(instance)
    if limit == 1:
        try:
            validator.validate(explained)
        except jsonschema_rs.ValidationError as error:
            return ["%s: %s" % _describe(error, instance)]
    reasons: list[str] = []
    failed_paths: set[str] = set()
    for error in validator.iter_errors(explained):
        path, message = _describe(error, instance)
        if path in failed_paths:
            continue
        failed_paths.add(path)
        reasons.append(f"{path}: {message}")
        if len(reasons) >= limit:
            break
    return reasons or ["$: is not valid, and is too large for its reasons to be found"]


# One more than the schema's largest maxItems, more keys than any of its objects may hold, and one more than its
# largest maxLength: cut to these, every array, object and string still breaks each limit it broke. At most
# EXPLAINED_NODES values are kept (breadth first: the fields of an event before what they hold; an event of the
# trackers has ~40), since jsonschema-rs spends ~4 us per error, and a value that fails an anyOf makes dozens.
EXPLAINED_ITEMS = 17
EXPLAINED_KEYS = 65
EXPLAINED_CHARS = 2049
EXPLAINED_NODES = 96


def _explainable(value: Any) -> Any:
    """A cut-down copy of `value` that jsonschema-rs explains in bounded time, with the errors of `value` as far as
    it reaches: arrays cut to EXPLAINED_ITEMS, objects to EXPLAINED_KEYS keys, strings to EXPLAINED_CHARS; past
    EXPLAINED_NODES values, arrays and objects are kept empty. Only what is kept is visited."""
    root = _shell(value)
    queue = deque([(value, root)])
    budget = EXPLAINED_NODES
    while queue and budget > 0:
        source, copy_ = queue.popleft()
        pairs = (itertools.islice(source.items(), EXPLAINED_KEYS) if isinstance(source, Mapping)
                 else enumerate(source[:EXPLAINED_ITEMS]))
        for key, item in itertools.islice(pairs, budget):
            child = _shell(item)
            if isinstance(copy_, dict):
                copy_[key] = child
            else:
                copy_.append(child)
            budget -= 1
            if isinstance(child, (dict, list)):
                queue.append((item, child))
    return root


def _shell(value: Any) -> Any:
    if isinstance(value, str):
        return value[:EXPLAINED_CHARS]
    if isinstance(value, Mapping):
        return {}
    if isinstance(value, list):
        return []
    return value


def text_errors(instance: Any, limit: int = MAX_REASONS) -> list[str]:
    """Strings and keys, at any depth, that hold U+0000 or an unpaired surrogate (from JSON escapes such as
    \\u0000 or \\ud800): valid JSON, but not text PostgreSQL can store."""
    dumped = json.dumps(instance, ensure_ascii=False, default=str)  # writes U+0000 as \\u0000
    if "\\u0000" not in dumped and _is_storable_text(dumped):
        return []  # one C-speed pass; the walk below only runs to name the paths
    reasons: list[str] = []
    stack: list[tuple[str, Any]] = [("$", instance)]
    while stack and len(reasons) < limit:
        path, value = stack.pop()
        if isinstance(value, str):
            if not _is_storable_text(value):
                reasons.append(f"{path}: {_text_problem(value)}")
        elif isinstance(value, Mapping):
            for key, item in value.items():
                if isinstance(key, str) and not _is_storable_text(key):
                    reasons.append(f"{path}: has a key that {_text_problem(key)}")
                stack.append((f"{path}.{_storable_path(key)}", item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{index}]", item) for index, item in enumerate(value))
    return reasons[:limit]


def _is_storable_text(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text_problem(text: str) -> str:
    if "\x00" in text:
        return "contains U+0000 (NUL), which the warehouse cannot store"
    return "contains an unpaired surrogate, which is not valid Unicode"


def _storable_path(key: Any) -> str:
    return str(key).replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def storage_errors(event: Mapping[str, Any]) -> list[str]:
    """What keeps a schema-valid v1 event out of the warehouse, which the schema cannot state: money (value,
    product price and discount price) with more than 2 decimals by value (numeric(12,2) stores whole cents and
    amounts are never rounded; a float with binary residue such as 0.30000000000000004 is one), and numbers in
    `properties` with more than MAX_PROPERTY_DIGITS significant digits or MAX_PROPERTY_DECIMALS decimal places
    (the schema bounds their magnitude below 1e15)."""
    reasons = []
    for path in MONEY_FIELDS:
        amount = _get(event, path)
        if isinstance(amount, (Decimal, float)) and not _whole_cents(amount):
            reasons.append(
                f"$.{'.'.join(path)}: {_shown(amount)} has more than 2 decimals: send money as a decimal string "
                'such as "1299.90" (the warehouse stores whole cents and never rounds)')
    properties = event.get("properties")
    if isinstance(properties, dict):
        for parts, number in _decimals(properties):
            digits, exponent = _significant(number)
            if digits > MAX_PROPERTY_DIGITS:
                reasons.append(f"{_json_path(['properties', *parts])}: {_shown(number)} has more than "
                               f"{MAX_PROPERTY_DIGITS} significant digits")
            elif exponent < -MAX_PROPERTY_DECIMALS:
                reasons.append(f"{_json_path(['properties', *parts])}: {_shown(number)} has more than "
                               f"{MAX_PROPERTY_DECIMALS} decimal places")
    return reasons


def _significant(number: Decimal) -> tuple[int, int]:
    """(significant digits, exponent) of a finite number without its trailing zeros: 1.500 -> (2, -1)."""
    if not number:
        return 1, 0
    _, digits, exponent = number.as_tuple()
    zeros = 0
    while digits[-1 - zeros] == 0:
        zeros += 1
    return len(digits) - zeros, exponent + zeros


def _get(event: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = event
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _whole_cents(amount: Decimal | float) -> bool:
    exact = amount if isinstance(amount, Decimal) else Decimal(repr(amount))
    return exact.is_finite() and exact == exact.quantize(CENT)


def _decimals(value: dict | list, parts: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], Decimal]]:
    """(path parts, number) of the Decimals in parsed JSON (dicts and lists), depth first."""
    for key, item in value.items() if isinstance(value, dict) else enumerate(value):
        if isinstance(item, (dict, list)):
            yield from _decimals(item, (*parts, key))
        elif isinstance(item, Decimal):
            yield (*parts, key), item


def _json_path(parts: Sequence[str | int]) -> str:
    return "$" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts)


def _schema_node(schema_path: Sequence[str | int]) -> Any:
    """The schema object that holds the failed keyword (the error's schema path without its keyword)."""
    node: Any = event_schema()
    for part in schema_path[:-1]:
        node = node[part]
    return node


def _describe(error: jsonschema_rs.ValidationError, instance: Any) -> tuple[str, str]:
    """(JSON path, message) with short value excerpts and the schema's own wording where it has one; sizes are
    those of the value at that path in `instance` (the error may be of a cut-down copy)."""
    kind = error.kind
    if kind.name in ("anyOf", "oneOf"):
        return _describe_alternatives(error, instance)
    path = _json_path(error.instance_path)
    node = _schema_node(error.schema_path)
    rule = node.get(error.schema_path[-1]) if isinstance(node, Mapping) else None
    value = _shown(error.instance)
    hint = node.get("description") if isinstance(node, Mapping) else None
    match kind.name:
        case "type":
            types = rule if isinstance(rule, list) else [rule]
            return path, f"{value} is not of type {', '.join(map(repr, types))}"
        case "maxLength":
            return path, f"{value} is too long (at most {rule} characters)"
        case "minLength":
            return path, "must not be empty" if rule == 1 else f"{value} is too short (at least {rule} characters)"
        case "pattern" | "format":
            return path, f"{value} is not {hint}" if hint else f"{value} is not a valid {rule}"
        case "enum":
            return path, f"{value} is not one of {', '.join(json.dumps(choice) for choice in rule)}"
        case "minimum":
            return path, f"{value} is less than the minimum of {_shown(rule)}"
        case "maximum":
            return path, f"{value} is more than the maximum of {_shown(rule)}"
        case "exclusiveMaximum":
            return path, f"{value} is not less than {_shown(rule)}"
        case "exclusiveMinimum":
            return path, f"{value} is not more than {_shown(rule)}"
        case "const":
            return path, f"{value} is not {_shown(rule)}"
        case "maxProperties":
            return path, f"has {len(_at(instance, error.instance_path))} keys, at most {rule} are allowed"
        case "maxItems" | "minItems":
            bound = "at most" if kind.name == "maxItems" else "at least"
            return path, f"has {len(_at(instance, error.instance_path))} items, {bound} {rule} allowed"
        case "required":
            return path, f"{_quoted(kind.property)} is a required property"
        case "additionalProperties":
            unexpected = [_quoted(name) for name in kind.unexpected[:MAX_REASONS]]
            verb = "was" if len(kind.unexpected) == 1 else "were"
            more = f" and {len(kind.unexpected) - MAX_REASONS} more" if len(kind.unexpected) > MAX_REASONS else ""
            return path, f"Additional properties are not allowed ({', '.join(unexpected)}{more} {verb} unexpected)"
        case "propertyNames":
            return path, _describe(kind.error, instance)[1]
    message = error.message
    return path, message if len(message) <= 200 else message[:200] + "…"


def _describe_alternatives(error: jsonschema_rs.ValidationError, instance: Any) -> tuple[str, str]:
    """An anyOf/oneOf failure told by the branch that got furthest: its deepest, most specific errors."""
    leaves = list(_leaf_errors(error))
    if not leaves:
        return _json_path(error.instance_path), "is not valid under any of the allowed schemas"
    depth = max(len(leaf.instance_path) for leaf in leaves)
    deepest = [leaf for leaf in leaves if len(leaf.instance_path) == depth]
    specific = [leaf for leaf in deepest if leaf.kind.name != "type"]
    if specific:
        return _describe(specific[0], instance)
    types: list[str] = []
    for leaf in deepest:
        rule = _schema_node(leaf.schema_path).get("type")
        for name in rule if isinstance(rule, list) else [rule]:
            if name not in types:
                types.append(name)
    return _json_path(deepest[0].instance_path), f"{_shown(deepest[0].instance)} is not of type {', '.join(map(repr, types))}"


def _at(instance: Any, path: Sequence[str | int]) -> Any:
    for part in path:
        instance = instance[part]
    return instance


def _leaf_errors(error: jsonschema_rs.ValidationError) -> Iterator[jsonschema_rs.ValidationError]:
    for branch in error.kind.context or ():
        for child in branch:
            if child.kind.name in ("anyOf", "oneOf") and child.kind.context:
                yield from _leaf_errors(child)
            else:
                yield child


def _quoted(name: str) -> str:
    """A property name as the messages quote it: 'name', shortened."""
    return repr(name if len(name) <= MAX_SHOWN_CHARS else name[: MAX_SHOWN_CHARS - 1] + "…")


def _shown(value: Any) -> str:
    text = dumps(value) if isinstance(value, (str, int, Decimal, float, bool, type(None))) else json_type(value)
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 1] + "…"


# Normalization and the legacy tracker --------------------------------------------------------------------------


@dataclass(frozen=True)
class NormalizedEvent:
    """A valid version 1 event, where it came from and, for a legacy event, what the mapping kept."""

    event: dict
    source: str = SOURCE_CANONICAL
    legacy: dict | None = None


def is_legacy_event(raw: Any) -> bool:
    """Legacy tracker events are recognised by their camelCase `eventName` (and no `event_name`)."""
    return isinstance(raw, Mapping) and "eventName" in raw and "event_name" not in raw


def normalize_event(
    raw: Any, received_at: datetime, *, check_text: bool = True, limit: int = MAX_REASONS
) -> tuple[NormalizedEvent | None, list[str]]:
    """Validate one posted object: (the v1 event, []) when valid, else (None, at most `limit` reasons).

    `check_text=False` is for an object parsed from JSON without a \\u0000 or surrogate escape."""
    if not isinstance(raw, Mapping):
        return None, [f"$: an event must be a JSON object, not {json_type(raw)}"]
    if not is_legacy_event(raw):
        errors = validate_event(raw, check_text=check_text, limit=limit)
        return (None, errors) if errors else (NormalizedEvent(event=dict(raw)), [])
    errors = validate_legacy_event(raw, check_text=check_text, limit=limit)
    if errors:
        return None, errors
    normalized = map_legacy_event(raw, received_at)
    errors = validate_event(normalized.event, check_text=False, limit=limit)
    if errors:
        return None, [f"legacy event maps to an invalid v1 event: {reason}" for reason in errors]
    return normalized, []


def map_legacy_event(raw: Mapping[str, Any], received_at: datetime) -> NormalizedEvent:
    """Map a valid legacy tracker event to version 1; `received_at` is the fallback client_ts."""
    event_name, page_type = LEGACY_EVENT_NAMES[raw["eventName"]]
    event_id, event_id_source = legacy_event_id(raw)
    client_ts, client_ts_source = _legacy_client_ts(raw.get("eventId"), received_at)
    user_id = raw.get("userId") or None
    event: dict[str, Any] = {
        "event_id": event_id,
        "event_name": event_name,
        "client_ts": client_ts,
        "client_id": raw["clientId"],
        "session_id": raw["sessionId"],
    }
    if "userId" in raw:
        event["user_id"] = user_id
    if "userLoginState" in raw:
        state = raw["userLoginState"]
        event["user_login_state"] = state if state in LOGIN_STATES else None
    if "pageUrl" in raw:
        event["page_url"] = raw["pageUrl"]
    if page_type:
        event["page_type"] = page_type
    if "referrer" in raw:
        event["referrer"] = raw["referrer"]
    if raw.get("product") is not None:
        product = {LEGACY_PRODUCT_FIELDS[key]: value for key, value in raw["product"].items()}
        product["id"] = str(product["id"])
        event["product"] = product
    elif "product" in raw:
        event["product"] = None
    legacy = {
        "event_name": raw["eventName"],
        "event_id": raw.get("eventId"),
        "event_id_source": event_id_source,
        "client_ts_source": client_ts_source,
        "is_first_visit": raw.get("isFirstVisit"),
        "user_login_state": raw.get("userLoginState"),
        "identity_source": "client_id",  # user_id only once the ingest signs the event in with a verified sub
        "element": copy.deepcopy(raw.get("element")),
    }
    return NormalizedEvent(event=event, source=SOURCE_LEGACY, legacy=legacy)


def legacy_event_id(raw: Mapping[str, Any]) -> tuple[str, str]:
    """(event_id, how it was made) for a legacy event: its UUID eventId, else a deterministic uuid5.

    A non-UUID eventId maps to uuid5(LEGACY_NAMESPACE, "event-id:" + eventId); without an eventId the
    id is uuid5 of the event's canonical JSON (sorted keys, numbers as sent), so the same object
    always gets the same id. Two identical events without an eventId therefore share one id.
    """
    tracker_id = raw.get("eventId")
    if tracker_id is None:
        return str(uuid.uuid5(LEGACY_NAMESPACE, "event:" + dumps(raw, sort_keys=True))), "content_hash"
    if UUID_RE.match(tracker_id):
        return tracker_id, "tracker"
    return str(uuid.uuid5(LEGACY_NAMESPACE, "event-id:" + tracker_id)), "tracker_id_hash"


def _legacy_client_ts(tracker_id: str | None, received_at: datetime) -> tuple[str, str]:
    """The `<epoch ms>` prefix of a fallback eventId when plausible, else the receive time."""
    match = LEGACY_EPOCH_MS_ID_RE.match(tracker_id or "")
    if match:
        moment = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=int(match[1]))
        if EARLIEST_LEGACY_TS <= moment <= received_at + timedelta(days=1):
            return isoformat_utc(moment), "event_id_epoch_ms"
    return isoformat_utc(received_at), "received_at"


def json_type(value: Any) -> str:
    """How a message names a JSON value's type: "a string", "an array", ..."""
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int() | float() | Decimal():
            return "a number"
        case str():
            return "a string"
        case list():
            return "an array"
        case Mapping():
            return "an object"
    return type(value).__name__


# OpenAPI -------------------------------------------------------------------------------------------------------

_EVENT_SCHEMA_FILE = EVENT_SCHEMA_PATH.name
_BUNDLED_NAME = "ClickstreamEventV1"


def openapi_document(bundled: bool = True) -> dict:
    """The ingest API's OpenAPI 3.1 document; `bundled` inlines the event schema under components/schemas."""
    import yaml  # only the docs and tests need it, not the ingest Lambda

    document = yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8"))
    if not bundled:
        return document
    _rewrite_refs(document, external=True)
    schema = copy.deepcopy(event_schema())
    definitions = schema.pop("$defs")
    for keyword in ("$id", "$schema"):
        schema.pop(keyword)
    bundled_schemas = {_BUNDLED_NAME: schema} | {f"{_BUNDLED_NAME}.{name}": sub for name, sub in definitions.items()}
    _rewrite_refs(bundled_schemas, external=False)
    document.setdefault("components", {}).setdefault("schemas", {}).update(bundled_schemas)
    return document


def _rewrite_refs(node: Any, external: bool) -> None:
    """Point refs into the event schema (by file name when `external`, else by fragment) at components."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            document, _, pointer = ref.partition("#")
            if document == (_EVENT_SCHEMA_FILE if external else ""):
                node["$ref"] = _bundled_pointer(pointer)
        for value in node.values():
            _rewrite_refs(value, external)
    elif isinstance(node, list):
        for value in node:
            _rewrite_refs(value, external)


def _bundled_pointer(pointer: str) -> str:
    if pointer.startswith("/$defs/"):
        name, _, rest = pointer.removeprefix("/$defs/").partition("/")
        return f"#/components/schemas/{_BUNDLED_NAME}.{name}" + (f"/{rest}" if rest else "")
    return f"#/components/schemas/{_BUNDLED_NAME}{pointer}"
