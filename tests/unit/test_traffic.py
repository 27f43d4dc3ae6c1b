"""Sending the simulated traffic: history mode through the ingest's own code, live mode's shift to now, the summary;
and the generator stays free of I/O."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from datetime import date, timedelta

import httpx
import pytest

from clickstream import contract
from clickstream.ingestion import ingest
from clickstream.shop import simulate, traffic
from clickstream.shop.simulate import SimulationConfig

CONFIG = SimulationConfig(start=date(2026, 11, 16), days=2, visitors=40, seed=9)


class MemoryS3:
    """The one S3 call of ingest_batch, kept in memory."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, **_: object) -> dict:
        self.objects[Key] = Body
        return {}


SUBS = {email: f"sub-{number:02d}" for number, email in enumerate(traffic.SHOPPERS)}


def history_target(s3) -> traffic.IngestTarget:
    return traffic.IngestTarget(s3, ingest.IngestSettings(raw_bucket="raw"), api_id="api1", stage="$default",
                                subs=SUBS)


def test_the_generator_imports_nothing_that_does_io():
    code = ("import sys, clickstream.shop.simulate; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'boto3', 'botocore', 'httpx', 'psycopg'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_history_mode_stores_each_request_through_the_ingest_at_its_send_time(tmp_path):
    s3 = MemoryS3()
    seen = []
    summary = traffic.send(CONFIG, history_target(s3), truth_path=tmp_path / "truth.json", progress=seen.append,
                           workers=3)

    truth = simulate.ground_truth(CONFIG)
    assert json.loads((tmp_path / "truth.json").read_text()) == truth.as_dict()
    assert seen == [1] * (CONFIG.visitors + CONFIG.bots)
    requests = [request for visitor in simulate.generate(CONFIG) for request in visitor]
    parts = [part for request in requests for _, part in traffic.signed_in_parts(request)]
    assert (summary.mode, summary.requests, summary.objects) == ("history", len(requests), len(s3.objects))
    assert summary.objects == len(parts) >= len(requests)  # each part carries a valid event
    assert summary.events_sent == sum(len(r.events) for r in requests) == summary.events_stored + summary.malformed
    assert summary.events_stored == truth.stored and summary.duplicates == truth.duplicates > 0
    expected_keys = {ingest.object_key(r.received_at, r.object_id) for r in parts}
    assert set(s3.objects) <= expected_keys and len(s3.objects) > len(expected_keys) / 2
    stored = [contract.loads(body) for body in s3.objects.values()]
    assert {event["server"]["api_id"] for obj in stored for event in obj["events"]} == {"api1"}
    assert sum(obj["event_count"] for obj in stored) == summary.events_stored
    events = [item["event"] for obj in stored for item in obj["events"]]
    signed_in = [event for event in events if event["user_login_state"] == "logged_in"]
    assert signed_in and {event["user_id"] for event in signed_in} <= set(SUBS.values())
    claimed = {event["event_id"]: event["user_id"] for r in requests for event in r.events if event.get("user_id")}
    assert all(event["user_id"] == SUBS[claimed[event["event_id"]]] for event in signed_in)
    assert not any(event["user_id"] for event in events if event not in signed_in)
    assert not any("unverified_user_id" in (event["properties"] or {}) for event in events)


def test_a_request_is_split_where_the_signed_in_user_changes():
    request = next(r for visitor in simulate.generate(CONFIG) for r in visitor)
    anonymous = {**request.events[0], "user_id": None, "user_login_state": "anonymous"}
    signed_in = {**request.events[0], "user_id": "c-1", "user_login_state": "logged_in"}
    claimed = {**request.events[0], "user_id": "c-1", "user_login_state": "anonymous"}
    split = replace(request, events=(anonymous, claimed, signed_in, signed_in, anonymous))

    parts = traffic.signed_in_parts(split)

    assert [(user_id, part.events) for user_id, part in parts] == [
        (None, (anonymous, claimed)), ("c-1", (signed_in, signed_in)), (None, (anonymous,))]
    assert (parts[0][1].request_id, parts[0][1].object_id) == (request.request_id, request.object_id)
    assert len({part.object_id for _, part in parts}) == len({part.request_id for _, part in parts}) == 3
    assert [part.object_id for _, part in traffic.signed_in_parts(split)] == [part.object_id for _, part in parts]
    assert traffic.signed_in_parts(replace(request, events=(signed_in,))) == [("c-1", replace(request, events=(signed_in,)))]


def anonymous_then_signed_in(shopper: str) -> simulate.Request:
    request = next(r for visitor in simulate.generate(CONFIG) for r in visitor)
    anonymous = {**request.events[0], "user_id": None, "user_login_state": "anonymous"}
    signed_in = {**request.events[0], "event_id": "0b7c6f1e-3f0a-4c8e-9d1f-2a6b5c4d3e2f", "user_id": shopper,
                 "user_login_state": "logged_in"}
    return replace(request, events=(anonymous, signed_in))


def test_history_mode_stores_a_signed_in_part_with_its_shoppers_sub():
    s3 = MemoryS3()
    request = anonymous_then_signed_in(traffic.SHOPPERS[3])

    stored = history_target(s3).store(request)

    assert stored == traffic.Stored(events=2, objects=2)
    objects = sorted((contract.loads(body) for body in s3.objects.values()), key=lambda o: o["request_id"] != request.request_id)
    assert [[(e["event"]["user_id"], e["event"]["user_login_state"]) for e in obj["events"]] for obj in objects] == [
        [(None, "anonymous")], [("sub-03", "logged_in")]]


def test_a_signed_in_user_who_is_no_simulated_shopper_is_an_error():
    with pytest.raises(KeyError, match="not a simulated shopper"):
        history_target(MemoryS3()).store(anonymous_then_signed_in("someone@example.com"))


def test_live_mode_posts_signed_in_parts_with_the_shoppers_token_to_the_authorized_route():
    posted = []

    def api(request: httpx.Request) -> httpx.Response:
        events = json.loads(request.content)["events"]
        posted.append((str(request.url), request.headers.get("authorization"), [e["user_id"] for e in events]))
        return httpx.Response(200, json={"accepted": len(events), "rejected": [], "object_key": "k", "request_id": "r"})

    target = traffic.HttpTarget("http://api.test/clickstream", tokens={traffic.SHOPPERS[3]: "token-3"})
    with httpx.Client(transport=httpx.MockTransport(api)) as client:
        stored = target.post(anonymous_then_signed_in(traffic.SHOPPERS[3]), client)

    assert stored == traffic.Stored(events=2, objects=2)
    assert posted == [("http://api.test/clickstream", None, [None]),
                      ("http://api.test/clickstream/user", "Bearer token-3", [traffic.SHOPPERS[3]])]


def test_a_target_that_stores_less_than_the_valid_events_is_an_error():
    class Lossy(traffic.IngestTarget):
        @contextmanager
        def sender(self):
            yield lambda request: self.store(request)._replace(events=0)

    with pytest.raises(RuntimeError, match="the truth would be wrong"):
        traffic.send(CONFIG, Lossy(MemoryS3(), ingest.IngestSettings(raw_bucket="raw"), subs=SUBS))


def test_live_traffic_is_the_same_requests_shifted_so_the_newest_send_is_now():
    before = time.time_ns() // 1_000_000
    shifted = [r for visitor in traffic.HttpTarget("http://127.0.0.1:9/clickstream").traffic(CONFIG) for r in visitor]
    original = [r for visitor in simulate.generate(CONFIG) for r in visitor]
    shift = shifted[0].sent_ms - original[0].sent_ms
    assert before <= max(r.sent_ms for r in shifted) <= time.time_ns() // 1_000_000
    assert [r.sent_ms - shift for r in shifted] == [r.sent_ms for r in original]
    assert [replace(r, sent_ms=0, events=()) for r in shifted] == [replace(r, sent_ms=0, events=()) for r in original]


def test_shifted_moves_every_timestamp_keeps_its_offset_and_leaves_a_broken_one():
    request = next(r for visitor in simulate.generate(CONFIG) for r in visitor)
    events = ({**request.events[0], "client_ts": "2026-11-16T10:00:00.250+07:00"},
              {**request.events[0], "client_ts": "2026-11-16 10:00:00"})
    moved = replace(request, events=events).shifted(90 * 60_000)
    assert moved.sent_ms == request.sent_ms + 90 * 60_000
    assert moved.events[0]["client_ts"] == "2026-11-16T11:30:00.250+07:00"
    assert moved.events[1]["client_ts"] == "2026-11-16 10:00:00"
    assert (contract.parse_timestamp(moved.events[0]["sent_ts"]) - contract.parse_timestamp(events[0]["sent_ts"])
            == timedelta(minutes=90))
