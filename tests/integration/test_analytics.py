"""The analytics SQL, the rollups and their refresh, against the test stack's warehouse.

Each test writes hand-built events into weeks of its own (from 2035 on, Mondays, far from the other tests'
days) as the superuser, marking their days pending in the same transaction as load_chunk does, and removes
its events and rollup rows afterwards: the warehouse is shared by the whole test session.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest
from psycopg import errors

from clickstream.analytics import questions, rollups, warehouse

pytestmark = pytest.mark.integration

UTC = timezone.utc
MIN = timedelta(minutes=1)
MS = timedelta(milliseconds=1)
_weeks = itertools.count()


@dataclass(frozen=True)
class Ev:
    """One hand-built event."""

    at: datetime
    name: str = "page_view"
    client: str = "c-1"
    bot: bool = False
    user: str | None = None
    product: str | None = None
    page: str | None = None
    value: str | None = None


PRODUCTS = {"LAP-001": ("Laptop One", "laptop", "Acme"), "MON-001": ("Monitor One", "monitor", "Viewco"),
            "ACC-001": ("Mouse One", "accessory", "Clicky")}
COLUMNS = ("event_id", "event_timestamp", "event_name", "user_id", "identity_source", "client_id", "session_id",
           "context_product_id", "context_product_name", "context_product_category", "context_product_brand",
           "client_ts", "received_at", "page_url", "page_path", "user_agent", "device_category", "is_bot", "value",
           "currency", "schema_version", "source_key")
INSERT = f"INSERT INTO clickstream_events ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"


def row(ev: Ev) -> tuple:
    name, category, brand = PRODUCTS.get(ev.product, (None, None, None))
    page = ev.page or ("/products/" + ev.product.lower() if ev.product else "/")
    return (uuid.uuid4(), ev.at, ev.name, ev.user, "user_id" if ev.user else "client_id", ev.client, "s",
            ev.product, name, category, brand, ev.at, ev.at, "https://shop.example.com" + page, page,
            "Googlebot/2.1" if ev.bot else "Mozilla/5.0", "bot" if ev.bot else "desktop", ev.bot,
            Decimal(ev.value) if ev.value else None, "USD" if ev.value else None, "1", "test/analytics")


class Week:
    """A test's own two weeks from a Monday: load events into them and read the answers back."""

    def __init__(self, dw, monday: date):
        self.admin, self.etl, self.reader = dw
        self.monday = monday
        self.t0 = datetime.combine(monday, datetime.min.time(), UTC)

    def at(self, day: int, hour: int = 0, minute: int = 0) -> datetime:
        return self.t0 + timedelta(days=day, hours=hour, minutes=minute)

    def load(self, *events: Ev) -> None:
        """Insert and mark the events' UTC days pending, in one transaction (as load_chunk does)."""
        with psycopg.connect(self.admin) as conn, conn.cursor() as cur:
            cur.executemany(INSERT, [row(ev) for ev in events])
            rollups.mark_pending(cur, {ev.at.astimezone(UTC).date() for ev in events})

    def refresh(self) -> list[date]:
        with warehouse.connect(self.etl) as conn:
            return rollups.refresh_pending(conn)

    def ask(self, name: str, first: int = 0, last: int = 13, tz: str = "UTC", **kwargs):
        return questions.run_question(name, self.reader, self.monday + timedelta(days=first),
                                      self.monday + timedelta(days=last), tz, **kwargs)

    def records(self, name: str, *args, **kwargs) -> list[dict]:
        """The answer's rows, null (NaN in the DataFrame) as None."""
        rows = self.ask(name, *args, **kwargs).to_dict("records")
        return [{k: None if isinstance(v, float) and v != v else v for k, v in r.items()} for r in rows]

    def sessions_rows(self) -> list[tuple]:
        with psycopg.connect(self.admin) as conn:
            return conn.execute(
                "SELECT client_id, session_start, session_end, events, funnel_step FROM rollup_sessions"
                " WHERE session_start >= %s AND session_start < %s ORDER BY client_id, session_start",
                (self.t0 - timedelta(days=1), self.t0 + timedelta(days=15))).fetchall()

    def hourly_sessions_rows(self, recomputed: bool = False) -> list[tuple]:
        """The rows of rollup_hourly_sessions around the week, as refreshed or computed again from scratch."""
        source = ("clickstream_hourly_sessions(ARRAY(SELECT DISTINCT date_trunc('hour', session_start, 'UTC')"
                  " FROM rollup_sessions))" if recomputed else "rollup_hourly_sessions")
        with psycopg.connect(self.admin) as conn:
            return conn.execute(f"SELECT r::text FROM {source} AS r WHERE hour >= %s AND hour < %s"
                                " ORDER BY hour, is_bot, prev_hour, prev_any_hour",
                                (self.t0 - timedelta(days=1), self.t0 + timedelta(days=15))).fetchall()

    def clean(self) -> None:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            warehouse.delete_days(conn, (self.t0 - timedelta(days=2)).date(), (self.t0 + timedelta(days=15)).date())
            rollups.refresh_pending(conn)


