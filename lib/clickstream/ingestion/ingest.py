"""Ingest: validate posted clickstream events, add server context, write one raw S3 object per request.

Pure functions over an injected S3 client, settings and clock. `handle_http_event` serves
POST /clickstream and POST /clickstream/user (API Gateway HTTP API, payload format 2.0; the second behind a JWT
authorizer, whose verified sub alone signs events in: `apply_identity`); `ingest_batch` is the same path without
HTTP, for the traffic simulator. lambdas/ingest/handler.py only wires the environment to them.

Raw object: s3://<raw bucket>/<prefix>YYYY/MM/DD/HH/<object_id>.json (UTC receive hour), see
`build_raw_object` and `$defs/raw_object` in the event schema.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import msgspec
from botocore.exceptions import BotoCoreError, ClientError

from clickstream import contract
from clickstream.contract import NormalizedEvent, isoformat_utc

logger = logging.getLogger(__name__)

ACCEPTED_MEDIA_TYPES = ("application/json", "text/plain")
UTF8_CHARSETS = ("utf-8", "utf8", "us-ascii")
STORAGE_ERRORS = (ClientError, BotoCoreError)
RETRY_AFTER_SECONDS = 1
MAX_USER_AGENT_CHARS = 512
MAX_CONTEXT_CHARS = 128


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class IngestSettings:
    """Where and how much the ingest writes; from the env vars the CloudFormation template sets."""

    raw_bucket: str
    prefix: str = "events/"
    max_batch_events: int = 500
    max_body_bytes: int = 1_048_576

    def __post_init__(self) -> None:
        if not self.raw_bucket:
            raise ValueError("raw_bucket must not be empty")
        if self.max_batch_events < 1 or self.max_body_bytes < 1:
            raise ValueError("max_batch_events and max_body_bytes must be positive")
        if self.prefix and not self.prefix.endswith("/"):
            object.__setattr__(self, "prefix", self.prefix + "/")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> IngestSettings:
        """RAW_BUCKET (required), RAW_PREFIX, MAX_BATCH_EVENTS, MAX_BODY_BYTES."""
        bucket = environ.get("RAW_BUCKET", "").strip()
        if not bucket:
            raise ValueError("RAW_BUCKET is not set: name the raw bucket the ingest writes to")
        return cls(
            raw_bucket=bucket,
            prefix=environ.get("RAW_PREFIX", cls.prefix),
            max_batch_events=_int_setting(environ, "MAX_BATCH_EVENTS", cls.max_batch_events),
            max_body_bytes=_int_setting(environ, "MAX_BODY_BYTES", cls.max_body_bytes),
        )


def _int_setting(environ: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(environ.get(name, default))
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {environ[name]!r}") from None


def truncate_ip(ip: str | None) -> str | None:
    """The network address of an IP's IPv4 /24 or IPv6 /48; None if not an IP. An IPv6 address that embeds an
    IPv4 one (IPv4-mapped ::ffff:a.b.c.d, 6to4 2002:AABB:CCDD::/16) is truncated as that IPv4 address: its /48
    would keep the whole IPv4 address."""
    if not ip or not isinstance(ip, str):
        return None
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        address = address.ipv4_mapped or address.sixtofour or address
    if isinstance(address, ipaddress.IPv4Address):
        return str(ipaddress.IPv4Network((int(address), 24), strict=False).network_address)
    return str(ipaddress.IPv6Network((int(address), 48), strict=False).network_address)


def object_key(received_at: datetime, object_id: uuid.UUID | str, prefix: str = "events/") -> str:
    """`<prefix>YYYY/MM/DD/HH/<object_id>.json`, partitioned by the UTC hour of `received_at`."""
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    return f"{prefix}{received_at.astimezone(timezone.utc):%Y/%m/%d/%H}/{object_id}.json"


def _clean_text(value: Any, max_chars: int) -> str | None:
    """Text the warehouse can store: at most `max_chars`, no U+0000, unpaired surrogates replaced."""
    if not isinstance(value, str) or not value:
        return None
    return value[:max_chars].replace("\x00", "").encode("utf-8", "replace").decode("utf-8") or None


@dataclass(frozen=True)
class ServerContext:
    """What the server knows about a request; added to every stored event. An IP is truncated on creation."""

    request_id: str
    api_request_id: str | None = None
    api_id: str | None = None
    stage: str | None = None
    user_agent: str | None = None
    source_ip_prefix: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "source_ip_prefix", truncate_ip(self.source_ip_prefix))
        object.__setattr__(self, "user_agent", _clean_text(self.user_agent, MAX_USER_AGENT_CHARS))
        for name in ("api_request_id", "api_id", "stage"):
            object.__setattr__(self, name, _clean_text(getattr(self, name), MAX_CONTEXT_CHARS))

    @classmethod
    def from_http_event(cls, event: Mapping[str, Any], request_id: str) -> ServerContext:
        """From an API Gateway HTTP API payload 2.0 event's requestContext."""
        context = event.get("requestContext") or {}
        http = context.get("http") or {}
        return cls(
            request_id=request_id,
            api_request_id=context.get("requestId"),
            api_id=context.get("apiId"),
            stage=context.get("stage"),
            user_agent=http.get("userAgent") or _headers(event).get("user-agent"),
            source_ip_prefix=http.get("sourceIp"),
        )

    def as_dict(self, received_at: datetime) -> dict[str, Any]:
        return {
            "received_at": isoformat_utc(received_at),
            "request_id": self.request_id,
            "api_request_id": self.api_request_id,
            "api_id": self.api_id,
            "stage": self.stage,
            "user_agent": self.user_agent,
            "source_ip_prefix": self.source_ip_prefix,
        }


