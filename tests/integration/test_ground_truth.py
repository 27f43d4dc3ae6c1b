"""End to end against the ground truth: simulate (history mode) -> raw objects -> ETL -> warehouse -> report.

For fixed seeds the report's answers, from the raw table and from the rollups the ETL refreshed, equal what
the simulator knows it generated: counts per name and day, the funnel, the products and their revenue, the
sessions; bots excluded (and included on request), resent events counted once, late events on their real day,
and the activity heatmap in UTC and in Asia/Ho_Chi_Minh.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import psycopg
import pytest

from clickstream import aws
from clickstream.analytics import etl, questions, warehouse
from clickstream.shop import simulate, traffic
from clickstream.local import stack
from clickstream.shop.simulate import SimulationConfig

pytestmark = pytest.mark.integration

# Days no other test writes to; each seed gets its own.
CONFIGS = {
    7: SimulationConfig(start=date(2024, 6, 3), days=3, visitors=150, seed=7),
    8: SimulationConfig(start=date(2024, 6, 10), days=2, visitors=120, seed=8),
}
SOURCES = ("raw", "rollup")


@pytest.fixture(scope="module")
def dsns(local_stack) -> dict[str, str]:
    status = stack.status(local_stack)
    warehouse.migrate(status["dw_admin_dsn"])
    return {"admin": status["dw_admin_dsn"], "reader": status["dw_dsn"], "etl": stack.warehouse_dsn(local_stack, "etl_writer"),
            "bucket": status["raw_bucket"]}


@pytest.fixture(scope="module")
def loaded(local_stack, dsns):
    """{seed: (config, truth, etl summaries)} after simulating each config and loading its days."""
    s3 = aws.client("s3", local_stack)
    target = traffic.IngestTarget.from_templates(local_stack, s3)
    result = {}
    try:
        for seed, config in CONFIGS.items():
            forget(s3, dsns, config)
            summary = traffic.send(config, target)
            truth = simulate.ground_truth(config).as_dict()
            assert summary.events_stored == truth["events"] + truth["bots"]["events"] + truth["duplicates_sent"]
            runs = [etl.run_etl(s3, dsns["bucket"], dsns["etl"], etl.EtlRequest(date=day)) for day in days(config)]
            result[seed] = (config, truth, runs)
        yield result
    finally:
        for config in CONFIGS.values():
            forget(s3, dsns, config)


def days(config: SimulationConfig) -> list[date]:
    return [config.start + timedelta(days=n) for n in range(config.days)]


def forget(s3, dsns, config: SimulationConfig) -> None:
    """Remove the config's raw objects, rows and rollups (the session stack is shared)."""
    with psycopg.connect(dsns["admin"], autocommit=True) as conn:
        warehouse.forget_days(s3, dsns["bucket"], conn, config.start, days(config)[-1])


def report(dsns, config, source: str, tz: str = "UTC", include_bots: bool = False) -> dict:
    result = questions.report(dsns["reader"], config.start, days(config)[-1], tz=tz, include_bots=include_bots,
                              source=source)
    assert set(result["sources"].values()) == {source}
    return result


@pytest.mark.parametrize("seed", CONFIGS)
def test_the_etl_loads_each_distinct_valid_event_once(loaded, seed):
    config, truth, runs = loaded[seed]
    assert truth["duplicates_sent"] > 0 and truth["malformed_sent"] > 0
    assert sum(run["rows_inserted"] for run in runs) == truth["events"] + truth["bots"]["events"]
    assert sum(run["duplicates"] for run in runs) == truth["duplicates_sent"]  # resent events, counted once
    assert sum(run["rejected"] for run in runs) == 0  # malformed events never left the ingest
    assert all(run["remaining"] == 0 for run in runs)


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("seed", CONFIGS)
def test_event_counts_per_name_and_day_equal_the_truth(loaded, dsns, seed, source):
    config, truth, _ = loaded[seed]
    answer = report(dsns, config, source)
    assert answer["daily_event_counts"] == truth["event_counts"]
    totals = Counter()
    for counts in truth["event_counts"].values():
        totals.update(counts)
    assert answer["event_counts"] == dict(totals)
    assert sum(totals.values()) == truth["events"]


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("seed", CONFIGS)
def test_funnel_products_and_sessions_equal_the_truth(loaded, dsns, seed, source):
    config, truth, _ = loaded[seed]
    answer = report(dsns, config, source)
    assert [(step["step"], step["sessions"]) for step in answer["funnel"]] == [
        (step["step"], step["sessions"]) for step in truth["funnel"]]
    assert truth["funnel"][-1]["sessions"] > 0
    products = {row["product_id"]: {key: row[key] for key in ("views", "add_to_cart", "purchases", "revenue")}
                for row in answer["top_products"]}
    assert products == truth["products"]
    sessions = answer["sessions"]
    assert {key: sessions[key] for key in ("sessions", "bounces", "visitors", "signed_in_sessions")} == truth["sessions"]
    assert sessions["bounce_rate"] == pytest.approx(truth["sessions"]["bounces"] / truth["sessions"]["sessions"])


