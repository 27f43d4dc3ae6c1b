"""samples.clocked_event: an event with the browser clock's client_ts and sent_ts, or none."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from clickstream import contract
from clickstream.shop import samples

HAPPENED = datetime(2030, 3, 14, 18, 0, 0, 250000, tzinfo=timezone.utc)


def test_the_event_carries_both_browser_times_and_is_valid():
    event = samples.clocked_event(random.Random(1), HAPPENED, HAPPENED + timedelta(seconds=4))
    assert contract.parse_timestamp(event["client_ts"]) == HAPPENED
    assert contract.parse_timestamp(event["sent_ts"]) == HAPPENED + timedelta(seconds=4)
    assert event["event_name"] == "page_view"
    assert contract.normalize_event(event, HAPPENED + timedelta(seconds=5))[1] == []


def test_without_a_sent_time_the_field_is_left_out_and_the_ids_follow_the_seed():
    event = samples.clocked_event(random.Random(1), HAPPENED, None, event_name="product_view")
    assert "sent_ts" not in event and event["event_name"] == "product_view"
    assert event["event_id"] == samples.clocked_event(random.Random(1), HAPPENED, HAPPENED)["event_id"]
    assert contract.normalize_event(event, HAPPENED)[1] == []
