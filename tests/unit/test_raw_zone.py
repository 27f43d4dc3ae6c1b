"""raw.per_partition and raw.objects_holding over moto S3 in-process."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from clickstream.ingestion import ingest, raw
from clickstream.ingestion.day_writer import DayWriter
from clickstream.shop import samples

from event_samples import BUCKET


def test_per_partition_counts_the_objects_and_their_events_of_each_hour(s3, settings):
    writer = DayWriter(s3, settings, date(2031, 7, 9))
    writer.write("a", samples.canonical_batch(3, seed=1), "ua", writer.at(9, 1))
    writer.write("b", samples.canonical_batch(2, seed=2), "ua", writer.at(9, 59))
    writer.write("c", samples.canonical_batch(4, seed=3), "ua", writer.at(13))
    writer.put_bytes("not counted: another day's prefix is not listed", b"{}", writer.at(23))

    counts = raw.per_partition(s3, BUCKET, raw.list_objects(s3, BUCKET, "events/2031/07/09/0"))

    assert counts == {"events/2031/07/09/09": {"objects": 2, "events": 5}}
    assert raw.per_partition(s3, BUCKET, raw.list_objects(s3, BUCKET, writer.prefix + "1")) == {
        "events/2031/07/09/13": {"objects": 1, "events": 4}}
    assert raw.partition(writer.written["c"].key) == "events/2031/07/09/13"


def test_objects_holding_finds_the_objects_of_given_events_written_since_a_time_oldest_first(s3, settings):
    events = samples.canonical_batch(6, seed=4)
    now = datetime.now(timezone.utc)
    context = ingest.ServerContext(request_id="r")
    later = ingest.ingest_batch(events[3:5], context, s3, settings, received_at=now + timedelta(seconds=1))
    earlier = ingest.ingest_batch(events[:3], context, s3, settings, received_at=now)
    ingest.ingest_batch(events[5:], context, s3, settings, received_at=now)  # none of the ids asked for
    since = now.replace(microsecond=0) - timedelta(seconds=1)

    found = raw.objects_holding(s3, BUCKET, {events[0]["event_id"], events[4]["event_id"]}, since)

    assert list(found) == [earlier.object_key, later.object_key]
    assert found[later.object_key]["event_count"] == 2
    assert raw.objects_holding(s3, BUCKET, {events[0]["event_id"]}, since + timedelta(minutes=5)) == {}