@pytest.fixture
def week(dw):
    """Two weeks from a Monday no other test uses (every 4 weeks from 2035-01-01, a Monday)."""
    current = Week(dw, date(2035, 1, 1) + timedelta(weeks=4 * next(_weeks)))
    current.clean()
    yield current
    current.clean()


def both(week: Week, name: str, *args, **kwargs) -> list[dict]:
    """The answer from the raw table, after checking the rollups give exactly the same."""
    raw = week.records(name, *args, source="raw", **kwargs)
    assert week.records(name, *args, source="rollup", **kwargs) == raw, (name, args, kwargs)
    return raw


# Funnel -----------------------------------------------------------------------------------------------------------


def test_funnel_counts_each_session_once_with_its_steps_in_order(week):
    t = week.at(1, 10)
    week.load(
        # a: add_to_cart before the product view does not count -> product_view only
        Ev(t, "add_to_cart", "a", product="LAP-001"), Ev(t + MIN, "product_view", "a", product="LAP-001"),
        # b: the whole funnel, in order
        Ev(t, "product_view", "b", product="LAP-001"), Ev(t + MIN, "add_to_cart", "b", product="LAP-001"),
        Ev(t + 2 * MIN, "begin_checkout", "b"), Ev(t + 3 * MIN, "purchase", "b", product="LAP-001", value="999.00"),
        # c: checkout without a cart step -> product_view only
        Ev(t, "product_view", "c", product="MON-001"), Ev(t + MIN, "begin_checkout", "c"),
        # d: two carts and a purchase without checkout -> add_to_cart
        Ev(t, "product_view", "d", product="MON-001"), Ev(t + MIN, "add_to_cart", "d", product="MON-001"),
        Ev(t + 2 * MIN, "add_to_cart", "d", product="MON-001"),
        Ev(t + 3 * MIN, "purchase", "d", product="MON-001", value="199.99"),
        # e: no product view at all
        Ev(t, "page_view", "e"), Ev(t + MIN, "add_to_cart", "e", product="ACC-001"),
        # f: add_to_cart at the same instant as the view is not after it -> product_view only
        Ev(t, "product_view", "f", product="ACC-001"), Ev(t, "add_to_cart", "f", product="ACC-001"),
        # g: a second session (45 min later) of b that only views: its own product_view session
        Ev(t + 48 * MIN, "product_view", "b", product="ACC-001"),
        # a bot's complete funnel is not counted
        Ev(t, "product_view", "bot", bot=True, product="LAP-001"), Ev(t + MIN, "add_to_cart", "bot", bot=True),
        Ev(t + 2 * MIN, "begin_checkout", "bot", bot=True), Ev(t + 3 * MIN, "purchase", "bot", bot=True),
    )
    week.refresh()
    funnel = both(week, "funnel")
    assert [(r["step"], r["sessions"], r["drop_off"]) for r in funnel] == [
        ("product_view", 6, None), ("add_to_cart", 2, 4), ("begin_checkout", 1, 1), ("purchase", 1, 0)]
    assert [r["conversion"] for r in funnel] == [None, 2 / 6, 1 / 2, 1.0]
    with_bots = both(week, "funnel", include_bots=True)
    assert [r["sessions"] for r in with_bots] == [7, 3, 2, 2]


def test_a_session_is_attributed_to_the_range_by_its_first_event(week):
    # starts on day 2 at 23:50 UTC, views on day 3 at 00:05: a day-2 session that reached product_view
    week.load(Ev(week.at(2, 23, 50), "page_view", "late"), Ev(week.at(3, 0, 5), "product_view", "late"))
    week.refresh()
    assert [r["sessions"] for r in both(week, "funnel", first=2, last=2)] == [1, 0, 0, 0]
    assert [r["sessions"] for r in both(week, "funnel", first=3, last=3)] == [0, 0, 0, 0]
    assert both(week, "event_counts", first=3, last=3) == [{"event_name": "product_view", "events": 1}]
    assert both(week, "sessions", first=3, last=3)[0]["sessions"] == 0


