"""A Python stand-in for the browser tracker: posts events to the ingest API in batches, with retries.

Retries resend the same events with the same event ids, so the warehouse still counts each once.
`post_body` sends one body exactly as given (no retries) and `answer` reads the API's reply, to try the
contract's mistakes one by one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import httpx

from clickstream import contract

MAX_BATCH = 500
JSON = "application/json"


@dataclass
class SendReport:
    requests: int = 0
    accepted: int = 0
    retries: int = 0
    rejected: list[dict] = field(default_factory=list)
    object_keys: list[str] = field(default_factory=list)


def send_events(
    ingest_url: str,
    events: Iterable[dict],
    batch_size: int = 100,
    retries: int = 3,
    client: httpx.Client | None = None,
    on_batch: Callable[[int], None] | None = None,
    headers: Mapping[str, str] | None = None,
) -> SendReport:
    """POST `events` as `{"events": [...]}` batches; 5xx and connection errors are retried with backoff.

    Money may be Decimal (written exactly). `headers` are added to each request (e.g. the browser's
    User-Agent); `on_batch(n)` is called after each batch of n events (for a progress bar)."""
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}")
    events = list(events)
    report = SendReport()
    own_client = client is None
    client = client or httpx.Client(timeout=10.0)
    try:
        for start in range(0, len(events), batch_size):
            batch = events[start : start + batch_size]
            body = _post_with_retries(client, ingest_url, {"events": batch}, retries, report, headers or {})
            report.accepted += body.get("accepted", 0)
            report.rejected += [{**r, "index": r["index"] + start} for r in body.get("rejected", [])]
            if body.get("object_key"):
                report.object_keys.append(body["object_key"])
            if on_batch:
                on_batch(len(batch))
    finally:
        if own_client:
            client.close()
    return report


def post_body(client: httpx.Client, url: str, payload: Any, content_type: str = JSON,
              headers: Mapping[str, str] | None = None) -> httpx.Response:
    """POST `payload` once with `content_type`: bytes as they are, anything else as JSON (money exact)."""
    content = payload if isinstance(payload, bytes) else contract.dumps(payload).encode("utf-8")
    return client.post(url, content=content, headers={**(headers or {}), "content-type": content_type})


def answer(response: httpx.Response) -> dict[str, Any]:
    """The API's reply in a line: status, error code ("" when it stored something), what it said (the
    message, or the first reason of the first rejected event) and the indexes of the rejected events."""
    body = response.json()
    rejected = body.get("rejected", [])
    return {
        "status": response.status_code,
        "error": body.get("error", ""),
        "message or first reason": rejected[0]["reason"] if rejected else body.get("message", ""),
        "rejected indexes": [rejection["index"] for rejection in rejected],
    }


def _post_with_retries(
    client: httpx.Client, url: str, payload: dict, retries: int, report: SendReport, headers: Mapping[str, str]
) -> dict:
    for attempt in range(retries + 1):
        report.requests += 1
        try:
            response = post_body(client, url, payload, headers=headers)
            if response.status_code < 500:
                return response.json()
            problem = f"HTTP {response.status_code}: {response.text[:200]}"
        except httpx.TransportError as error:
            problem = str(error)
        if attempt < retries:
            report.retries += 1
            time.sleep(0.2 * 2**attempt)
    raise ConnectionError(f"gave up on {url} after {retries + 1} attempts: {problem}")
