"""DayWriter: raw objects for one UTC day through the ingest's code, with moto S3 in-process."""

from __future__ import annotations

import random
from datetime import date, datetime, timezone

import pytest

from clickstream import contract
from clickstream.ingestion import ingest, raw
from clickstream.ingestion.day_writer import DayWriter
from clickstream.shop import samples

from event_samples import BUCKET

DAY = date(2031, 7, 9)


@pytest.fixture
def writer(s3, settings) -> DayWriter:
    return DayWriter(s3, settings, DAY)


def test_write_stores_the_events_in_the_hour_partition_of_the_day_and_records_them(writer, s3):
    events = samples.canonical_batch(4, seed=7)
    written = writer.write("visit", events, "Mozilla/5.0 test", writer.at(9, 5, 30))

    assert writer.at(9, 5, 30) == datetime(2031, 7, 9, 9, 5, 30, tzinfo=timezone.utc)
    assert written.key.startswith("events/2031/07/09/09/") and written.key.startswith(writer.prefix)
    assert writer.written == {"visit": written} and writer.label_of(written.key) == "visit"
    stored = raw.read_object(s3, BUCKET, written.key)
    assert [item["event"]["event_id"] for item in stored["events"]] == list(written.event_ids)
    assert written.event_ids == tuple(event["event_id"] for event in events)
    assert stored["received_at"] == contract.isoformat_utc(writer.at(9, 5, 30))
    assert {item["server"]["user_agent"] for item in stored["events"]} == {"Mozilla/5.0 test"}
    assert contract.validate_raw_object(stored) == []


def test_write_refuses_an_event_the_ingest_rejects_and_a_time_of_another_day(writer, s3):
    bad = {**samples.canonical_batch(1, seed=8)[0], "event_name": "teleport"}
    with pytest.raises(ValueError, match="teleport"):
        writer.write("bad", [bad], "ua", writer.at(10))
    with pytest.raises(ValueError, match="not a time of the UTC day 2031-07-09"):
        writer.write("tomorrow", samples.canonical_batch(1, seed=9), "ua", datetime(2031, 7, 10, tzinfo=timezone.utc))
    assert writer.written == {} and list(raw.list_objects(s3, BUCKET)) == []


def test_put_unchecked_keeps_what_the_ingest_would_refuse_and_put_bytes_keeps_any_body(writer, s3, settings):
    odd = samples.canonical_event("purchase", random.Random(3), value="19.999", currency="USD",
                                  quantity=1, order_id="o-1")
    refused = ingest.ingest_batch([odd], ingest.ServerContext(request_id="r"), s3, settings, received_at=writer.at(21))
    assert refused.accepted == 0 and "19.999" in refused.rejected[0].errors[0]

    unchecked = writer.put_unchecked("odd amount", [odd], "ua", writer.at(21))
    broken = writer.put_bytes("not JSON", b'{"events": [', writer.at(22, 1))

    assert raw.read_object(s3, BUCKET, unchecked.key)["events"][0]["event"]["value"] == odd["value"]
    assert unchecked.event_ids == (odd["event_id"],)
    assert s3.get_object(Bucket=BUCKET, Key=broken.key)["Body"].read() == b'{"events": ['
    assert broken.key.startswith("events/2031/07/09/22/") and broken.event_ids == ()
    assert sorted(obj["Key"] for obj in raw.list_objects(s3, BUCKET, writer.prefix)) == sorted(
        [unchecked.key, broken.key])
    with pytest.raises(ValueError, match="written already"):
        writer.put_bytes("not JSON", b"{}", writer.at(23))