# Sessions ---------------------------------------------------------------------------------------------------------


def test_thirty_minutes_of_inactivity_ends_a_session_one_millisecond_later(week):
    t = week.at(2, 9)
    week.load(
        Ev(t, "page_view", "x"), Ev(t + 30 * MIN, "page_view", "x", user="u-1"),  # exactly 30 min: same session
        Ev(t + 60 * MIN + MS, "page_view", "x"),  # 30 min + 1 ms after the previous: a new session (a bounce)
        Ev(t, "page_view", "y"),  # a single-event session: a bounce
    )
    week.refresh()
    assert week.sessions_rows() == [
        ("x", t, t + 30 * MIN, 2, 0), ("x", t + 60 * MIN + MS, t + 60 * MIN + MS, 1, 0), ("y", t, t, 1, 0)]
    [sessions] = both(week, "sessions")
    assert sessions == {"sessions": 3, "visitors": 2, "bounces": 2, "signed_in_sessions": 1, "events": 4,
                        "bounce_rate": 2 / 3, "sessions_per_visitor": 1.5, "signed_in_share": 1 / 3}


def test_bots_are_excluded_by_default_and_included_on_request(week):
    t = week.at(4, 15)
    week.load(Ev(t, "page_view", "h", page="/"), Ev(t + MIN, "product_view", "h", product="LAP-001"),
              Ev(t, "page_view", "crawler", bot=True, page="/"),
              Ev(t + MIN, "product_view", "crawler", bot=True, product="LAP-001"),
              Ev(t + 2 * MIN, "product_view", "crawler", bot=True, product="MON-001"))
    week.refresh()
    assert both(week, "event_counts") == [{"event_name": "page_view", "events": 1},
                                          {"event_name": "product_view", "events": 1}]
    assert both(week, "event_counts", include_bots=True) == [{"event_name": "product_view", "events": 3},
                                                             {"event_name": "page_view", "events": 2}]
    assert [(r["product_id"], r["views"]) for r in both(week, "top_products")] == [("LAP-001", 1)]
    assert [(r["product_id"], r["views"]) for r in both(week, "top_products", include_bots=True)] == [
        ("LAP-001", 2), ("MON-001", 1)]
    assert both(week, "page_views") == [{"page_path": "/", "page_views": 1}]
    assert both(week, "sessions")[0]["sessions"] == 1
    assert both(week, "sessions", include_bots=True)[0]["sessions"] == 2


def test_top_products_revenue_is_exact_and_conversion_is_purchases_over_views(week):
    t = week.at(3, 12)
    events = [Ev(t + i * MIN, "product_view", f"v{i}", product="LAP-001") for i in range(4)]
    events += [Ev(t + 10 * MIN, "add_to_cart", "v0", product="LAP-001"),
               Ev(t + 11 * MIN, "purchase", "v0", product="LAP-001", value="0.10"),
               Ev(t + 12 * MIN, "purchase", "v1", product="LAP-001", value="0.20"),
               Ev(t + 13 * MIN, "purchase", "v1", product="ACC-001", value="1234.56")]
    week.load(*events)
    week.refresh()
    products = both(week, "top_products")
    assert [(p["product_id"], p["views"], p["add_to_cart"], p["purchases"], p["revenue"]) for p in products] == [
        ("ACC-001", 0, 0, 1, Decimal("1234.56")), ("LAP-001", 4, 1, 2, Decimal("0.30"))]
    assert products[0]["view_to_purchase"] is None and products[1]["view_to_purchase"] == 0.5
    assert (products[1]["product_name"], products[1]["category"], products[1]["brand"]) == PRODUCTS["LAP-001"]
    assert [p["product_id"] for p in both(week, "top_products", limit=1)] == ["ACC-001"]
    categories = both(week, "product_categories")
    assert [(c["category"], c["products"], c["revenue"]) for c in categories] == [
        ("accessory", 1, Decimal("1234.56")), ("laptop", 1, Decimal("0.30"))]


# Time zones -------------------------------------------------------------------------------------------------------


