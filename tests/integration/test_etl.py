"""The ETL end to end: raw objects in moto S3 -> clickstream_dw, against the test stack.

Each test empties the warehouse tables and writes its raw objects into UTC days of its own (far from today
and from each other), so the objects other tests leave in the shared bucket are never in its listing.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import botocore.exceptions
import psutil
import psycopg
import pytest

from clickstream import aws, contract
from clickstream.analytics import etl, transform, warehouse
from clickstream.ingestion import raw
from clickstream.shop import samples
from clickstream.analytics.etl import (EtlOptions, EtlRequest, EtlRequestError, parse_etl_event, partition_prefixes,
                                       run_etl)
from clickstream.ingestion.ingest import IngestSettings, ServerContext, build_raw_object, ingest_batch, object_key
from clickstream.local import postgres, stack

pytestmark = pytest.mark.integration

DESKTOP_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
SUMMARY_KEYS = {"objects_listed", "loaded", "skipped", "rows_inserted", "duplicates", "rejected", "seconds", "remaining",
                "rollup_days_refreshed"}
_days = itertools.count()


# Request parsing (pure) -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "request_"),
    [
        ({}, EtlRequest()),
        (None, EtlRequest()),
        ({"date": "2026-11-24"}, EtlRequest(date=date(2026, 11, 24))),
        ({"targetUtcDate": "2026-11-24"}, EtlRequest(date=date(2026, 11, 24))),
        ({"prefix": "events/2026/11/24/"}, EtlRequest(prefix="events/2026/11/24/")),
        ({"overridePrefix": "events/2026/11/24/09/"}, EtlRequest(prefix="events/2026/11/24/09/")),
        ({"hoursBack": 6}, EtlRequest(lookback_days=0.25)),
        ({"lookback_days": 2}, EtlRequest(lookback_days=2.0)),
        ({"version": "0", "id": "x", "detail-type": "Scheduled Event", "source": "aws.events", "account": "1",
          "time": "2026-11-24T10:00:00Z", "region": "us-east-1", "resources": [], "detail": {}}, EtlRequest()),
    ],
)
def test_parse_etl_event_accepts_the_documented_forms(event, request_):
    assert parse_etl_event(event) == request_


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"date": "24/11/2026"}, "date must be a date YYYY-MM-DD, not '24/11/2026'"),
        ({"targetUtcDate": "2026-02-30"}, "targetUtcDate '2026-02-30' is not a calendar date"),
        ({"date": "2026-11-24", "prefix": "events/"}, "give a date or a prefix, not both"),
        ({"date": "2026-11-24", "targetUtcDate": "2026-11-24"}, "give date or targetUtcDate, not both"),
        ({"prefix": ""}, "prefix must be a non-empty key prefix"),
        ({"hoursBack": 0}, "hoursBack must be a number above 0"),
        ({"hoursBack": True}, "hoursBack must be a number above 0"),
        ({"hoursBack": 3, "date": "2026-11-24"}, "a lookback applies only without a date or a prefix"),
        ({"day": "2026-11-24"}, "unknown keys day"),
        (["date"], "the event must be a JSON object, not list"),
    ],
)
def test_parse_etl_event_refuses_unclear_requests(event, message):
    with pytest.raises(EtlRequestError, match=message):
        parse_etl_event(event)


@pytest.mark.parametrize("event", [{}, None, {"version": "0", "id": "x", "detail-type": "Scheduled Event",
                                             "source": "aws.events", "resources": [], "detail": {}}])
def test_a_default_run_looks_back_the_default_lookback_it_is_given(event):
    assert parse_etl_event(event, default_lookback_days=5) == EtlRequest(lookback_days=5.0)


@pytest.mark.parametrize(("event", "request_"), [
    ({"lookback_days": 2}, EtlRequest(lookback_days=2.0)),
    ({"hoursBack": 6}, EtlRequest(lookback_days=0.25)),
    ({"date": "2026-11-24"}, EtlRequest(date=date(2026, 11, 24))),
    ({"prefix": "events/2026/11/24/"}, EtlRequest(prefix="events/2026/11/24/")),
])
def test_an_event_that_chooses_its_run_ignores_the_default_lookback(event, request_):
    assert parse_etl_event(event, default_lookback_days=5) == request_


def test_a_request_for_a_date_and_a_prefix_is_refused():
    with pytest.raises(EtlRequestError, match="give a date or a prefix, not both"):
        EtlRequest(date=date(2026, 11, 24), prefix="events/")


@pytest.mark.parametrize(("options", "message"), [
    ({"workers": 0}, "workers must be at least 1"),
    ({"workers": 2}, "workers > 1 needs s3_factory"),
    ({"chunk_objects": 0}, "chunk_objects must be at least 1"),
])
def test_options_a_run_cannot_follow_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        EtlOptions(**options)


def test_partition_prefixes_cover_the_lookback_by_day_or_by_hour():
    now = datetime(2026, 11, 24, 1, 30, tzinfo=timezone.utc)
    assert partition_prefixes(now, 3) == ["events/2026/11/21/", "events/2026/11/22/", "events/2026/11/23/",
                                          "events/2026/11/24/"]
    assert partition_prefixes(now, 0.125) == ["events/2026/11/23/22/", "events/2026/11/23/23/",
                                              "events/2026/11/24/00/", "events/2026/11/24/01/"]


# Fixtures and helpers ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3(local_stack):
    return aws.client("s3", local_stack)


@pytest.fixture(scope="module")
def s3_factory(local_stack):
    """What worker processes make their S3 clients with."""
    return functools.partial(aws.client, "s3", local_stack)


@pytest.fixture(scope="module")
def bucket(local_stack):
    return stack.status(local_stack)["raw_bucket"]


@pytest.fixture(scope="module", autouse=True)
def remove_test_partitions(s3, bucket):
    """The session stack is shared with other tests and the notebooks: leave its raw bucket as found."""
    yield
    raw.delete_prefix(s3, bucket, "events/2031/")


@pytest.fixture
def day(dw, empty_warehouse) -> datetime:
    """Noon UTC of a day no other test writes to (every 10 days from 2031-01-01); empties the warehouse tables
    and the rollups."""
    empty_warehouse(dw[0])
    return datetime(2031, 1, 1, 12, tzinfo=timezone.utc) + timedelta(days=10 * next(_days))


@pytest.fixture
def put(s3, bucket):
    """put(received_at, *raw_events, user_agent=..., verified_user_id=...) -> key: store one request's events as
    the ingest does (with a verified_user_id, as POST /clickstream/user after its JWT authorizer)."""

    def put_events(received_at: datetime, *raw_events: dict, user_agent: str | None = DESKTOP_UA,
                   verified_user_id: str | None = None) -> str:
        result = ingest_batch(list(raw_events), ServerContext(request_id=str(uuid.uuid4()), user_agent=user_agent),
                              s3, IngestSettings(raw_bucket=bucket), received_at, verified_user_id=verified_user_id)
        assert not result.rejected, result.rejected
        return result.object_key

    return put_events


def etl_run(s3, bucket, dw, request: EtlRequest = EtlRequest(), **options) -> dict:
    """run_etl of `request` with EtlOptions(**options) into the test warehouse, its summary's keys checked."""
    summary = run_etl(s3, bucket, dw[1], request, EtlOptions(**options))
    assert set(summary) == SUMMARY_KEYS
    return summary


