"""The traffic simulator against the test stack: history mode through the ingest code, --live through the HTTP API."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from datetime import date, datetime, timedelta, timezone

import pytest

from clickstream import aws, contract
from clickstream.ingestion import raw
from clickstream.shop import shoppers, simulate, traffic
from clickstream.local import stack
from clickstream.shop.simulate import SimulationConfig

KEY_RE = re.compile(r"^events/(\d{4})/(\d\d)/(\d\d)/(\d\d)/[0-9a-f-]{36}\.json$")


@pytest.fixture(scope="module")
def s3(local_stack):
    return aws.client("s3", local_stack)


@pytest.fixture(scope="module")
def bucket(local_stack) -> str:
    return stack.status(local_stack)["raw_bucket"]


@pytest.fixture(scope="module", autouse=True)
def remove_simulated_days(s3, bucket):
    """The session stack is shared: the history-mode days (the CLI test's too) go afterwards."""
    yield
    raw.delete_prefix(s3, bucket, "events/2025/03/")


def claimed_shoppers(config: SimulationConfig) -> dict[str, str]:
    """{event_id: the simulated shopper's email} of the signed-in events the simulator sent."""
    return {event["event_id"]: event["user_id"] for visitor in simulate.generate(config) for request in visitor
            for event in request.events if traffic.signed_in_user(event)}


def assert_signed_in_as_the_shoppers_subs(local_stack, config: SimulationConfig, events: list[dict]) -> None:
    """Each signed-in event's user_id is the real sub of the shopper it claimed, every other one has none."""
    subs = {email: shoppers.shopper_sub(local_stack, email) for email in traffic.SHOPPERS}
    claimed = claimed_shoppers(config)
    signed_in = [event for event in events if event["event_id"] in claimed]
    assert signed_in and all(subs.values())
    assert all(event["user_id"] == subs[claimed[event["event_id"]]] for event in signed_in)
    assert all(event["user_login_state"] == "logged_in" for event in signed_in)
    assert not any(event["user_id"] for event in events if event["event_id"] not in claimed)
    assert not any("unverified_user_id" in (event["properties"] or {}) for event in events)


def stored_objects(s3, bucket, prefix):
    return {o["Key"]: raw.read_object(s3, bucket, o["Key"]) for o in raw.list_objects(s3, bucket, prefix)}


def test_history_mode_writes_the_simulated_days(local_stack, s3, bucket, tmp_path):
    config = SimulationConfig(start=date(2025, 3, 3), days=2, visitors=60, seed=11)
    truth_file = tmp_path / "truth.json"

    summary = traffic.send(config, traffic.IngestTarget.from_templates(local_stack, s3), truth_path=truth_file)

    truth = json.loads(truth_file.read_text())
    assert truth == simulate.ground_truth(config).as_dict()
    objects = stored_objects(s3, bucket, "events/2025/03/0")
    requests = [request for visitor in simulate.generate(config) for request in visitor]
    parts = [part for request in requests for _, part in traffic.signed_in_parts(request)]
    assert summary.requests == len(requests)
    assert len(objects) == summary.objects == len(parts)  # a signed-in part is a request of its own with a valid event
    assert {key[:18] for key in objects} == {"events/2025/03/03/", "events/2025/03/04/"}
    stored = Counter()
    for key, obj in objects.items():
        received = contract.parse_timestamp(obj["received_at"])
        assert KEY_RE.match(key) and key.startswith(f"events/{received:%Y/%m/%d/%H}/")
        assert datetime(2025, 3, 3, tzinfo=timezone.utc) <= received < datetime(2025, 3, 5, tzinfo=timezone.utc)
        for event in obj["events"]:
            stored[event["event"]["event_id"]] += 1
            assert event["server"]["user_agent"] in {ua for ua, _ in simulate.BROWSERS} | set(simulate.CRAWLERS)
    assert sum(stored.values()) == summary.events_stored
    events = [item["event"] for obj in objects.values() for item in obj["events"]]
    assert_signed_in_as_the_shoppers_subs(local_stack, config, events)
    assert summary.events_stored == truth["events"] + truth["bots"]["events"] + truth["duplicates_sent"]
    assert sum(n - 1 for n in stored.values()) == truth["duplicates_sent"] > 0
    assert truth["malformed_sent"] == summary.malformed > 0 and summary.events_sent == summary.events_stored + summary.malformed


def test_the_simulated_shoppers_are_created_once(local_stack):
    first = shoppers.ensure_shoppers(local_stack, traffic.SHOPPERS)
    assert shoppers.ensure_shoppers(local_stack, traffic.SHOPPERS) == first
    assert len(set(first.values())) == simulate.SIMULATED_SHOPPERS
    cognito = aws.client("cognito-idp", local_stack)
    pages = cognito.get_paginator("list_users").paginate(UserPoolId=stack.status(local_stack)["cognito_user_pool_id"])
    emails = Counter(a["Value"] for page in pages for user in page["Users"] for a in user["Attributes"]
                     if a["Name"] == "email")
    assert {email: emails[email] for email in traffic.SHOPPERS} == dict.fromkeys(traffic.SHOPPERS, 1)


def test_live_mode_signs_in_through_cognito_and_goes_through_the_http_api(local_stack, s3, bucket):
    config = SimulationConfig(start=date(2025, 3, 10), days=1, visitors=12, seed=3)
    before = {o["Key"] for o in raw.list_objects(s3, bucket)}
    started = datetime.now(timezone.utc)

    summary = traffic.send(config, traffic.HttpTarget.signed_in(local_stack, stack.status(local_stack)["ingest_url"]))

    new_keys = sorted({o["Key"] for o in raw.list_objects(s3, bucket)} - before)
    new = {key: raw.read_object(s3, bucket, key) for key in new_keys}
    raw.delete_objects(s3, bucket, new_keys)  # today's partitions: a default ETL run would load them
    assert len(new) == summary.objects and summary.mode == "live"
    assert sum(obj["event_count"] for obj in new.values()) == summary.events_stored == simulate.ground_truth(config).stored
    agents = {event["server"]["user_agent"] for obj in new.values() for event in obj["events"]}
    events = [item["event"] for obj in new.values() for item in obj["events"]]
    assert_signed_in_as_the_shoppers_subs(local_stack, config, events)  # verified by the API's JWT authorizer
    assert agents <= {ua for ua, _ in simulate.BROWSERS} | set(simulate.CRAWLERS) and len(agents) > 1
    for obj in new.values():
        assert started - timedelta(seconds=5) <= contract.parse_timestamp(obj["received_at"]) <= datetime.now(timezone.utc)
        newest_send = max(contract.parse_timestamp(e["event"]["sent_ts"]) for e in obj["events"])
        assert abs(newest_send - started) < timedelta(days=1, minutes=5)  # shifted next to now, not in 2025


def test_cli_simulate_prints_a_json_summary_and_writes_the_truth(local_stack, tmp_path):
    truth_file = tmp_path / "truth.json"
    result = subprocess.run(
        [sys.executable, "-m", "clickstream.cli", "simulate", "--days", "1", "--visitors", "10", "--seed", "5",
         "--start", "2025-03-17", "--truth", str(truth_file), "--json"],
        capture_output=True, text=True, env=dict(os.environ), timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    truth = json.loads(truth_file.read_text())
    assert (summary["mode"], summary["start"], summary["visitors"], summary["truth"]) == (
        "history", "2025-03-17", 10, str(truth_file))
    assert summary["events_stored"] == truth["events"] + truth["bots"]["events"] + truth["duplicates_sent"]
    assert set(truth["event_counts"]) == {"2025-03-17"}