def test_the_heatmap_follows_the_business_time_zone(week):
    sunday = 6
    week.load(
        Ev(week.at(0, 1), "page_view", "m"),  # Mon 01:00 UTC = Mon 08:00 in Ho Chi Minh City (UTC+7)
        Ev(week.at(sunday, 16, 30), "page_view", "s"),  # Sun 16:30 UTC = Sun 23:30 there
        Ev(week.at(sunday, 17, 30), "page_view", "s"),  # Sun 17:30 UTC = Mon 00:30 there: the week wraps
        Ev(week.at(-1, 18), "page_view", "early"),  # Sun 18:00 UTC the day before = Mon 01:00 there
    )
    week.refresh()
    cells = lambda rows: [(r["dow"], r["hour"], r["events"]) for r in rows]  # noqa: E731
    assert cells(both(week, "peak_activity", 0, 6)) == [(0, 1, 1), (6, 16, 1), (6, 17, 1)]
    assert cells(both(week, "peak_activity", 0, 6, tz="Asia/Ho_Chi_Minh")) == [(0, 1, 1), (0, 8, 1), (6, 23, 1)]
    assert cells(both(week, "peak_activity", 0, 7, tz="Asia/Ho_Chi_Minh")) == [(0, 0, 1), (0, 1, 1), (0, 8, 1),
                                                                               (6, 23, 1)]
    days = lambda rows: [(r["day"], r["events"]) for r in rows]  # noqa: E731
    monday = week.monday
    assert days(both(week, "daily_event_counts", 0, 7, tz="Asia/Ho_Chi_Minh")) == [
        (monday, 2), (monday + timedelta(days=6), 1), (monday + timedelta(days=7), 1)]
    # India is UTC+5:30: the UTC-hour rollups cannot answer, auto reads the events table
    kolkata = week.ask("peak_activity", 0, 6, tz="Asia/Kolkata")
    assert kolkata.attrs["source"] == "raw"
    assert cells(kolkata.to_dict("records")) == [(0, 6, 1), (6, 22, 1), (6, 23, 1)]
    with pytest.raises(questions.AnalyticsError, match="not a whole number of hours"):
        week.ask("peak_activity", 0, 6, tz="Asia/Kolkata", source="rollup")
    assert week.ask("funnel", 0, 6, tz="Asia/Kolkata").attrs["source"] == "rollup"  # sessions keep exact times


# Rollups == raw ---------------------------------------------------------------------------------------------------


def random_traffic(week: Week, seed: int, clients: int = 40) -> list[Ev]:
    """Sessions over days 1-4 with gaps of exactly 30 min, just over, and long, crossing midnights."""
    rng = random.Random(seed)
    names = ["page_view", "product_view", "add_to_cart", "begin_checkout", "purchase", "search", "click"]
    events = []
    for index in range(clients):
        client, bot = f"r{index}", index % 9 == 0
        user = f"u{index}" if index % 3 == 0 else None
        t = week.at(1, rng.randrange(24), rng.randrange(60)) + rng.randrange(60_000) * MS
        for _ in range(rng.randrange(1, 25)):
            name = rng.choice(names)
            product = rng.choice(list(PRODUCTS)) if name in ("product_view", "add_to_cart", "purchase") else None
            value = f"{rng.randrange(1, 200_000) / 100:.2f}" if name == "purchase" else None
            page = rng.choice(["/", "/cart", "/search", None]) if not product else None
            events.append(Ev(t, name, client, bot, user if rng.random() < 0.5 else None, product, page, value))
            t += rng.choice([MS, 5 * MIN, 29 * MIN, 30 * MIN, 30 * MIN + MS, 3 * 60 * MIN, 20 * 60 * MIN])
    return events


QUESTION_CASES = [{}, {"include_bots": True}, {"tz": "Asia/Ho_Chi_Minh"}, {"first": 2, "last": 2},
                  {"first": 2, "last": 3, "tz": "America/New_York", "include_bots": True}]


def test_rollups_answer_every_question_exactly_as_the_events_table(week):
    events = random_traffic(week, seed=1)
    week.load(*events)
    assert {ev.at.date() for ev in events} <= set(week.refresh())  # and any day other tests left pending
    for case in QUESTION_CASES:
        for name in questions.QUESTIONS:
            assert week.ask(name, source="auto", **case).attrs["source"] == "rollup", (name, case)
            both(week, name, **case)
    assert both(week, "event_counts")  # the scenario is not empty