def query(dw, sql: str, params=()) -> list[tuple]:
    with psycopg.connect(dw[0]) as conn:
        return conn.execute(sql, params).fetchall()


def counts(summary: dict) -> dict:
    return {key: value for key, value in summary.items() if key != "seconds"}


def batch(n: int, seed: int, at: datetime) -> list[dict]:
    return samples.canonical_batch(n, seed=seed, at=at - timedelta(seconds=30))


# Loading ------------------------------------------------------------------------------------------------------------


def test_a_day_loads_once_and_a_rerun_skips_everything(s3, bucket, dw, put, day):
    keys = [put(day + timedelta(hours=h), *batch(5, seed=h, at=day + timedelta(hours=h))) for h in range(3)]
    first = etl_run(s3, bucket, dw, EtlRequest(date=day.date()))
    assert counts(first) == {"objects_listed": 3, "loaded": 3, "skipped": 0, "rows_inserted": 15, "duplicates": 0,
                             "rejected": 0, "remaining": 0, "rollup_days_refreshed": 1}
    again = etl_run(s3, bucket, dw, EtlRequest(date=day.date()))
    assert counts(again) == {"objects_listed": 3, "loaded": 0, "skipped": 3, "rows_inserted": 0, "duplicates": 0,
                             "rejected": 0, "remaining": 0, "rollup_days_refreshed": 0}
    log = query(dw, "SELECT key, etag, rows_inserted, duplicates, rejected FROM etl_load_log ORDER BY key")
    assert log == [(key, s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"'), 5, 0, 0) for key in sorted(keys)]
    assert query(dw, "SELECT source_key, count(*) FROM clickstream_events GROUP BY 1 ORDER BY 1") == [
        (key, 5) for key in sorted(keys)]


def test_rollups_of_the_loaded_days_are_refreshed_by_the_run_or_left_pending_on_request(s3, bucket, dw, put, day):
    put(day, *batch(4, seed=1, at=day))
    held = etl_run(s3, bucket, dw, EtlRequest(date=day.date()), refresh_rollups=False)
    assert held["rollup_days_refreshed"] == 0
    assert query(dw, "SELECT day FROM rollup_pending") == [(day.date(),)]
    assert query(dw, "SELECT count(*) FROM rollup_hourly_events") == [(0,)]
    put(day + timedelta(hours=1), *batch(2, seed=2, at=day + timedelta(hours=1)))
    refreshed = etl_run(s3, bucket, dw, EtlRequest(date=day.date()))
    assert refreshed["rollup_days_refreshed"] == 1 and query(dw, "SELECT count(*) FROM rollup_pending") == [(0,)]
    assert query(dw, "SELECT sum(events)::int FROM rollup_hourly_events") == [(6,)]


def test_prefix_loads_only_that_hour(s3, bucket, dw, put, day):
    put(day, *batch(2, seed=1, at=day))
    later = put(day + timedelta(hours=1), *batch(3, seed=2, at=day + timedelta(hours=1)))
    summary = etl_run(s3, bucket, dw, EtlRequest(prefix=later.rsplit("/", 1)[0] + "/"))
    assert (summary["objects_listed"], summary["rows_inserted"]) == (1, 3)
    assert query(dw, "SELECT DISTINCT source_key FROM clickstream_events") == [(later,)]


def test_more_than_1000_objects_in_one_day_are_all_loaded(s3, bucket, dw, day):
    server = ServerContext(request_id="bulk", user_agent=DESKTOP_UA)
    events = batch(1100, seed=5, at=day)

    def put_one(index: int) -> None:
        normalized, _ = contract.normalize_event(events[index], day)
        object_id = uuid.UUID(int=index + 1)
        body = contract.dumps(build_raw_object([normalized], server, day + timedelta(seconds=index), object_id))
        s3.put_object(Bucket=bucket, Key=object_key(day + timedelta(seconds=index), object_id), Body=body.encode())

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put_one, range(1100)))
    summary = etl_run(s3, bucket, dw, EtlRequest(date=day.date()))
    assert counts(summary) == {"objects_listed": 1100, "loaded": 1100, "skipped": 0, "rows_inserted": 1100,
                               "duplicates": 0, "rejected": 0, "remaining": 0, "rollup_days_refreshed": 1}
    assert query(dw, "SELECT count(*), count(DISTINCT source_key) FROM clickstream_events") == [(1100, 1100)]


