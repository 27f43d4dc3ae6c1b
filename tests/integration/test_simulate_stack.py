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
from clickstream.shop import simulate, traffic
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
    stored, signed_in = Counter(), Counter()
    for key, obj in objects.items():
        received = contract.parse_timestamp(obj["received_at"])
        assert KEY_RE.match(key) and key.startswith(f"events/{received:%Y/%m/%d/%H}/")
        assert datetime(2025, 3, 3, tzinfo=timezone.utc) <= received < datetime(2025, 3, 5, tzinfo=timezone.utc)
        for event in obj["events"]:
            stored[event["event"]["event_id"]] += 1
            assert event["server"]["user_agent"] in {ua for ua, _ in simulate.BROWSERS} | set(simulate.CRAWLERS)
            signed_in[event["event"]["user_login_state"] == "logged_in"] += bool(event["event"]["user_id"])
    assert sum(stored.values()) == summary.events_stored
    assert signed_in[True] > 0 and signed_in[False] == 0  # signed-in visitors' user_ids arrive verified
    assert summary.events_stored == truth["events"] + truth["bots"]["events"] + truth["duplicates_sent"]
    assert sum(n - 1 for n in stored.values()) == truth["duplicates_sent"] > 0
    assert truth["malformed_sent"] == summary.malformed > 0 and summary.events_sent == summary.events_stored + summary.malformed


def test_live_mode_goes_through_the_http_api_with_the_browsers_user_agents(local_stack, s3, bucket):
    config = SimulationConfig(start=date(2025, 3, 10), days=1, visitors=5, seed=3)
    before = {o["Key"] for o in raw.list_objects(s3, bucket)}
    started = datetime.now(timezone.utc)

    summary = traffic.send(config, traffic.HttpTarget(stack.status(local_stack)["ingest_url"]))

    new_keys = sorted({o["Key"] for o in raw.list_objects(s3, bucket)} - before)
    new = {key: raw.read_object(s3, bucket, key) for key in new_keys}
    raw.delete_objects(s3, bucket, new_keys)  # today's partitions: a default ETL run would load them
    assert len(new) == summary.objects and summary.mode == "live"
    assert sum(obj["event_count"] for obj in new.values()) == summary.events_stored == simulate.ground_truth(config).stored
    agents = {event["server"]["user_agent"] for obj in new.values() for event in obj["events"]}
    events = [item["event"] for obj in new.values() for item in obj["events"]]
    sent = [event for visitor in simulate.generate(config) for request in visitor for event in request.events
            if contract.validate_event(event) == []]
    assert not any(event["user_id"] for event in events)  # posted without a token: user_ids are only claims
    claims = Counter(event["properties"]["unverified_user_id"] for event in events
                     if "unverified_user_id" in (event["properties"] or {}))
    assert claims == Counter(event["user_id"] for event in sent if event.get("user_id")) and claims
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
