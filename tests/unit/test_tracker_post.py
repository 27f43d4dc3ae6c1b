"""tracker.post_body and tracker.answer against an in-process transport that records each request."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx

from clickstream.shop import tracker

URL = "http://api.test/clickstream"


def client_answering(status: int, body: dict, seen: list[httpx.Request]) -> httpx.Client:
    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json=body)

    return httpx.Client(transport=httpx.MockTransport(respond))


def test_post_body_sends_bytes_unchanged_and_anything_else_as_exact_json():
    seen: list[httpx.Request] = []
    with client_answering(200, {"accepted": 1}, seen) as client:
        tracker.post_body(client, URL, b'{"event_name": ', "text/plain;charset=UTF-8", {"user-agent": "nb"})
        tracker.post_body(client, URL, {"value": Decimal("429.99")}, headers={"content-type": "text/html"})
    assert seen[0].content == b'{"event_name": '
    assert (seen[0].headers["content-type"], seen[0].headers["user-agent"]) == ("text/plain;charset=UTF-8", "nb")
    assert seen[1].content == b'{"value":429.99}' and json.loads(seen[1].content) == {"value": 429.99}
    assert seen[1].headers["content-type"] == tracker.JSON


def test_answer_reads_a_request_error_and_a_batch_with_rejected_events():
    with client_answering(415, {"error": "unsupported_media_type", "message": "use application/json"}, []) as client:
        refused = tracker.answer(tracker.post_body(client, URL, {}))
    assert refused == {"status": 415, "error": "unsupported_media_type",
                       "message or first reason": "use application/json", "rejected indexes": []}

    partly = {"accepted": 1, "object_key": "events/k.json",
              "rejected": [{"index": 1, "reason": "$.event_name: not one of"}, {"index": 3, "reason": "$: not an object"}]}
    with client_answering(200, partly, []) as client:
        stored = tracker.answer(tracker.post_body(client, URL, {"events": []}))
    assert stored == {"status": 200, "error": "", "message or first reason": "$.event_name: not one of",
                      "rejected indexes": [1, 3]}
