"""The event contract shared by the ingest Lambda, the ETL and the tests.

- `clickstream-event-v1.json` (JSON Schema 2020-12) defines a version 1 event, the legacy Next.js
  tracker event and the raw S3 object; `validate_*` return readable reasons ("$.path: message").
- `normalize_event` turns one posted object (v1 or legacy) into a v1 event; legacy events are mapped
  with deterministic ids (`map_legacy_event`).
- `loads` / `dumps` read and write JSON with floats as `Decimal`, so money is kept exactly as sent.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema_rs
import msgspec
from rfc3339_validator import RFC3339_REGEX

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

# Imported inside `explaining_validator` and `_validator`, on the first invalid instance; every Lambda that
# imports this module packages them (clickstream.package reads this).
LAZY_IMPORTS = ("jsonschema", "referencing")

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
    by the standard library, which says why in its words or reads what msgspec refuses (a lone surrogate)."""
    try:
        return _DECODER.decode(text)
    except msgspec.DecodeError:
        return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)


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

def _is_timestamp(value: object) -> bool:
    """RFC 3339 (offset required) and parseable by `parse_timestamp`, so the ETL can read every accepted value.

    The RFC 3339 shape comes from rfc3339-validator's pattern; the calendar check (no 31 November, no year 0)
    is `datetime.fromisoformat`'s, which refuses the same dates."""
    if not isinstance(value, str):
        return True
    text = value.upper()
    if RFC3339_REGEX.match(text) is None:
        return False
    try:
        return bool(parse_timestamp(text))
    except ValueError:
        return False


@cache
def explaining_validator() -> tuple[type, Any]:
    """(validator class, format checker) of the pure-Python jsonschema validator that explains why an instance
    is invalid: Draft 2020-12 with Decimal integers and the contract's date-time. Imported on first need
    (jsonschema and its format libraries take most of a second to import; valid events never need them)."""
    from jsonschema import Draft202012Validator, FormatChecker, validators

    def is_integer(checker: Any, instance: object) -> bool:
        if isinstance(instance, Decimal):
            return instance.is_finite() and instance == instance.to_integral_value()
        return Draft202012Validator.TYPE_CHECKER.is_type(instance, "integer")

    format_checker = FormatChecker(formats=("uuid",))
    format_checker.checks("date-time")(_is_timestamp)
    validator_class = validators.extend(
        Draft202012Validator, type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", is_integer))
    return validator_class, format_checker


@cache
def event_schema() -> dict:
    """The version 1 JSON Schema (a shared object: do not modify it)."""
    return json.loads(EVENT_SCHEMA_PATH.read_text(encoding="utf-8"))


@cache
def _validator(definition: str | None = None) -> Any:
    from referencing import Registry, Resource

    validator_class, format_checker = explaining_validator()
    schema = event_schema()
    registry = Registry().with_resource(schema["$id"], Resource.from_contents(schema))
    target = schema if definition is None else {"$ref": f"{schema['$id']}#/$defs/{definition}"}
    return validator_class(target, registry=registry, format_checker=format_checker)


@cache
def _fast_validator(definition: str | None = None, builtin_date_time: bool = False) -> jsonschema_rs.Validator:
    """The same schema compiled by jsonschema-rs (~200x faster): answers valid/invalid; the reasons for an
    invalid instance come from `_validator`, whose messages are the contract's.

    With `builtin_date_time`, jsonschema-rs checks date-times itself (twice as fast: no Python call per
    timestamp); it accepts one thing the contract refuses, a leap second (:60)."""
    schema = event_schema()
    target = schema if definition is None else {"$ref": f"{schema['$id']}#/$defs/{definition}"}
    return jsonschema_rs.validator_for(
        target,
        registry=jsonschema_rs.Registry([(schema["$id"], schema)]),
        validate_formats=True,
        formats=None if builtin_date_time else {"date-time": _is_timestamp},
    )


def validate_event(event: Any) -> list[str]:
    """Reasons why `event` is not a valid version 1 event; empty when it is."""
    return _reasons(None, event)


def validate_legacy_event(event: Any) -> list[str]:
    """Reasons why `event` is not a valid legacy tracker event; empty when it is."""
    return _reasons("legacy_event", event)


def validate_raw_object(
    raw_object: Any, *, may_contain_surrogates: bool = True, timestamps_parsed_later: bool = False
) -> list[str]:
    """Reasons why a stored S3 object does not match the raw object format; empty when it does.

    A caller that has the object's JSON text can pass `may_contain_surrogates=has_surrogate_escape(text)`
    to skip the search for unpaired surrogates when none can be there. A caller that parses every timestamp
    with `parse_timestamp` afterwards (the ETL) can pass `timestamps_parsed_later=True` for a faster check
    that lets a leap second through: its parse refuses it, and it asks again without the flag for the reason."""
    return _reasons("raw_object", raw_object, check_unicode=may_contain_surrogates,
                    builtin_date_time=timestamps_parsed_later)


SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def has_surrogate_escape(json_bytes: bytes) -> bool:
    """JSON can carry a surrogate only as an escape like \\ud800: without one, no string holds a surrogate."""
    return SURROGATE_ESCAPE.search(json_bytes) is not None


def _reasons(
    definition: str | None, instance: Any, check_unicode: bool = True, builtin_date_time: bool = False
) -> list[str]:
    if _fast_validator(definition, builtin_date_time).is_valid(instance):
        return [f"{path}: {message}" for path, message in _invalid_unicode(instance)] if check_unicode else []
    validator = _validator(definition)
    reasons: list[str] = []
    failed_paths: set[str] = set()
    for error in validator.iter_errors(instance):
        path, message = _describe(error)
        if error.validator == "pattern" and path in failed_paths:
            continue
        failed_paths.add(path)
        reason = f"{path}: {message}"
        if reason not in reasons:
            reasons.append(reason)
        if len(reasons) == MAX_REASONS:
            break
    if not reasons:
        reasons = [f"{path}: {message}" for path, message in _invalid_unicode(instance)]
    return reasons


def _describe(error: ValidationError) -> tuple[str, str]:
    """(JSON path, message) with short value excerpts and the schema's own wording where it has one."""
    if error.validator in ("anyOf", "oneOf"):
        return _describe_alternatives(error)
    value, rule = _shown(error.instance), error.validator_value
    hint = error.schema.get("description") if isinstance(error.schema, dict) else None
    match error.validator:
        case "type":
            types = rule if isinstance(rule, list) else [rule]
            message = f"{value} is not of type {', '.join(map(repr, types))}"
        case "maxLength":
            message = f"{value} is too long (at most {rule} characters)"
        case "minLength":
            message = "must not be empty" if rule == 1 else f"{value} is too short (at least {rule} characters)"
        case "pattern" | "format":
            message = f"{value} is not {hint}" if hint else f"{value} is not a valid {rule}"
        case "enum":
            message = f"{value} is not one of {', '.join(json.dumps(choice) for choice in rule)}"
        case "minimum":
            message = f"{value} is less than the minimum of {rule}"
        case "maximum":
            message = f"{value} is more than the maximum of {rule}"
        case "exclusiveMaximum":
            message = f"{value} is not less than {rule}"
        case "const":
            message = f"{value} is not {_shown(rule)}"
        case "maxProperties":
            message = f"has {len(error.instance)} keys, at most {rule} are allowed"
        case "maxItems" | "minItems":
            message = f"has {len(error.instance)} items, {'at most' if error.validator == 'maxItems' else 'at least'} {rule} allowed"
        case _:
            message = error.message if len(error.message) <= 200 else error.message[:200] + "…"
    return error.json_path, message


def _describe_alternatives(error: ValidationError) -> tuple[str, str]:
    """An anyOf/oneOf failure told by the branch that got furthest: its deepest, most specific errors."""
    leaves = list(_leaf_errors(error))
    if not leaves:
        return error.json_path, error.message
    depth = max(len(leaf.absolute_path) for leaf in leaves)
    deepest = [leaf for leaf in leaves if len(leaf.absolute_path) == depth]
    specific = [leaf for leaf in deepest if leaf.validator != "type"]
    if specific:
        return _describe(specific[0])
    types: list[str] = []
    for leaf in deepest:
        for name in leaf.validator_value if isinstance(leaf.validator_value, list) else [leaf.validator_value]:
            if name not in types:
                types.append(name)
    return deepest[0].json_path, f"{_shown(deepest[0].instance)} is not of type {', '.join(map(repr, types))}"


def _leaf_errors(error: ValidationError) -> Iterator[ValidationError]:
    for child in error.context or ():
        if child.validator in ("anyOf", "oneOf") and child.context:
            yield from _leaf_errors(child)
        else:
            yield child


def _shown(value: Any) -> str:
    text = dumps(value) if isinstance(value, (str, int, Decimal, float, bool, type(None))) else json_type(value)
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 1] + "…"