def test_lookback_picks_up_a_late_file_for_an_earlier_day(s3, bucket, dw, put, day):
    now = day + timedelta(hours=6)
    put(day, *batch(2, seed=1, at=day))
    assert etl_run(s3, bucket, dw, now=now)["rows_inserted"] == 2
    # written after that run, into the partition of two days earlier (and one outside the 3-day lookback)
    late = put(day - timedelta(days=2), *batch(3, seed=2, at=day - timedelta(days=2)))
    too_old = put(day - timedelta(days=5), *batch(4, seed=3, at=day - timedelta(days=5)))
    summary = etl_run(s3, bucket, dw, now=now)
    assert (summary["objects_listed"], summary["loaded"], summary["skipped"], summary["rows_inserted"]) == (2, 1, 1, 3)
    logged = {row[0] for row in query(dw, "SELECT key FROM etl_load_log")}
    assert late in logged and too_old not in logged
    assert etl_run(s3, bucket, dw, EtlRequest(date=(day - timedelta(days=5)).date()))["rows_inserted"] == 4


def test_hours_back_lists_only_the_last_hours(s3, bucket, dw, put, day):
    put(day - timedelta(hours=3), *batch(1, seed=1, at=day))
    recent = put(day - timedelta(minutes=30), *batch(2, seed=2, at=day))
    request = parse_etl_event({"hoursBack": 2})
    summary = etl_run(s3, bucket, dw, request, now=day)
    assert (summary["objects_listed"], summary["rows_inserted"]) == (1, 2)
    assert query(dw, "SELECT key FROM etl_load_log") == [(recent,)]