@pytest.mark.parametrize("source", SOURCES)
def test_bots_are_excluded_by_default_and_counted_when_asked(loaded, dsns, source):
    config, truth, _ = loaded[7]
    assert truth["bots"]["events"] > 0
    humans = report(dsns, config, source)
    everyone = report(dsns, config, source, include_bots=True)
    assert sum(everyone["event_counts"].values()) - sum(humans["event_counts"].values()) == truth["bots"]["events"]
    assert everyone["sessions"]["sessions"] - humans["sessions"]["sessions"] == truth["bots"]["sessions"]


def test_late_events_are_counted_on_the_day_they_happened(loaded, dsns):
    config, truth, _ = loaded[7]
    assert truth["late_events"] > 0
    lo = datetime.combine(config.start, datetime.min.time(), timezone.utc)
    late = questions.query(dsns["reader"], """
        SELECT count(*) AS late, count(*) FILTER (WHERE received_at::date > event_timestamp::date) AS next_day
        FROM clickstream_events
        WHERE event_timestamp >= %(lo)s AND event_timestamp < %(hi)s AND NOT is_bot
          AND received_at - event_timestamp >= interval '1 hour'""",
        {"lo": lo, "hi": lo + timedelta(days=config.days)})
    assert late.loc[0, "late"] == truth["late_events"]
    assert late.loc[0, "next_day"] > 0  # received a day later, yet counted on its own day by the test above


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("tz", ["UTC", "Asia/Ho_Chi_Minh"])
def test_peak_activity_heatmap_in_the_business_time_zone(loaded, dsns, tz, source):
    config, truth, _ = loaded[7]
    answer = report(dsns, config, source, tz=tz)
    lo, hi = (datetime.fromisoformat(answer[bound]) for bound in ("start", "end"))
    expected = Counter()
    for hour, events in truth["hourly_utc"].items():
        moment = datetime.strptime(hour, "%Y-%m-%dT%H").replace(tzinfo=timezone.utc)
        if lo <= moment < hi:
            local = moment.astimezone(ZoneInfo(tz))
            expected[(local.weekday(), local.hour)] += events
    assert {(cell["dow"], cell["hour"]): cell["events"] for cell in answer["peak_activity"]} == dict(expected)
    assert sum(expected.values()) > 0


def test_the_same_hour_moves_to_its_local_cell_in_asia_ho_chi_minh(loaded, dsns):
    config, _, _ = loaded[7]
    utc, local = (report(dsns, config, "raw", tz=tz) for tz in ("UTC", "Asia/Ho_Chi_Minh"))
    utc_cells, local_cells = ({(c["dow"], c["hour"]): c["events"] for c in r["peak_activity"]} for r in (utc, local))
    zone = ZoneInfo("Asia/Ho_Chi_Minh")
    lo = max(datetime.fromisoformat(r["start"]) for r in (utc, local))
    hi = min(datetime.fromisoformat(r["end"]) for r in (utc, local))
    wrapped = 0
    moment = lo
    while moment < hi:  # under 7 days, so each (dow, hour) cell is one clock hour
        there = moment.astimezone(zone)
        assert utc_cells.get((moment.weekday(), moment.hour)) == local_cells.get((there.weekday(), there.hour))
        wrapped += there.weekday() != moment.weekday() and bool(utc_cells.get((moment.weekday(), moment.hour)))
        moment += timedelta(hours=1)
    assert wrapped > 0  # 17:00-23:59 UTC is already the next day in Ho Chi Minh City