def _invalid_unicode(instance: Any) -> Iterator[tuple[str, str]]:
    """Strings with unpaired surrogates (from JSON escapes like \\ud800): valid JSON, but not text PostgreSQL can store."""
    if _is_valid_unicode(json.dumps(instance, ensure_ascii=False, default=str)):
        return  # one C-speed pass; the walk below only runs to name the paths
    stack: list[tuple[str, Any]] = [("$", instance)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str) and not _is_valid_unicode(value):
            yield path, "contains an unpaired surrogate, which is not valid Unicode"
        elif isinstance(value, Mapping):
            for key, item in value.items():
                if not _is_valid_unicode(key):
                    yield path, "has a key with an unpaired surrogate, which is not valid Unicode"
                stack.append((f"{path}.{key}", item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{index}]", item) for index, item in enumerate(value))


def _is_valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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


def normalize_event(raw: Any, received_at: datetime) -> tuple[NormalizedEvent | None, list[str]]:
    """Validate one posted object: (the v1 event, []) when valid, else (None, reasons)."""
    if not isinstance(raw, Mapping):
        return None, [f"$: an event must be a JSON object, not {json_type(raw)}"]
    if not is_legacy_event(raw):
        errors = validate_event(raw)
        return (None, errors) if errors else (NormalizedEvent(event=dict(raw)), [])
    errors = validate_legacy_event(raw)
    if errors:
        return None, errors
    normalized = map_legacy_event(raw, received_at)
    errors = validate_event(normalized.event)
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
        "identity_source": "user_id" if user_id else "client_id",
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