def test_a_changed_object_is_loaded_again_without_duplicating_rows(s3, bucket, dw, put, day):
    events = batch(2, seed=1, at=day)
    key = put(day, *events)
    etl_run(s3, bucket, dw, EtlRequest(date=day.date()))
    raw_object = contract.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    extra, _ = contract.normalize_event(batch(1, seed=2, at=day)[0], day)
    raw_object["events"].append({**raw_object["events"][0], "event": extra.event})
    raw_object["event_count"] = 3
    s3.put_object(Bucket=bucket, Key=key, Body=contract.dumps(raw_object).encode())
    summary = etl_run(s3, bucket, dw, EtlRequest(date=day.date()))
    assert (summary["loaded"], summary["rows_inserted"], summary["duplicates"]) == (1, 1, 2)
    assert query(dw, "SELECT count(*) FROM clickstream_events") == [(3,)]
    assert query(dw, "SELECT etag FROM etl_load_log") == [(s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"'),)]


# Duplicates -----------------------------------------------------------------------------------------------------------


def test_the_same_event_in_two_objects_is_one_row(s3, bucket, dw, put, day):
    shared, other = batch(2, seed=1, at=day)
    first = put(day, shared)
    second = put(day + timedelta(minutes=1), shared, other)  # a retry that also carries a new event
    summary = etl_run(s3, bucket, dw, EtlRequest(date=day.date()))
    assert (summary["rows_inserted"], summary["duplicates"]) == (2, 1)
    assert query(dw, "SELECT count(*) FROM clickstream_events WHERE event_id = %s", (uuid.UUID(shared["event_id"]),)) \
        == [(1,)]
    assert query(dw, "SELECT key, rows_inserted, duplicates FROM etl_load_log ORDER BY key") == sorted(
        [(first, 1, 0), (second, 1, 1)])
    # and across runs: a third copy arriving later
    put(day + timedelta(hours=2), shared)
    later = etl_run(s3, bucket, dw, EtlRequest(date=day.date()))
    assert (later["loaded"], later["rows_inserted"], later["duplicates"]) == (1, 0, 1)


def test_a_duplicate_inside_one_object_is_one_row(s3, bucket, dw, put, day):
    event = batch(1, seed=1, at=day)[0]
    key = put(day, event, event)
    summary = etl_run(s3, bucket, dw, EtlRequest(date=day.date()))
    assert (summary["rows_inserted"], summary["duplicates"]) == (1, 1)
    assert query(dw, "SELECT count(*) FROM clickstream_events") == [(1,)]
    assert query(dw, "SELECT rows_inserted, duplicates FROM etl_load_log WHERE key = %s", (key,)) == [(1, 1)]


def test_an_id_resent_in_capitals_is_the_same_event(s3, bucket, dw, put, day):
    event = batch(1, seed=1, at=day)[0]
    put(day, event, {**event, "event_id": event["event_id"].upper()})
    put(day + timedelta(minutes=1), {**event, "event_id": event["event_id"].upper()})
    summary = etl_run(s3, bucket, dw, EtlRequest(date=day.date()))
    assert (summary["rows_inserted"], summary["duplicates"]) == (1, 2)
    assert query(dw, "SELECT event_id FROM clickstream_events") == [(uuid.UUID(event["event_id"]),)]


# Faults ---------------------------------------------------------------------------------------------------------------


def test_unreachable_warehouse_is_a_clear_error_and_nothing_is_marked_loaded(s3, bucket, dw, put, day, local_stack):
    put(day, *batch(2, seed=1, at=day))
    port = stack.free_port()
    password = json.loads((local_stack.home / "credentials" / "dw.json").read_text())["etl_writer"]
    wrong = postgres.dsn("127.0.0.1", port, postgres.WAREHOUSE_DB, "etl_writer", password)
    with pytest.raises(warehouse.WarehouseError, match=f"cannot connect to the warehouse at 127.0.0.1:{port}") as info:
        run_etl(s3, bucket, wrong, EtlRequest(date=day.date()))
    assert password not in str(info.value)
    assert query(dw, "SELECT count(*) FROM etl_load_log") == [(0,)]
    assert etl_run(s3, bucket, dw, EtlRequest(date=day.date()))["rows_inserted"] == 2


def test_worker_processes_load_every_event_once_while_chunks_in_flight_share_ids(s3, s3_factory, bucket, dw, put,
                                                                                day):
    events = batch(60, seed=11, at=day)
    firsts = [put(day + timedelta(minutes=i), *events[i * 6: i * 6 + 6]) for i in range(10)]
    # the same requests resent (in reverse order) a second later: with chunks of 2 objects the two copies sit in
    # one chunk or in neighbouring ones, which two workers load at the same time
    resent = [put(day + timedelta(minutes=i, seconds=1), *events[i * 6: i * 6 + 6][::-1]) for i in range(0, 10, 3)]
    bad = object_key(day + timedelta(minutes=5), uuid.uuid4())
    s3.put_object(Bucket=bucket, Key=bad, Body=b"not json")
    summary = etl_run(s3, bucket, dw, EtlRequest(date=day.date()), chunk_objects=2, workers=2, s3_factory=s3_factory)
    assert counts(summary) == {"objects_listed": 15, "loaded": 15, "skipped": 0, "rows_inserted": 60, "duplicates": 24,
                               "rejected": 1, "remaining": 0, "rollup_days_refreshed": 1}
    assert query(dw, "SELECT count(*), count(DISTINCT event_id) FROM clickstream_events") == [(60, 60)]
    assert query(dw, "SELECT count(*), sum(rows_inserted), sum(duplicates), sum(rejected) FROM etl_load_log") == [
        (15, 60, 24, 1)]
    assert {key for (key,) in query(dw, "SELECT key FROM etl_load_log")} == {*firsts, *resent, bad}
    assert query(dw, "SELECT source_key, event_index FROM clickstream_rejected") == [(bad, None)]
    assert etl_run(s3, bucket, dw, EtlRequest(date=day.date()), workers=2, s3_factory=s3_factory)["skipped"] == 15


def test_workers_read_s3_with_the_factorys_client_and_its_errors_fail_the_run(s3, bucket, dw, put, day, local_stack):
    for i in range(4):
        put(day + timedelta(minutes=i), *batch(2, seed=i, at=day))
    closed = dataclasses.replace(local_stack, aws_port=stack.free_port())
    with pytest.raises(botocore.exceptions.EndpointConnectionError, match=f":{closed.aws_port}/"):
        etl_run(s3, bucket, dw, EtlRequest(date=day.date()), chunk_objects=1, workers=2,
                s3_factory=functools.partial(aws.client, "s3", closed))
    assert query(dw, "SELECT count(*) FROM etl_load_log") == [(0,)]


KILLED_RUN = textwrap.dedent("""
    import datetime, functools, os, signal
    from clickstream import aws
    from clickstream.analytics import etl
    from clickstream.settings import Settings

    def die_after_first_chunk(progress):
        os.kill(os.getpid(), signal.SIGKILL)

    etl.run_etl(aws.client("s3", Settings.from_env()), os.environ["ETL_BUCKET"], os.environ["ETL_DSN"],
                etl.EtlRequest(date=datetime.date.fromisoformat(os.environ["ETL_DATE"])),
                etl.EtlOptions(chunk_objects=3, progress=die_after_first_chunk,
                               workers=int(os.environ.get("ETL_WORKERS", "1")),
                               s3_factory=functools.partial(aws.client, "s3", Settings.from_env())))
    raise SystemExit("the run was not killed")
""")


def test_a_run_killed_between_chunks_is_completed_by_the_next_run_exactly_once(s3, bucket, dw, put, day):
    events = batch(40, seed=3, at=day)
    keys = [put(day + timedelta(minutes=i), *events[i * 4: i * 4 + 4]) for i in range(10)]
    keys.append(put(day + timedelta(hours=2), events[0], events[39]))  # two retried events, in the last chunk
    env = {**os.environ, "ETL_BUCKET": bucket, "ETL_DSN": dw[1], "ETL_DATE": day.date().isoformat()}
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN], env=env, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    # killed when the first chunk's commit was reported; the second chunk, loading meanwhile, may have committed
    logged = [key for (key,) in query(dw, "SELECT key FROM etl_load_log ORDER BY key")]
    assert logged in (sorted(keys)[:3], sorted(keys)[:6]), "whole chunks, in key order"
    assert query(dw, "SELECT count(*) FROM clickstream_events") == [(4 * len(logged),)]

    summary = etl_run(s3, bucket, dw, EtlRequest(date=day.date()))
    assert counts(summary) == {"objects_listed": 11, "loaded": 11 - len(logged), "skipped": len(logged),
                               "rows_inserted": 40 - 4 * len(logged), "duplicates": 2, "rejected": 0, "remaining": 0,
                               "rollup_days_refreshed": 1}
    assert query(dw, "SELECT count(*), count(DISTINCT event_id) FROM clickstream_events") == [(40, 40)]
    assert sorted(row[0] for row in query(dw, "SELECT event_id FROM clickstream_events")) == sorted(
        uuid.UUID(event["event_id"]) for event in events)
    assert query(dw, "SELECT sum(rows_inserted), count(*) FROM etl_load_log") == [(40, 11)]


def test_a_killed_run_leaves_no_worker_process_behind(s3, bucket, dw, put, day):
    for i in range(9):
        put(day + timedelta(minutes=i), *batch(3, seed=i, at=day))
    marker = f"etl-kill-{uuid.uuid4()}"
    env = {**os.environ, "ETL_BUCKET": bucket, "ETL_DSN": dw[1], "ETL_DATE": day.date().isoformat(),
           "ETL_WORKERS": "2", "ETL_TEST_MARKER": marker}
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN], env=env, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    def left_behind() -> list[int]:
        found = []
        for process in psutil.process_iter(["pid"]):
            try:
                if process.environ().get("ETL_TEST_MARKER") == marker:
                    found.append(process.pid)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return found

    deadline = time.monotonic() + 20
    while left_behind() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left_behind() == [], "worker processes (or their fork server) outlived the killed run"
    assert etl_run(s3, bucket, dw, EtlRequest(date=day.date()))["remaining"] == 0