@dataclass(frozen=True)
class Rejection:
    """An event of the request that was not stored: its position in the request and why."""

    index: int
    errors: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "reason": "; ".join(self.errors), "errors": list(self.errors)}


@dataclass(frozen=True)
class IngestResult:
    """What one request (or simulated request) stored: how many events, under which key, and the rejections."""

    accepted: int
    rejected: tuple[Rejection, ...] = ()
    object_key: str | None = None
    event_ids: tuple[str, ...] = field(default=(), repr=False)


def stored_event(normalized: NormalizedEvent, server: Mapping[str, Any]) -> dict[str, Any]:
    """One event as stored: the v1 event exactly as sent (or mapped), its origin and the server context."""
    return {
        "schema_version": contract.SCHEMA_VERSION,
        "source": normalized.source,
        "event": normalized.event,
        "server": dict(server),
        "legacy": normalized.legacy,
    }


def build_raw_object(
    events: Sequence[NormalizedEvent], server_context: ServerContext, received_at: datetime, object_id: uuid.UUID
) -> dict[str, Any]:
    """The envelope written to S3: schema_version, object_id, received_at, request_id, event_count, events."""
    server = server_context.as_dict(received_at)
    return {**_envelope(server, len(events), object_id), "events": [stored_event(event, server) for event in events]}


def _envelope(server: Mapping[str, Any], event_count: int, object_id: uuid.UUID) -> dict[str, Any]:
    return {
        "schema_version": contract.SCHEMA_VERSION,
        "object_id": str(object_id),
        "received_at": server["received_at"],
        "request_id": server["request_id"],
        "event_count": event_count,
    }


def raw_object_body(encoded_events: Sequence[bytes], server: Mapping[str, Any], object_id: uuid.UUID) -> bytes:
    """The JSON of `build_raw_object`'s envelope around events already encoded one by one (`encode_event`)."""
    head = contract.dumps_loaded(_envelope(server, len(encoded_events), object_id))
    return head[:-1] + b',"events":[' + b",".join(encoded_events) + b"]}"


def encode_event(normalized: NormalizedEvent, server: Mapping[str, Any]) -> bytes:
    """One stored event as JSON; raises one of EVENT_ERRORS when it cannot be written."""
    return contract.dumps_loaded(stored_event(normalized, server))


UNVERIFIED_USER_ID = "unverified_user_id"
MAX_PROPERTIES = contract.event_schema()["properties"]["properties"]["maxProperties"]


def apply_identity(normalized: NormalizedEvent, verified_user_id: str | None) -> list[str]:
    """Who a valid event is, as far as the request proves it; returns why it cannot be stored, if it cannot.

    With a verified sub the event is signed in: user_id is the sub and user_login_state logged_in, whatever the
    body says. Without one, a body's user_id is an unverified claim: it moves to properties.unverified_user_id
    (its presence marks the event unverified), user_id is cleared and a logged_in state dropped. A legacy
    event's identity_source is user_id only when signed in."""
    event, legacy = normalized.event, normalized.legacy
    if verified_user_id is not None:
        event.update(user_id=verified_user_id, user_login_state="logged_in")
        if legacy is not None:
            legacy["identity_source"] = "user_id"
        return []
    if event.get("user_login_state") == "logged_in":
        event["user_login_state"] = None
    if legacy is not None and legacy["user_login_state"] == "logged_in":
        legacy["user_login_state"] = None
    claim = event.get("user_id")
    if claim is None:
        return []
    properties = event.get("properties") or {}
    if UNVERIFIED_USER_ID not in properties and len(properties) >= MAX_PROPERTIES:
        return [f"$.properties: has {len(properties)} keys; without a token the user_id is kept as "
                f"properties.{UNVERIFIED_USER_ID}, so at most {MAX_PROPERTIES - 1} are allowed"]
    event.update(user_id=None, properties={**properties, UNVERIFIED_USER_ID: claim})
    return []


