"""The helpers of notebooks 04 and 05 on the test stack's warehouse, with a small simulated range loaded by the ETL:
every question read both ways, the KPIs per filter choice, and forgetting days by the admin DSN and as etl_writer."""

from __future__ import annotations

import json
from datetime import date, timedelta

import psycopg
import pytest

from clickstream import aws
from clickstream.analytics import dashboard, etl, questions, warehouse
from clickstream.ingestion import raw
from clickstream.local import stack
from clickstream.shop import simulate, traffic
from clickstream.shop.simulate import SimulationConfig

pytestmark = pytest.mark.integration
CONFIG = SimulationConfig(start=date(2035, 3, 5), days=2, visitors=40, seed=46)
FIRST, LAST = CONFIG.start, CONFIG.start + timedelta(days=CONFIG.days - 1)


@pytest.fixture(scope="module")
def loaded(local_stack, dw, tmp_path_factory):
    """(reader DSN, admin DSN, s3, bucket, truth) with CONFIG's range stored and loaded; forgotten afterwards."""
    status = stack.status(local_stack)
    s3, bucket, admin = aws.client("s3", local_stack), status["raw_bucket"], dw[0]
    truth_path = tmp_path_factory.mktemp("truth") / "truth.json"
    traffic.send(CONFIG, traffic.IngestTarget.from_templates(local_stack, s3), truth_path=truth_path)
    for n in range(CONFIG.days + 1):  # the day after too: late events
        etl.run_etl(s3, bucket, dw[1], etl.EtlRequest(date=FIRST + timedelta(days=n)))
    yield dw[2], admin, s3, bucket, json.loads(truth_path.read_text(encoding="utf-8"))
    warehouse.forget_days(s3, bucket, admin, FIRST, LAST + timedelta(days=1))


def test_compare_sources_reads_every_question_both_ways_and_finds_the_same_answers(loaded):
    reader, *_ = loaded
    compared = questions.compare_sources(reader, FIRST, LAST)
    assert list(compared.index) == list(questions.QUESTIONS)
    assert compared["same answer"].all(), compared
    assert (compared["rows (raw)"] == compared["rows (rollup)"]).all() and compared["rows (raw)"].gt(0).all()


def test_both_ways_gives_the_truths_heatmap_and_refuses_a_half_hour_zone(loaded):
    reader, *_, truth = loaded
    for tz in ("UTC", "Asia/Ho_Chi_Minh"):
        from_raw, from_rollup = questions.both_ways("peak_activity", reader, FIRST, LAST, tz)
        assert from_raw.attrs["source"] == "raw" and from_rollup.attrs["source"] == "rollup"
        assert questions.heatmap_cells(from_rollup) == questions.heatmap_cells(from_raw) == \
            simulate.truth_heatmap(truth, FIRST, LAST, tz)
    with pytest.raises(questions.AnalyticsError):
        questions.both_ways("peak_activity", reader, FIRST, LAST, "Asia/Kolkata")


def test_kpis_by_splits_the_whole_by_device_and_login_state_and_adds_the_bots(loaded):
    reader, *_, truth = loaded
    week = dashboard.Filters(FIRST, LAST)
    with psycopg.connect(reader) as conn:
        devices = dashboard.kpis_by(conn, week, "device")
        logins = dashboard.kpis_by(conn, week, "login_state")
        bots = dashboard.kpis_by(conn, week, "include_bots")
        zones = dashboard.kpis_by(conn, week, "tz", ("UTC", "Asia/Ho_Chi_Minh"))
    assert list(devices) == list(dashboard.DEVICES) and list(logins) == list(dashboard.LOGIN_STATES)
    whole = devices["all"]
    assert whole == logins["all"] == bots[False] == zones["UTC"]
    assert whole["events"] == truth["events"] > 0
    assert sum(devices[d]["events"] for d in dashboard.DEVICES[1:]) == whole["events"]
    assert logins["signed_in"]["sessions"] + logins["anonymous"]["sessions"] == whole["sessions"]
    assert bots[True]["events"] - whole["events"] == truth["bots"]["events"] > 0
    assert zones["Asia/Ho_Chi_Minh"]["events"] != whole["events"]


def test_forget_days_by_dsn_deletes_one_day_and_keeps_the_next(local_stack, dw):
    status = stack.status(local_stack)
    s3, bucket, admin = aws.client("s3", local_stack), status["raw_bucket"], dw[0]
    day = date(2035, 4, 2)
    keys = ["events/2035/04/02/09/a.json", "events/2035/04/02/23/b.json", "events/2035/04/03/00/c.json"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"{}")
    try:
        deleted = warehouse.forget_days(s3, bucket, admin, day)
        assert deleted["raw objects"] == 2 and deleted["clickstream_events"] == 0
        assert [obj["Key"] for obj in raw.list_objects(s3, bucket, "events/2035/04/")] == keys[2:]
        with psycopg.connect(admin) as conn:
            assert conn.execute("SELECT count(*) FROM rollup_pending WHERE day = %s", (day,)).fetchone() == (0,)
    finally:
        raw.delete_prefix(s3, bucket, "events/2035/04/")


def test_forget_days_as_etl_writer_the_only_login_on_aws_deletes_a_loaded_day(local_stack, dw):
    """On AWS no superuser is reachable: notebooks 04 and 05 forget their week as etl_writer."""
    admin, writer, _ = dw
    s3, bucket = aws.client("s3", local_stack), stack.status(local_stack)["raw_bucket"]
    config = SimulationConfig(start=date(2035, 5, 7), days=1, visitors=10, seed=47)
    day, prefix = config.start, raw.day_prefix(config.start)
    traffic.send(config, traffic.IngestTarget.from_templates(local_stack, s3))
    try:
        loaded = etl.run_etl(s3, bucket, writer, etl.EtlRequest(date=day))
        assert loaded["rows_inserted"] > 0
        deleted = warehouse.forget_days(s3, bucket, writer, day)
        assert deleted["clickstream_events"] == loaded["rows_inserted"]
        assert deleted["raw objects"] == loaded["objects_listed"]
        assert list(raw.list_objects(s3, bucket, prefix)) == []
        with psycopg.connect(admin) as conn:
            left = conn.execute("SELECT (SELECT count(*) FROM clickstream_events WHERE source_key ^@ %(p)s),"
                                " (SELECT count(*) FROM etl_load_log WHERE key ^@ %(p)s),"
                                " (SELECT count(*) FROM rollup_hourly_events"
                                "  WHERE (hour AT TIME ZONE 'UTC')::date = %(d)s),"
                                " (SELECT count(*) FROM rollup_pending WHERE day = %(d)s)",
                                {"p": prefix, "d": day}).fetchone()
        assert left == (0, 0, 0, 0)
    finally:
        warehouse.forget_days(s3, bucket, admin, day, day + timedelta(days=1))