def test_a_run_stops_before_its_time_runs_out_and_the_next_continues(s3, bucket, dw, put, day):
    for i in range(5):
        put(day + timedelta(minutes=i), *batch(2, seed=i, at=day))
    budget = iter([60_000, 9_999])  # then under the 10 s margin
    reported = []
    summary = etl_run(s3, bucket, dw, EtlRequest(date=day.date()), chunk_objects=2, remaining_ms=lambda: next(budget),
                      progress=reported.append)
    assert (summary["loaded"], summary["remaining"], summary["rows_inserted"]) == (2, 3, 4)
    assert [(p.objects_done, p.objects_to_load, p.rows_inserted) for p in reported] == [(2, 5, 4)]
    assert query(dw, "SELECT count(*) FROM etl_load_log") == [(2,)]
    rest = etl_run(s3, bucket, dw, EtlRequest(date=day.date()), chunk_objects=2)
    assert (rest["loaded"], rest["skipped"], rest["remaining"], rest["rows_inserted"]) == (3, 2, 0, 6)


def test_a_run_keeps_twice_its_slowest_chunk_in_reserve(s3, bucket, dw, put, day, monkeypatch):
    for i in range(3):
        put(day + timedelta(minutes=i), *batch(1, seed=i, at=day))
    clock = itertools.count(step=30.0)  # every reading of the ETL's clock is 30 s later: each chunk takes 30 s
    monkeypatch.setattr(etl, "monotonic", lambda: next(clock))
    # 70 s left >= 2 x 30 s: the second chunk runs; 50 s left is above the 10 s floor but under 2 x 30 s: stop
    budget = iter([100_000, 70_000, 50_000])
    summary = etl_run(s3, bucket, dw, EtlRequest(date=day.date()), chunk_objects=1, remaining_ms=lambda: next(budget))
    assert (summary["loaded"], summary["remaining"]) == (2, 1)


def test_an_object_that_is_not_json_is_quarantined_and_the_others_load(s3, bucket, dw, put, day):
    good = [put(day, *batch(2, seed=1, at=day)), put(day, *batch(3, seed=2, at=day))]
    bad = object_key(day, uuid.uuid4())
    s3.put_object(Bucket=bucket, Key=bad, Body=b'{"schema_version": "1", "events": [{"event_id": ')
    summary = etl_run(s3, bucket, dw, EtlRequest(date=day.date()))
    assert counts(summary) == {"objects_listed": 3, "loaded": 3, "skipped": 0, "rows_inserted": 5, "duplicates": 0,
                               "rejected": 1, "remaining": 0, "rollup_days_refreshed": 1}
    [(index, reason, payload)] = query(dw, "SELECT event_index, reason, payload FROM clickstream_rejected "
                                           "WHERE source_key = %s", (bad,))
    assert index is None and reason.startswith("not valid JSON: Expecting value")
    assert payload == '{"schema_version": "1", "events": [{"event_id": '
    assert query(dw, "SELECT key, rows_inserted, rejected FROM etl_load_log ORDER BY key") == sorted(
        [(good[0], 2, 0), (good[1], 3, 0), (bad, 0, 1)])
    assert etl_run(s3, bucket, dw, EtlRequest(date=day.date()))["skipped"] == 3  # quarantined once, not retried every run