# What one event can raise while it is validated, mapped or encoded: it is rejected, its neighbours are kept.
EVENT_ERRORS = (ValueError, TypeError, OverflowError, RecursionError, msgspec.EncodeError)
# Invalid events of one request explained with up to MAX_REASONS reasons each; the rest get their first
# reason, so the CPU a request can cost stays bounded.
EXPLAINED_EVENTS = 10


def ingest_batch(
    raw_events: Sequence[Any],
    server_context: ServerContext,
    s3: Any,
    settings: IngestSettings,
    received_at: datetime,
    object_id: uuid.UUID | None = None,
    *,
    check_text: bool = True,
    verified_user_id: str | None = None,
) -> IngestResult:
    """Validate each posted event on its own, store the valid ones in one object (SSE AES256), report the others.

    `check_text=False` is for events parsed from a body without a \\u0000 or surrogate escape.
    `verified_user_id` is the sub a JWT authorizer verified, None on the anonymous route (`apply_identity`).
    Storage errors propagate (nothing is stored)."""
    if len(raw_events) > settings.max_batch_events:
        raise ValueError(f"{len(raw_events)} events exceed the batch limit of {settings.max_batch_events}")
    server = server_context.as_dict(received_at)
    accepted: list[str] = []
    encoded: list[bytes] = []
    rejected: list[Rejection] = []
    for index, raw in enumerate(raw_events):
        limit = contract.MAX_REASONS if len(rejected) < EXPLAINED_EVENTS else 1
        try:
            normalized, errors = contract.normalize_event(raw, received_at, check_text=check_text, limit=limit)
            if normalized is not None:
                errors = apply_identity(normalized, verified_user_id)
                if not errors:
                    encoded.append(encode_event(normalized, server))
                    accepted.append(normalized.event["event_id"])
        except EVENT_ERRORS as error:
            logger.warning("event %d of request %s cannot be stored: %r", index, server_context.request_id, error)
            errors = [f"$: cannot be stored ({type(error).__name__})"]
        if errors:
            rejected.append(Rejection(index, tuple(errors)))
    key = None
    if encoded:
        object_id = object_id or uuid.uuid4()
        key = object_key(received_at, object_id, settings.prefix)
        s3.put_object(Bucket=settings.raw_bucket, Key=key, Body=raw_object_body(encoded, server, object_id),
                      ContentType="application/json", ServerSideEncryption="AES256")
    return IngestResult(accepted=len(accepted), rejected=tuple(rejected), object_key=key, event_ids=tuple(accepted))