def test_refresh_is_exact_when_days_load_out_of_order(week):
    events = random_traffic(week, seed=2, clients=60)
    by_day: dict[date, list[Ev]] = {}
    for ev in events:
        by_day.setdefault(ev.at.date(), []).append(ev)
    days = sorted(by_day)
    assert len(days) >= 3
    for day in [days[2], days[0], *days[3:], days[1]]:  # a later day first, the bridging day last
        week.load(*by_day[day])
        assert day in week.refresh()
        for case in QUESTION_CASES[:3]:
            for name in questions.QUESTIONS:
                both(week, name, **case)
    with psycopg.connect(week.admin) as conn:
        direct = conn.execute(
            "SELECT client_id, session_start, session_end, events, funnel_step FROM clickstream_sessions(%s, %s)"
            " ORDER BY client_id, session_start", (week.t0 - timedelta(days=1), week.t0 + timedelta(days=15))).fetchall()
    assert week.sessions_rows() == direct
    hourly = week.hourly_sessions_rows()
    assert hourly and hourly == week.hourly_sessions_rows(recomputed=True)


def test_session_questions_read_every_session_when_the_range_is_not_whole_utc_hours_or_long(week):
    week.load(*random_traffic(week, seed=3))
    week.refresh()
    for name in ("funnel", "sessions"):
        assert both(week, name, 0, 6, tz="Asia/Kolkata")  # starts at 18:30 UTC: rollup_sessions
        assert both(week, name, 2, 3, tz="Asia/Kathmandu", include_bots=True)
        assert both(week, name, -30, 13)  # 44 days: longer than the hourly rollup's 840 hours
    assert both(week, "sessions", 0, 6, tz="Asia/Kolkata")[0]["sessions"] > 0


def test_a_client_with_bot_and_browser_sessions_is_one_visitor_when_bots_are_included(week):
    week.load(Ev(week.at(1, 8), "page_view", "m"), Ev(week.at(1, 12), "page_view", "m", bot=True),
              Ev(week.at(2, 9), "page_view", "m"), Ev(week.at(2, 9), "page_view", "m", bot=True),
              Ev(week.at(3, 9), "page_view", "m", bot=True))
    week.refresh()
    assert both(week, "sessions", 0, 6)[0]["visitors"] == 1
    assert both(week, "sessions", 0, 6, include_bots=True)[0]["visitors"] == 1
    assert both(week, "sessions", 2, 3, include_bots=True)[0]["sessions"] == 3
    assert both(week, "sessions", 2, 3, include_bots=True)[0]["visitors"] == 1
    assert week.hourly_sessions_rows() == week.hourly_sessions_rows(recomputed=True)


def test_a_session_across_midnight_is_merged_when_the_earlier_day_loads_later(week):
    before, after = week.at(2, 23, 50), week.at(3, 0, 10)
    week.load(Ev(after, "add_to_cart", "n", product="LAP-001"), Ev(after + MIN, "begin_checkout", "n"))
    week.refresh()
    assert week.sessions_rows() == [("n", after, after + MIN, 2, 0)]
    week.load(Ev(before, "product_view", "n", product="LAP-001"))
    assert before.date() in week.refresh()
    assert week.sessions_rows() == [("n", before, after + MIN, 3, 3)]
    # an event between two sessions of a day joins them (gaps of exactly 30 minutes)
    week.load(Ev(week.at(5, 10), "page_view", "j"), Ev(week.at(5, 11), "page_view", "j"))
    week.refresh()
    assert [r[3] for r in week.sessions_rows() if r[0] == "j"] == [1, 1]
    week.load(Ev(week.at(5, 10, 30), "product_view", "j", product="MON-001"))
    week.refresh()
    assert [r[1:4] for r in week.sessions_rows() if r[0] == "j"] == [(week.at(5, 10), week.at(5, 11), 3)]


def test_a_crash_between_load_and_refresh_leaves_the_day_pending_and_answers_exact(week, monkeypatch):
    week.load(Ev(week.at(1, 8), "page_view", "p"))
    week.refresh()
    week.load(Ev(week.at(1, 9), "page_view", "q"), Ev(week.at(1, 9, 5), "page_view", "q"))  # no refresh: a crash
    with psycopg.connect(week.admin) as conn:
        assert week.at(1).date() in rollups.pending_days(conn)
    auto = week.ask("event_counts")
    assert auto.attrs["source"] == "raw" and auto.to_dict("records") == [{"event_name": "page_view", "events": 3}]
    assert week.records("event_counts", source="rollup") == [{"event_name": "page_view", "events": 1}]

    # a refresh that fails half-way changes nothing and keeps the day pending
    monkeypatch.setattr(rollups, "_SESSIONS", [*rollups._SESSIONS, "SELECT 1 / 0"])
    with pytest.raises(errors.DivisionByZero):
        week.refresh()
    with psycopg.connect(week.admin) as conn:
        assert week.at(1).date() in rollups.pending_days(conn)
    assert week.records("event_counts", source="rollup") == [{"event_name": "page_view", "events": 1}]
    monkeypatch.undo()

    assert week.at(1).date() in week.refresh()
    assert week.ask("event_counts").attrs["source"] == "rollup"
    assert both(week, "sessions")[0]["sessions"] == 2