def put_unchecked(s3, bucket, received_at: datetime, *events: dict) -> str:
    """Store `events` unvalidated, as an older ingest with a looser contract may have stored them."""
    key = object_key(received_at, uuid.uuid4())
    server = ServerContext(request_id=str(uuid.uuid4()), user_agent=DESKTOP_UA)
    normalized = [contract.NormalizedEvent(event=contract.loads(contract.dumps(event))) for event in events]
    raw_object = build_raw_object(normalized, server, received_at, uuid.uuid4())
    s3.put_object(Bucket=bucket, Key=key, Body=contract.dumps(raw_object).encode())
    return key


def test_an_event_with_nul_is_rejected_with_its_reason_and_its_neighbours_load(s3, bucket, dw, day):
    ok, bad = batch(2, seed=1, at=day)
    key = put_unchecked(s3, bucket, day, ok, {**bad, "page_type": "x\u0000y"})
    summary = etl_run(s3, bucket, dw, EtlRequest(date=day.date()))
    assert (summary["rows_inserted"], summary["rejected"]) == (1, 1)
    [(index, reason, payload)] = query(dw, "SELECT event_index, reason, payload FROM clickstream_rejected")
    assert (index, reason) == (1, "$.event.page_type: contains U+0000 (NUL), which the warehouse cannot store")
    assert payload["event"]["event_id"] == bad["event_id"] and payload["event"]["page_type"] == "x\ufffdy"
    assert query(dw, "SELECT rows_inserted, rejected FROM etl_load_log WHERE key = %s", (key,)) == [(1, 1)]


# Column values ----------------------------------------------------------------------------------------------------------


def test_legacy_tracker_events_fill_the_legacy_columns(s3, bucket, dw, put, day):
    put(day,
        samples.legacy_event("add_to_cart_click", event_id=str(uuid.uuid4()), userId="", isFirstVisit=True,
                             userLoginState="guest"),
        samples.legacy_event("login_success", event_id=str(uuid.uuid4()), userId="shop-7", isFirstVisit=False,
                             userLoginState="logged_in", product=None, element=None),
        samples.legacy_event("home_view", userLoginState="member", isFirstVisit=None, product=None))
    put(day, samples.legacy_event("logout", event_id=str(uuid.uuid4()), userId="", isFirstVisit=False,
                                  userLoginState="guest", product=None, element=None), verified_user_id="sub-7")
    etl_run(s3, bucket, dw, EtlRequest(date=day.date()))
    rows = query(dw, "SELECT properties->'legacy'->>'event_name', event_name, identity_source, is_first_visit,"
                     " user_login_state, user_id, page_type, context_product_id, properties->'legacy'->'element'->>'id',"
                     " properties->>'unverified_user_id' FROM clickstream_events ORDER BY 1")
    assert rows == [
        ("add_to_cart_click", "add_to_cart", "client_id", True, "guest", None, None, "LAP-001", "add-to-cart", None),
        ("home_view", "page_view", "client_id", None, "member", None, "home", None, "add-to-cart", None),
        ("login_success", "login", "client_id", False, None, None, None, None, None, "shop-7"),  # without a token
        ("logout", "logout", "user_id", False, "logged_in", "sub-7", None, None, None, None),
    ]


def test_money_columns_are_exact(s3, bucket, dw, put, day):
    product = {**samples.PRODUCTS[0], "price": 1234.56, "discount_price": "0.10"}
    properties = {"weight_kg": Decimal("1.250"), "tiny": Decimal("1E-7"), "note": "Bàn phím \"15\"\n"}
    event = samples.canonical_event("purchase", at=day, product=product, value="999999999.99", currency="USD",
                                    properties=properties)
    put(day, event)
    etl_run(s3, bucket, dw, EtlRequest(date=day.date()))
    [row] = query(dw, "SELECT context_product_price, context_product_discount_price, value, value::text,"
                      " context_product_discount_price::text FROM clickstream_events")
    assert row == (Decimal("1234.56"), Decimal("0.10"), Decimal("999999999.99"), "999999999.99", "0.10")
    [stored] = query(dw, "SELECT properties->>'weight_kg', properties->>'tiny', properties->>'note' FROM clickstream_events")
    assert stored == ("1.250", "0.0000001", 'Bàn phím "15"\n'), "numbers in properties are kept exact"


