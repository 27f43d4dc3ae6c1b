"""Argument checks of clickstream.analytics.questions and the text report (no database)."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from clickstream.analytics import questions, rollups
from clickstream.analytics.questions import AnalyticsError

UTC = timezone.utc


def test_a_period_runs_from_the_first_midnight_to_the_midnight_after_the_last_day_in_the_zone():
    assert questions.period(date(2026, 11, 16), date(2026, 11, 22)) == (
        datetime(2026, 11, 16, tzinfo=UTC), datetime(2026, 11, 23, tzinfo=UTC))
    assert questions.period(date(2026, 11, 16), date(2026, 11, 16), "Asia/Ho_Chi_Minh") == (
        datetime(2026, 11, 15, 17, tzinfo=UTC), datetime(2026, 11, 16, 17, tzinfo=UTC))
    # a day of 23 hours: Paris springs forward on 2026-03-29
    start, end = questions.period(date(2026, 3, 29), date(2026, 3, 29), "Europe/Paris")
    assert (start, end - start) == (datetime(2026, 3, 28, 23, tzinfo=UTC), (end - start).__class__(hours=23))


@pytest.mark.parametrize(("args", "message"), [
    ((date(2026, 11, 22), date(2026, 11, 16)), "the range is reversed: from 2026-11-22 is after to 2026-11-16"),
    ((date(2026, 11, 16), date(2026, 11, 22), "Mars/Olympus"), "unknown time zone 'Mars/Olympus'"),
    ((date(2026, 11, 16), date(2026, 11, 22), "../etc/passwd"), "unknown time zone"),
    ((datetime(2026, 11, 16), date(2026, 11, 22)), "must be dates"),
    (("2026-11-16", date(2026, 11, 22)), "must be dates"),
])
def test_bad_ranges_and_zones_are_refused_with_a_clear_message(args, message):
    with pytest.raises(AnalyticsError, match=message.replace("(", r"\(")):
        questions.period(*args)


@pytest.mark.parametrize(("tz", "whole"), [
    ("UTC", True), ("Asia/Ho_Chi_Minh", True), ("Europe/Paris", True), ("America/New_York", True),
    ("Asia/Kolkata", False), ("Asia/Kathmandu", False), ("Australia/Lord_Howe", False),
])
def test_whole_hour_offsets_over_a_year(tz, whole):
    assert questions.whole_hour_offsets(tz, datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)) is whole


def test_lord_howe_is_whole_hours_only_in_its_summer():
    # UTC+11 in its (southern) summer, UTC+10:30 from April to October
    assert questions.whole_hour_offsets("Australia/Lord_Howe", datetime(2026, 1, 1, tzinfo=UTC),
                                        datetime(2026, 2, 1, tzinfo=UTC))
    assert not questions.whole_hour_offsets("Australia/Lord_Howe", datetime(2026, 5, 1, tzinfo=UTC),
                                            datetime(2026, 6, 1, tzinfo=UTC))


@pytest.mark.parametrize(("name", "source", "tz", "pending", "chosen"), [
    ("event_counts", "auto", "UTC", False, "rollup"),
    ("event_counts", "auto", "UTC", True, "raw"),
    ("peak_activity", "auto", "Asia/Kolkata", False, "raw"),
    ("funnel", "auto", "Asia/Kolkata", False, "rollup"),
    ("sessions", "raw", "UTC", False, "raw"),
    ("sessions", "rollup", "UTC", True, "rollup"),
])
def test_choose_source(name, source, tz, pending, chosen):
    start, end = datetime(2026, 11, 16, tzinfo=UTC), datetime(2026, 11, 23, tzinfo=UTC)
    assert questions.choose_source(name, source, tz, start, end, pending) == chosen


def test_choose_source_refuses_what_the_rollups_cannot_answer():
    start, end = datetime(2026, 11, 16, tzinfo=UTC), datetime(2026, 11, 23, tzinfo=UTC)
    with pytest.raises(AnalyticsError, match="not a whole number of hours"):
        questions.choose_source("top_products", "rollup", "Asia/Kolkata", start, end, False)
    with pytest.raises(AnalyticsError, match="source must be one of auto, raw, rollup"):
        questions.choose_source("top_products", "cache", "UTC", start, end, False)


def test_every_question_has_a_raw_and_a_rollup_query_with_the_same_columns():
    for name in questions.QUESTIONS:
        raw, rollup = questions.load_sql(name, "raw"), questions.load_sql(name, "rollup")
        assert "clickstream_events" in raw or "clickstream_sessions(" in raw, name
        assert "rollup_" in rollup and "clickstream_events" not in rollup, name
    with pytest.raises(AnalyticsError, match="unknown question 'revenue'"):
        questions.load_sql("revenue")


def test_resolve_range_with_one_or_both_dates_needs_no_database():
    assert questions.resolve_range("unused", date(2026, 11, 16), date(2026, 11, 18)) == (
        date(2026, 11, 16), date(2026, 11, 18))
    assert questions.resolve_range("unused", date(2026, 11, 16), None) == (date(2026, 11, 16), date(2026, 11, 22))
    assert questions.resolve_range("unused", None, date(2026, 11, 22)) == (date(2026, 11, 16), date(2026, 11, 22))
    with pytest.raises(AnalyticsError, match="unknown time zone"):
        questions.resolve_range("unused", date(2026, 11, 16), None, "Nowhere/City")


def test_day_blocks_group_consecutive_days():
    d = lambda n: date(2026, 11, n)  # noqa: E731
    assert rollups.day_blocks([d(5), d(1), d(2), d(3), d(3), d(9)]) == [(d(1), d(3)), (d(5), d(5)), (d(9), d(9))]
    assert rollups.day_blocks([]) == []


SAMPLE_REPORT = {
    "from": "2026-11-16", "to": "2026-11-22", "tz": "Asia/Ho_Chi_Minh", "include_bots": False,
    "start": "2026-11-15T17:00:00+00:00", "end": "2026-11-22T17:00:00+00:00",
    "event_counts": {"page_view": 120, "product_view": 80, "add_to_cart": 20, "begin_checkout": 8, "purchase": 5},
    "daily_event_counts": {"2026-11-16": {"page_view": 60, "purchase": 2}, "2026-11-17": {"page_view": 60,
                                                                                        "purchase": 3}},
    "page_views": [{"page_path": "/", "page_views": 70}, {"page_path": "/products/x", "page_views": 50}],
    "top_products": [
        {"product_id": "LAP-001", "product_name": "Laptop", "category": "laptop", "brand": "Acme", "views": 40,
         "add_to_cart": 10, "purchases": 3, "revenue": "2999.97", "view_to_purchase": 0.075},
        {"product_id": "ACC-001", "product_name": "Mouse", "category": "accessory", "brand": "Clicky", "views": 0,
         "add_to_cart": 0, "purchases": 2, "revenue": "39.98", "view_to_purchase": None}],
    "categories": [{"category": "laptop", "products": 1, "views": 40, "add_to_cart": 10, "purchases": 3,
                    "revenue": "2999.97", "view_to_purchase": 0.075}],
    "funnel": [{"step": "product_view", "sessions": 50, "conversion": None, "drop_off": None},
               {"step": "add_to_cart", "sessions": 15, "conversion": 0.3, "drop_off": 35},
               {"step": "begin_checkout", "sessions": 6, "conversion": 0.4, "drop_off": 9},
               {"step": "purchase", "sessions": 4, "conversion": 4 / 6, "drop_off": 2}],
    "funnel_conversion": 0.08,
    "peak_activity": [{"dow": 0, "hour": 9, "events": 30}, {"dow": 6, "hour": 23, "events": 45},
                      {"dow": 3, "hour": 0, "events": 1}],
    "sessions": {"sessions": 90, "visitors": 60, "bounces": 30, "signed_in_sessions": 27, "events": 233,
                 "bounce_rate": 1 / 3, "sessions_per_visitor": 1.5, "signed_in_share": 0.3},
    "sources": {"event_counts": "rollup", "funnel": "rollup"},
}


def test_format_report_prints_every_table():
    text = questions.format_report(SAMPLE_REPORT, top=2)
    for title in ("Events by name", "Events per day", "Page views (top 2)", "Top products by revenue (top 2 of 2)",
                  "Categories", "Funnel", "Peak activity (busiest 2 hours, Asia/Ho_Chi_Minh)", "Sessions"):
        assert title in text, title
    assert "2999.97" in text and "7.5%" in text and "66.7%" in text and "33.3%" in text
    assert questions.REVENUE_CLAIM in text.split("Top products by revenue")[1].split("Categories")[0]
    busiest = text.split("Peak activity")[1]
    assert busiest.index("Sun") < busiest.index("Mon") and "Thu" not in busiest
    assert "product view -> purchase 8.0%" in text and text.endswith("read from: rollup")


def test_format_report_of_an_empty_range():
    empty = {**SAMPLE_REPORT, "event_counts": {}, "daily_event_counts": {}, "page_views": [], "top_products": [],
             "categories": [], "peak_activity": [], "funnel_conversion": None,
             "funnel": [{"step": s, "sessions": 0, "conversion": None, "drop_off": None if s == "product_view" else 0}
                        for s in questions.FUNNEL_STEPS],
             "sessions": {"sessions": 0, "visitors": 0, "bounces": 0, "signed_in_sessions": 0, "events": 0,
                          "bounce_rate": None, "sessions_per_visitor": None, "signed_in_share": None}}
    text = questions.format_report(empty)
    assert text.count("(no data)") == 6


@pytest.mark.parametrize(("start", "end", "tz"), [
    (date(2026, 11, 16), date(9999, 12, 31), "UTC"),  # the day after the last day is past year 9999
    (date(9999, 12, 31), date(9999, 12, 31), "America/New_York"),
    (date(1, 1, 1), date(1, 1, 7), "Asia/Tokyo"),  # 0001-01-01 00:00 +09:00 is before year 1 in UTC
])
def test_a_range_beyond_representable_timestamps_is_an_analytics_error(start, end, tz):
    with pytest.raises(AnalyticsError, match="beyond the timestamps the warehouse can hold"):
        questions.period(start, end, tz)


def test_the_extreme_representable_ranges_still_give_a_period():
    assert questions.period(date(1, 1, 1), date(1, 1, 1)) == (datetime(1, 1, 1, tzinfo=UTC), datetime(1, 1, 2, tzinfo=UTC))
    assert questions.period(date(9999, 12, 30), date(9999, 12, 30), "America/New_York")[1] == datetime(
        9999, 12, 31, 5, tzinfo=UTC)


def test_resolve_range_past_the_calendar_is_an_analytics_error():
    with pytest.raises(AnalyticsError, match="beyond"):
        questions.resolve_range("unused", date(9999, 12, 30), None)
    with pytest.raises(AnalyticsError, match="beyond"):
        questions.resolve_range("unused", None, date(1, 1, 3))