def test_refresh_refuses_a_connection_inside_a_transaction(dw):
    with warehouse.connect(dw[1]) as conn:
        conn.execute("SELECT 1")
        with pytest.raises(ValueError, match="outside a transaction"):
            rollups.refresh_pending(conn)


# Permissions ------------------------------------------------------------------------------------------------------


def test_the_reader_reads_the_rollups_but_cannot_change_or_refresh_them(dw):
    _, etl_dsn, reader_dsn = dw
    tables = (*rollups.ROLLUP_TABLES, "rollup_pending")
    with psycopg.connect(reader_dsn) as conn:
        for table in tables:
            conn.execute(f"SELECT count(*) FROM {table}")
        conn.execute("SELECT count(*) FROM clickstream_sessions('2035-01-01', '2035-01-02')")
        for statement in ("DELETE FROM rollup_sessions", "INSERT INTO rollup_pending (day) VALUES ('2035-01-01')",
                          "LOCK TABLE rollup_pending IN EXCLUSIVE MODE"):
            with pytest.raises(errors.InsufficientPrivilege), conn.transaction():
                conn.execute(statement)
    with warehouse.connect(etl_dsn) as conn:  # the ETL's role can do everything a refresh does
        rollups.refresh_pending(conn)
        for table in tables:
            conn.execute(f"SELECT count(*) FROM {table}")
        conn.rollback()


def test_report_and_the_cli_give_one_json_object(week, local_stack):
    t = week.at(2, 14)
    week.load(Ev(t, "product_view", "k", product="MON-001"), Ev(t + MIN, "add_to_cart", "k", product="MON-001"),
              Ev(t + 2 * MIN, "begin_checkout", "k"),
              Ev(t + 3 * MIN, "purchase", "k", product="MON-001", value="249.50"),
              Ev(t + 4 * MIN, "page_view", "k", page="/thanks"))
    week.refresh()
    first, last = week.monday, week.monday + timedelta(days=6)
    result = questions.report(week.reader, first, last)
    assert result["event_counts"] == {"add_to_cart": 1, "begin_checkout": 1, "page_view": 1, "product_view": 1,
                                      "purchase": 1}
    assert result["daily_event_counts"] == {str(t.date()): result["event_counts"]}
    assert [(s["step"], s["sessions"]) for s in result["funnel"]] == [
        ("product_view", 1), ("add_to_cart", 1), ("begin_checkout", 1), ("purchase", 1)]
    assert result["funnel_conversion"] == 1.0
    assert result["top_products"] == [{"product_id": "MON-001", "product_name": "Monitor One", "category": "monitor",
                                       "brand": "Viewco", "views": 1, "add_to_cart": 1, "purchases": 1,
                                       "revenue": "249.50", "view_to_purchase": 1.0}]
    assert result["peak_activity"] == [{"dow": 2, "hour": 14, "events": 5}]
    assert result["sessions"]["sessions"] == 1 and result["sessions"]["bounce_rate"] == 0.0
    assert set(result["sources"].values()) == {"rollup"}
    assert questions.report(week.reader, first, last, source="raw") == {
        **result, "sources": {name: "raw" for name in questions.QUESTIONS}}

    cli = subprocess.run([sys.executable, "-m", "clickstream.cli", "report", "--from", str(first), "--to", str(last),
                          "--json"], capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == json.loads(json.dumps(result))
    assert f"report from {first} to {last} (UTC)" in cli.stderr
    text = subprocess.run([sys.executable, "-m", "clickstream.cli", "report", "--from", str(first), "--to",
                           str(last), "--tz", "Mars/Olympus"], capture_output=True, text=True, env=dict(os.environ),
                          timeout=120)
    assert text.returncode == 2 and "unknown time zone 'Mars/Olympus'" in text.stderr