def test_event_timestamp_is_skew_corrected_or_received_at(s3, bucket, dw, put, day):
    skewed_client = day - timedelta(hours=2)  # the browser's clock is 2 hours behind
    fine, backwards, no_sent = batch(3, seed=1, at=day)
    fine.update(client_ts=contract.isoformat_utc(skewed_client),
                sent_ts=contract.isoformat_utc(skewed_client + timedelta(seconds=4)))
    backwards.update(client_ts=contract.isoformat_utc(skewed_client),
                     sent_ts=contract.isoformat_utc(skewed_client - timedelta(seconds=4)))
    no_sent.update(client_ts="2020-01-01T00:00:00Z", sent_ts=None)
    put(day, fine, backwards, no_sent)
    etl_run(s3, bucket, dw, EtlRequest(date=day.date()))
    stamps = dict(query(dw, "SELECT event_id::text, event_timestamp FROM clickstream_events"))
    assert stamps[fine["event_id"]] == day - timedelta(seconds=4)
    assert stamps[backwards["event_id"]] == day
    assert stamps[no_sent["event_id"]] == day


@pytest.mark.parametrize(
    ("user_agent", "is_bot", "device"),
    [
        ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", True, "bot"),
        ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile "
         "Safari/537.36", False, "mobile"),
        ("Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 "
         "Mobile/15E148 Safari/604.1", False, "tablet"),
        (DESKTOP_UA, False, "desktop"),
    ],
)
def test_user_agent_gives_is_bot_and_device_category(s3, bucket, dw, put, day, user_agent, is_bot, device):
    put(day, *batch(2, seed=1, at=day), user_agent=user_agent)
    etl_run(s3, bucket, dw, EtlRequest(date=day.date()))
    assert query(dw, "SELECT DISTINCT is_bot, device_category, user_agent FROM clickstream_events") == [
        (is_bot, device, user_agent)]


# One bad object never stops a run; only infrastructure faults do ---------------------------------------------------


def test_an_event_the_old_contract_let_through_no_longer_stops_every_run(s3, bucket, dw, put, day):
    """A number numeric cannot hold (1e200000), stored by an ingest with the older contract, failed the COPY of
    every run; now its event is quarantined and the others of its chunk load."""
    good = put(day, *batch(3, seed=1, at=day))
    ok, huge = batch(2, seed=2, at=day)
    key = put_unchecked(s3, bucket, day, ok, {**huge, "properties": {"n": Decimal("1E+200000")}})
    summary = etl_run(s3, bucket, dw, EtlRequest(date=day.date()))
    assert (summary["loaded"], summary["rows_inserted"], summary["rejected"]) == (2, 4, 1)
    [(source, index, reason)] = query(dw, "SELECT source_key, event_index, reason FROM clickstream_rejected")
    assert (source, index) == (key, 1) and reason.startswith("$.event.properties.n: 1E+200000 is not less than")
    [(payload,)] = query(dw, "SELECT payload->'event'->'properties'->>'n' FROM clickstream_rejected")
    assert payload == "1E+200000"  # as text: jsonb's numeric cannot hold it
    assert query(dw, "SELECT key FROM etl_load_log ORDER BY key") == sorted([(good,), (key,)])


def _object_load(key: str, events: list[dict], day: datetime) -> warehouse.ObjectLoad:
    normalized = [contract.normalize_event(event, day)[0] for event in events]
    body = contract.dumps(build_raw_object(normalized, ServerContext(request_id="r", user_agent=DESKTOP_UA), day,
                                           uuid.uuid4())).encode()
    transformed = etl.transform_body(body, key)
    return warehouse.ObjectLoad(key, "etag", transformed.rows, transformed.rejects)


def _with_column(obj: warehouse.ObjectLoad, position: int, column: str, value) -> warehouse.ObjectLoad:
    rows = list(obj.rows)
    row = list(rows[position])
    row[list(transform.COLUMNS).index(column)] = value
    rows[position] = tuple(row)
    return dataclasses.replace(obj, rows=rows)


def test_data_the_database_refuses_quarantines_only_its_events_and_the_chunk_loads(dw, day):
    """Given a chunk whose second object has a row PostgreSQL refuses (a numeric out of range, a failed CHECK),
    the other objects and the object's other rows load, and each refused row is quarantined at its own index
    with the database's message."""
    events = batch(9, seed=3, at=day)
    first, second, third = (_object_load(f"k/{n}", events[3 * n: 3 * n + 3], day) for n in range(3))
    second = _with_column(second, 0, "properties", {"n": Decimal("1E+200000")})
    second = _with_column(second, 2, "device_category", "toaster")
    with psycopg.connect(dw[1]) as conn:
        counts = warehouse.load_chunk_isolating(conn, [first, second, third])
    assert {key: (c.rows_inserted, c.rejected) for key, c in counts.items()} == {
        "k/0": (3, 0), "k/1": (1, 2), "k/2": (3, 0)}
    rejects = query(dw, "SELECT event_index, reason, jsonb_typeof(payload) FROM clickstream_rejected ORDER BY 1")
    assert [(index, kind) for index, _, kind in rejects] == [(0, "string"), (2, "string")]
    assert "the warehouse refused it: value overflows numeric format" == rejects[0][1]
    assert rejects[1][1].startswith("the warehouse refused it: new row for relation") and "device_category" in rejects[1][1]
    loaded = {str(event_id) for (event_id,) in query(dw, "SELECT event_id FROM clickstream_events")}
    assert loaded == {e["event_id"] for e in events} - {events[3]["event_id"], events[5]["event_id"]}
    assert len(query(dw, "SELECT key FROM etl_load_log")) == 3