class RequestError(Exception):
    """A client mistake in the request as a whole: answered with `status` and nothing is stored."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _headers(event: Mapping[str, Any]) -> dict[str, str]:
    return {str(name).lower(): str(value) for name, value in (event.get("headers") or {}).items()}


def _media_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    media_type, *parameters = (content_type or "").split(";")
    parsed = {}
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        parsed[name.strip().lower()] = value.strip().strip('"').lower()
    return media_type.strip().lower(), parsed


def events_from_request(event: Mapping[str, Any], settings: IngestSettings) -> tuple[list[Any], bool]:
    """The posted events of a payload 2.0 event (one object or {"events": [...]}), and whether their JSON has a
    \\u0000 or surrogate escape (only then may a string hold what the warehouse cannot store); raises
    RequestError."""
    media_type, parameters = _media_type(_headers(event).get("content-type"))
    if media_type not in ACCEPTED_MEDIA_TYPES:
        shown = f"Content-Type {media_type!r}" if media_type else "a missing Content-Type"
        raise RequestError(415, "unsupported_media_type", f"{shown} is not accepted: send application/json or text/plain")
    if parameters.get("charset", "utf-8") not in UTF8_CHARSETS:
        raise RequestError(415, "unsupported_media_type", f"charset {parameters['charset']!r} is not accepted: send UTF-8")
    data = _body_bytes(event, settings.max_body_bytes)
    payload = _parse_json(data)
    check_text = contract.has_bad_text_escape(data)
    if not isinstance(payload, dict):
        raise RequestError(
            400, "invalid_body", f'the body must be a JSON object (one event or {{"events": [...]}}), not {contract.json_type(payload)}'
        )
    if "events" not in payload:
        return [payload], check_text
    unexpected = sorted(set(payload) - {"events"})
    if unexpected:
        raise RequestError(400, "invalid_body", f'a batch has only the key "events"; unexpected: {", ".join(unexpected)[:200]}')
    events = payload["events"]
    if not isinstance(events, list):
        raise RequestError(400, "invalid_body", f'"events" must be an array, not {contract.json_type(events)}')
    if not events:
        raise RequestError(400, "empty_batch", '"events" is empty: send at least one event')
    if len(events) > settings.max_batch_events:
        raise RequestError(
            400, "batch_too_large", f"{len(events)} events exceed the limit of {settings.max_batch_events} per request"
        )
    return events, check_text


def _body_bytes(event: Mapping[str, Any], max_bytes: int) -> bytes:
    body = event.get("body")
    if body is None or body == "":
        raise RequestError(400, "empty_body", "the request body is empty: send one event or {\"events\": [...]}")
    if not isinstance(body, str):
        raise RequestError(400, "invalid_body", "the request body must be text")
    too_large = RequestError(413, "body_too_large", f"the body exceeds the limit of {max_bytes} bytes")
    if event.get("isBase64Encoded"):
        if len(body) > (max_bytes + 2) // 3 * 4 + 4:
            raise too_large
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(400, "invalid_encoding", "the body is marked base64 but is not valid base64") from None
    else:
        if len(body) > max_bytes:
            raise too_large
        data = body.encode("utf-8", "surrogatepass")
    if len(data) > max_bytes:
        raise too_large
    if not data.strip():
        raise RequestError(400, "empty_body", "the request body is empty: send one event or {\"events\": [...]}")
    return data


def _parse_json(data: bytes) -> Any:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise RequestError(400, "invalid_encoding", f"the body is not valid UTF-8 ({error.reason} at byte {error.start})") from None
    try:
        return contract.loads(text)
    except RecursionError:
        raise RequestError(400, "invalid_json", "the body is not acceptable JSON: nested too deeply") from None
    except ValueError as error:
        raise RequestError(400, "invalid_json", f"the body is not valid JSON: {str(error)[:200]}") from None


def _response(status: int, body: Mapping[str, Any], request_id: str, headers: Mapping[str, str] | None = None) -> dict:
    return {
        "statusCode": status,
        "headers": {
            "content-type": "application/json",
            "cache-control": "no-store",
            "x-request-id": request_id,
            **(headers or {}),
        },
        "body": json.dumps(body),
    }


def error_response(status: int, code: str, message: str, request_id: str, **extra: Any) -> dict:
    """{"error": code, "message": ..., "request_id": ...} plus `extra` fields, as an API Gateway response."""
    headers = {"retry-after": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    return _response(status, {"error": code, "message": message, "request_id": request_id, **extra}, request_id, headers)


def verified_user_id(event: Mapping[str, Any]) -> str | None:
    """The `sub` a JWT authorizer verified (requestContext.authorizer.jwt.claims), else None."""
    claims = (((event.get("requestContext") or {}).get("authorizer") or {}).get("jwt") or {}).get("claims") or {}
    return claims.get("sub") or None


def handle_http_event(
    event: Mapping[str, Any],
    request_id: str,
    s3: Any,
    settings: IngestSettings,
    now: Callable[[], datetime] = utc_now,
) -> dict[str, Any]:
    """Serve POST /clickstream: a payload 2.0 event in, an API Gateway {statusCode, headers, body} out.

    200 {"accepted", "rejected", "object_key", "request_id"} when at least one event was stored; 400 with the
    same "rejected" list when none was valid; 400 for a malformed request or a batch over the event limit,
    413 for a body over the byte limit, 415 for another content type; 503 when S3 fails.
    """
    received_at = now()
    try:
        raw_events, check_text = events_from_request(event, settings)
    except RequestError as error:
        logger.info("request %s rejected: %s", request_id, error.code)
        return error_response(error.status, error.code, error.message, request_id)
    server_context = ServerContext.from_http_event(event, request_id)
    try:
        result = ingest_batch(raw_events, server_context, s3, settings, received_at, check_text=check_text,
                              verified_user_id=verified_user_id(event))
    except STORAGE_ERRORS:
        logger.exception("request %s: storing %d events failed", request_id, len(raw_events))
        return error_response(
            503,
            "storage_unavailable",
            "the events could not be stored; retry the same request later (event ids make retries safe)",
            request_id,
        )
    rejected = [rejection.as_dict() for rejection in result.rejected]
    logger.info("request %s: %d events accepted, %d rejected, key %s", request_id, result.accepted, len(rejected), result.object_key)
    if not result.accepted:
        return error_response(
            400,
            "no_valid_events",
            f"none of the {len(raw_events)} events is valid; nothing was stored",
            request_id,
            accepted=0,
            rejected=rejected,
        )
    body = {"accepted": result.accepted, "rejected": rejected, "object_key": result.object_key, "request_id": request_id}
    return _response(200, body, request_id)