def test_an_object_refused_with_no_event_to_blame_is_quarantined_whole(dw, day, monkeypatch):
    events = batch(4, seed=4, at=day)
    good = _object_load("k/good", events[:2], day)
    bad = _with_column(_object_load("k/bad", events[2:], day), 0, "context_product_price", Decimal("1E+20"))
    monkeypatch.setattr(warehouse, "_refused_rows", lambda conn, rows: {})  # as if only the pair of rows failed
    with psycopg.connect(dw[1]) as conn:
        counts = warehouse.load_chunk_isolating(conn, [good, bad])
    assert (counts["k/good"].rows_inserted, counts["k/bad"].rows_inserted, counts["k/bad"].rejected) == (2, 0, 1)
    [(index, reason)] = query(dw, "SELECT event_index, reason FROM clickstream_rejected")
    assert index is None and reason == "the warehouse refused the object: numeric field overflow"


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clickstream.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_three_etl_runs_at_once_all_succeed_and_load_every_event_and_reject_once(s3, bucket, dw, put, day):
    """Objects with valid events, objects with only events to quarantine, objects that are not JSON; three
    `clickstream etl` processes over the same day at once: each exits 0, every event is one row, every reject one
    row. The quarantined objects are an hour later, so they form a chunk of their own (chunks follow the keys):
    such a chunk inserts no event that would make the concurrent runs wait for each other."""
    valid = [put(day + timedelta(minutes=m), *batch(4, seed=m, at=day + timedelta(minutes=m)))
             for m in range(etl.DEFAULT_CHUNK_OBJECTS)]
    later = day + timedelta(hours=1)
    only_bad = [put_unchecked(s3, bucket, later, *[{**e, "value": Decimal("0.001")}
                                                    for e in batch(3, seed=100 + m, at=later)]) for m in range(6)]
    not_json = []
    for m in range(4):
        key = object_key(later, uuid.uuid4())
        s3.put_object(Bucket=bucket, Key=key, Body=b'{"events": [')
        not_json.append(key)
    runs = [subprocess.Popen([sys.executable, "-m", "clickstream.cli", "etl", "--date", day.date().isoformat(),
                              "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(3)]
    results = [(run.wait(timeout=300), run.stdout.read(), run.stderr.read()) for run in runs]
    for run in runs:
        run.stdout.close(), run.stderr.close()
    assert [code for code, _, _ in results] == [0, 0, 0], [err[-2000:] for _, _, err in results]
    assert query(dw, "SELECT count(*), count(DISTINCT event_id) FROM clickstream_events") == [(200, 200)]
    rejects = query(dw, "SELECT source_key, event_index FROM clickstream_rejected ORDER BY 1, 2")
    assert len(rejects) == len(set(rejects)) == 6 * 3 + 4
    assert {key for key, _ in rejects} == set(only_bad) | set(not_json)
    assert len(query(dw, "SELECT key FROM etl_load_log")) == len(valid) + len(only_bad) + len(not_json)
    assert sum(json.loads(out)["rows_inserted"] for _, out, _ in results) == 200


def test_wrong_warehouse_credentials_fail_the_run_in_one_line_and_mark_nothing_loaded(local_stack, s3, bucket, dw,
                                                                                      put, day):
    put(day, *batch(2, seed=5, at=day))
    secrets_client = aws.client("secretsmanager", local_stack)
    secret_id = stack.status(local_stack)["dw_secret_id"]
    original = secrets_client.get_secret_value(SecretId=secret_id)["SecretString"]
    secrets_client.put_secret_value(SecretId=secret_id,
                                    SecretString=json.dumps({**json.loads(original), "password": "not-the-password"}))
    try:
        result = _cli("etl", "--date", day.date().isoformat())
    finally:
        secrets_client.put_secret_value(SecretId=secret_id, SecretString=original)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("loading")]
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    assert "password authentication failed" in result.stderr and "not-the-password" not in result.stderr
    assert query(dw, "SELECT count(*) FROM etl_load_log") == [(0,)]


def test_two_loads_that_quarantine_the_same_object_at_once_both_commit(dw, day):
    """The second load waits on the first's reject rows; when the first commits, it replaces them (before: a
    UniqueViolation on clickstream_rejected_key failed its run)."""
    bad = warehouse.ObjectLoad("k/bad", "etag", [], [transform.Reject("k/bad", i, "no", None) for i in range(2)])
    with psycopg.connect(dw[1]) as first, psycopg.connect(dw[1]) as second, ThreadPoolExecutor(1) as pool:
        first.execute("SELECT 1")  # open a transaction: load_chunk's own becomes a savepoint, left uncommitted
        warehouse.load_chunk_isolating(first, [bad])
        waiting = pool.submit(warehouse.load_chunk_isolating, second, [bad])
        blocked_pid = second.info.backend_pid
        deadline = time.monotonic() + 30
        while not query(dw, "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'",
                        (blocked_pid,)):
            assert time.monotonic() < deadline, "the second load never waited for the first"
            time.sleep(0.05)
        first.commit()
        assert waiting.result(timeout=30)["k/bad"].rejected == 2
    assert query(dw, "SELECT event_index FROM clickstream_rejected ORDER BY 1") == [(0,), (1,)]
