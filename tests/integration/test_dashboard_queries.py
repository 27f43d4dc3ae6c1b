"""The dashboards' queries (clickstream.analytics.dashboard) against the test stack's warehouse: every function
equals what an independent reading of clickstream_events gives (sessions by window functions in SQL here,
the rest computed in Python from the events), for several filters, on the raw table (days pending) and on
the rollups (refreshed).

Each test empties the warehouse (as test_etl does) and loads its own events of 2037 through load_chunk.
"""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import psycopg
import pytest

from clickstream.analytics import dashboard, questions, rollups, warehouse
from clickstream.analytics.dashboard import Filters
from clickstream.analytics.transform import COLUMNS
from clickstream.analytics.warehouse import ObjectLoad, load_chunk

pytestmark = pytest.mark.integration

UTC = timezone.utc
DAY0 = date(2037, 6, 1)  # a Monday
T0 = datetime.combine(DAY0, time(), UTC)
MIN = timedelta(minutes=1)
NAMES = ["page_view", "product_view", "add_to_cart", "begin_checkout", "purchase", "search"]
PRODUCTS = {"LAP-1": ("Laptop", "laptops"), "LAP-2": ("Laptop Pro", "laptops"), "MON-1": ("Monitor", "monitors"),
            "CAB-1": ("Cable", None)}
DEVICES = ["desktop", "mobile", "tablet", None]
SOURCES = [None, None, "newsletter", "google"]
CASES = [
    {},
    {"tz": "America/New_York", "login_state": "signed_in"},
    {"tz": "Asia/Kolkata", "login_state": "anonymous", "include_bots": True},
    {"device": "mobile", "include_bots": True},
    {"tz": "Europe/Berlin", "device": "desktop", "login_state": "signed_in"},
    {"tz": "Asia/Kolkata", "device": "tablet"},
    {"start": DAY0 - timedelta(days=40), "login_state": "anonymous"},  # over 840 hours: visitors by session
]


@pytest.fixture
def empty(dw, empty_warehouse):
    empty_warehouse(dw[0])
    yield dw
    empty_warehouse(dw[0])


def stored_row(at: datetime, client: str, name: str, bot: bool, device: str | None, user: str | None,
               utm: str | None, product: str | None, value: Decimal | None) -> tuple:
    """One clickstream_events row as the transform gives it (transform.COLUMNS order)."""
    product_name, category = PRODUCTS.get(product, (None, None))
    values = {"event_id": str(uuid.uuid4()), "event_timestamp": at, "event_name": name, "user_id": user,
              "identity_source": "user_id" if user else "client_id", "client_id": client, "session_id": "s",
              "context_product_id": product, "context_product_name": product_name,
              "context_product_category": category, "client_ts": at, "received_at": at, "utm_source": utm,
              "page_url": "https://shop.example.com/", "page_path": "/", "user_agent": "test",
              "device_category": "bot" if bot else device, "is_bot": bot, "value": value,
              "currency": "USD" if value is not None else None, "properties": {}, "schema_version": "1",
              "source_key": "test/dashboard"}
    return tuple(values.get(column) for column in COLUMNS)


def traffic(seed: int, clients: int = 36) -> list[tuple]:
    """Visits from the day before DAY0 to the day after DAY0 + 2: gaps of 30 minutes exactly and just over,
    hours; a client's device, login and source change between events; every 6th client a bot."""
    rng = random.Random(seed)
    rows = []
    for index in range(clients):
        t = T0 + timedelta(days=rng.randrange(-1, 4), hours=rng.randrange(24), minutes=rng.randrange(60))
        for _ in range(rng.randrange(1, 18)):
            name = rng.choice(NAMES)
            product = rng.choice(list(PRODUCTS)) if name in ("product_view", "add_to_cart", "purchase") else None
            value = Decimal(rng.randrange(1, 100_000)) / 100 if name == "purchase" else None
            rows.append(stored_row(t, f"c{index}", name, index % 6 == 0, rng.choice(DEVICES),
                                   f"u{index}" if rng.random() < 0.4 else None, rng.choice(SOURCES),
                                   product, value))
            t += rng.choice([MIN, 12 * MIN, 30 * MIN, 30 * MIN + timedelta(milliseconds=1), 5 * 60 * MIN])
    return rows


def load(etl_dsn: str, rows: list[tuple], parts: int = 3) -> None:
    """Load `rows` in `parts` chunks by load_chunk, as the ETL does (rollup deltas, days pending)."""
    with warehouse.connect(etl_dsn) as conn:
        for part in range(parts):
            load_chunk(conn, [ObjectLoad(f"events/2037/{uuid.uuid4()}.json", "etag", rows[part::parts], [])])


def refresh(etl_dsn: str) -> None:
    with warehouse.connect(etl_dsn) as conn:
        rollups.refresh_pending(conn)


# The independent answers ----------------------------------------------------------------------------------------

SESSIONS = """
WITH marked AS (
    SELECT *, CASE WHEN event_timestamp - lag(event_timestamp) OVER w <= interval '30 minutes' THEN 0 ELSE 1 END
              AS new_session
    FROM clickstream_events WINDOW w AS (PARTITION BY client_id, is_bot ORDER BY event_timestamp, event_id)
), numbered AS (
    SELECT *, sum(new_session) OVER (PARTITION BY client_id, is_bot ORDER BY event_timestamp, event_id) AS number
    FROM marked
), sessions AS (
    SELECT client_id, is_bot, number, min(event_timestamp) AS start,
           (array_agg(device_category ORDER BY event_timestamp, event_id))[1] AS device,
           (array_agg(user_id IS NOT NULL ORDER BY event_timestamp, event_id))[1] AS signed_in,
           (array_agg(utm_source ORDER BY event_timestamp, event_id))[1] AS source
    FROM numbered GROUP BY 1, 2, 3
), step1 AS (
    SELECT s.*, (SELECT min(event_timestamp) FROM numbered n WHERE (n.client_id, n.is_bot, n.number)
                 = (s.client_id, s.is_bot, s.number) AND n.event_name = 'product_view') AS t1 FROM sessions s
), step2 AS (
    SELECT s.*, (SELECT min(event_timestamp) FROM numbered n WHERE (n.client_id, n.is_bot, n.number)
                 = (s.client_id, s.is_bot, s.number) AND n.event_name = 'add_to_cart' AND n.event_timestamp > s.t1)
                AS t2 FROM step1 s
), step3 AS (
    SELECT s.*, (SELECT min(event_timestamp) FROM numbered n WHERE (n.client_id, n.is_bot, n.number)
                 = (s.client_id, s.is_bot, s.number) AND n.event_name = 'begin_checkout' AND n.event_timestamp > s.t2)
                AS t3 FROM step2 s
), step4 AS (
    SELECT s.*, (SELECT min(event_timestamp) FROM numbered n WHERE (n.client_id, n.is_bot, n.number)
                 = (s.client_id, s.is_bot, s.number) AND n.event_name = 'purchase' AND n.event_timestamp > s.t3)
                AS t4 FROM step3 s
)
SELECT client_id, is_bot, start, device, signed_in, source,
       (t1 IS NOT NULL)::int + (t2 IS NOT NULL)::int + (t3 IS NOT NULL)::int + (t4 IS NOT NULL)::int AS step
FROM step4
"""

EVENTS = ("SELECT event_timestamp AS ts, event_name AS name, client_id, is_bot, device_category AS device,"
          " user_id IS NOT NULL AS signed_in, context_product_id AS product, context_product_name AS product_name,"
          " context_product_category AS category, value FROM clickstream_events")


class Truth:
    """The answers computed from the events themselves."""

    def __init__(self, admin: str):
        with psycopg.connect(admin) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            self.events = cur.execute(EVENTS).fetchall()
            self.sessions = cur.execute(SESSIONS).fetchall()

    @staticmethod
    def bounds(f: Filters) -> tuple[datetime, datetime]:
        zone = ZoneInfo(f.tz)
        return (datetime.combine(f.start, time(), zone), datetime.combine(f.end + timedelta(days=1), time(), zone))

    def kept(self, rows: list[dict], f: Filters, ts: str) -> list[dict]:
        lo, hi = self.bounds(f)
        return [r for r in rows if lo <= r[ts] < hi and (f.include_bots or not r["is_bot"])
                and f.device in ("all", r["device"])
                and f.login_state in ("all", "signed_in" if r["signed_in"] else "anonymous")]

    def kpis(self, f: Filters) -> dict:
        events, sessions = self.kept(self.events, f, "ts"), self.kept(self.sessions, f, "start")
        viewed = sum(s["step"] >= 1 for s in sessions)
        bought = sum(s["step"] >= 4 for s in sessions)
        return {"events": len(events), "sessions": len(sessions), "visitors": len({s["client_id"] for s in sessions}),
                "product_view_sessions": viewed, "purchase_sessions": bought,
                "conversion": bought / viewed if viewed else None,
                "revenue": sum((e["value"] for e in events if e["name"] == "purchase"), Decimal(0))}

    def funnel(self, f: Filters, breakdown: str) -> list[dict]:
        label = {"none": lambda s: "all", "device": lambda s: s["device"] or "(unknown)",
                 "login_state": lambda s: "signed_in" if s["signed_in"] else "anonymous",
                 "traffic_source": lambda s: s["source"] or "(direct)"}[breakdown]
        segments: dict[str, list[int]] = defaultdict(list)
        if breakdown == "none":
            segments["all"] = []
        for s in self.kept(self.sessions, f, "start"):
            segments[label(s)].append(s["step"])
        out = []
        for segment in sorted(segments):
            previous = None
            for index, step in enumerate(questions.FUNNEL_STEPS, 1):
                reached = sum(n >= index for n in segments[segment])
                out.append({"segment": segment, "step_index": index, "step": step, "sessions": reached,
                            "conversion": reached / previous if previous else None,
                            "drop_off": None if previous is None else previous - reached})
                previous = reached
        return out

    def products(self, f: Filters, key: str = "product") -> dict:
        figures: dict = {}
        for e in self.kept(self.events, f, "ts"):
            if e["product"] is None or e["name"] not in ("product_view", "add_to_cart", "purchase"):
                continue
            row = figures.setdefault(e["product"], {"product_id": e["product"], "product_name": e["product_name"],
                                                    "category": e["category"], "views": 0, "add_to_cart": 0,
                                                    "purchases": 0, "revenue": Decimal(0)})
            row[{"product_view": "views", "add_to_cart": "add_to_cart", "purchase": "purchases"}[e["name"]]] += 1
            if e["name"] == "purchase":
                row["revenue"] += e["value"]
        for row in figures.values():
            row["conversion"] = row["purchases"] / row["views"] if row["views"] else None
        return figures

    def categories(self, f: Filters) -> dict:
        figures: dict = {}
        for p in self.products(f).values():
            row = figures.setdefault(p["category"], {"category": p["category"], "views": 0, "add_to_cart": 0,
                                                     "purchases": 0, "revenue": Decimal(0)})
            for column in ("views", "add_to_cart", "purchases", "revenue"):
                row[column] += p[column]
        for row in figures.values():
            row["conversion"] = row["purchases"] / row["views"] if row["views"] else None
        return figures

    def local(self, f: Filters, ts: datetime) -> datetime:
        return ts.astimezone(ZoneInfo(f.tz)).replace(tzinfo=None)

    def product_trend(self, f: Filters, product: str) -> list[dict]:
        days = {f.start + timedelta(days=n): {"views": 0, "add_to_cart": 0, "purchases": 0, "revenue": Decimal(0)}
                for n in range((f.end - f.start).days + 1)}
        for e in self.kept(self.events, f, "ts"):
            if e["product"] == product and e["name"] in ("product_view", "add_to_cart", "purchase"):
                row = days[self.local(f, e["ts"]).date()]
                row[{"product_view": "views", "add_to_cart": "add_to_cart", "purchase": "purchases"}[e["name"]]] += 1
                if e["name"] == "purchase":
                    row["revenue"] += e["value"]
        return [{"day": day, **row} for day, row in days.items()]

    def trend(self, f: Filters, grain: str) -> list[dict]:
        step = timedelta(hours=1) if grain == "hour" else timedelta(days=1)
        bucket = datetime.combine(f.start, time())
        buckets = {}
        while bucket < datetime.combine(f.end + timedelta(days=1), time()):
            buckets[bucket] = {"bucket": bucket, "events": 0, "sessions": 0}
            bucket += step

        def truncated(ts: datetime) -> datetime:
            moment = self.local(f, ts).replace(minute=0, second=0, microsecond=0)
            return moment if grain == "hour" else moment.replace(hour=0)

        for e in self.kept(self.events, f, "ts"):
            buckets[truncated(e["ts"])]["events"] += 1
        for s in self.kept(self.sessions, f, "start"):
            buckets[truncated(s["start"])]["sessions"] += 1
        return list(buckets.values())

    def heatmap(self, f: Filters) -> list[dict]:
        cells = {(dow, hour): 0 for dow in range(7) for hour in range(24)}
        for e in self.kept(self.events, f, "ts"):
            moment = self.local(f, e["ts"])
            cells[moment.weekday(), moment.hour] += 1
        return [{"dow": dow, "hour": hour, "events": n} for (dow, hour), n in cells.items()]


def records(frame) -> list[dict]:
    """The rows, nulls (NaN) as None, numpy and pandas scalars as Python values."""
    out = []
    for row in frame.to_dict("records"):
        out.append({k: None if isinstance(v, float) and v != v else v.to_pydatetime() if hasattr(v, "to_pydatetime")
                    else v.item() if hasattr(v, "item") else v for k, v in row.items()})
    return out


def assert_every_answer(reader: str, truth: Truth, source: str) -> None:
    """Every function for every case equals the truth; `source` (raw or rollup) read unless the time zone is
    not a whole number of hours from UTC (raw)."""
    with questions.read_only(reader) as conn:
        for case in CASES:
            f = Filters(**{"start": DAY0, "end": DAY0 + timedelta(days=2), **case})
            assert dashboard.source(conn, f) == ("raw" if f.tz == "Asia/Kolkata" else source), case
            assert dashboard.kpis(conn, f) == truth.kpis(f), case
            for breakdown in dashboard.BREAKDOWNS:
                assert records(dashboard.funnel(conn, f, breakdown)) == truth.funnel(f, breakdown), (case, breakdown)
            expected = sorted(truth.products(f).values(),
                              key=lambda r: (-r["revenue"], -r["purchases"], -r["views"], r["product_id"]))
            assert records(dashboard.products(conn, f)) == [
                {k: r[k] for k in ("product_id", "product_name", "category", "views", "add_to_cart", "purchases",
                                   "conversion", "revenue")} for r in expected], case
            expected = sorted(truth.categories(f).values(),
                              key=lambda r: (-r["revenue"], -r["views"], r["category"] is None, r["category"] or ""))
            assert records(dashboard.categories(conn, f)) == [
                {k: r[k] for k in ("category", "views", "add_to_cart", "purchases", "conversion", "revenue")}
                for r in expected], case
            for product in ("LAP-1", "CAB-1"):
                assert records(dashboard.product_trend(conn, f, product)) == truth.product_trend(f, product), case
            for grain in dashboard.GRAINS:
                assert records(dashboard.trend(conn, f, grain)) == truth.trend(f, grain), (case, grain)
            assert records(dashboard.heatmap(conn, f)) == truth.heatmap(f), case
        assert truth.kpis(Filters(DAY0, DAY0 + timedelta(days=2), include_bots=True))["events"] > \
            truth.kpis(Filters(DAY0, DAY0 + timedelta(days=2)))["events"] > 0  # the data exercise the filters


def test_every_query_equals_the_events_on_the_raw_table_and_on_the_rollups(empty):
    admin, etl_dsn, reader = empty
    rows = traffic(seed=7)
    load(etl_dsn, rows)  # pending: the raw table answers
    truth = Truth(admin)
    assert len(truth.events) == len(rows)
    assert_every_answer(reader, truth, "raw")
    refresh(etl_dsn)
    assert_every_answer(reader, truth, "rollup")
    with questions.read_only(reader) as conn:
        first, last = (min(r[1] for r in rows), max(r[1] for r in rows))
        for tz in ("UTC", "America/New_York"):
            zone = ZoneInfo(tz)
            assert dashboard.data_range(conn, tz) == (first.astimezone(zone).date(), last.astimezone(zone).date())


def test_a_late_load_after_a_refresh_changes_every_answer_exactly(empty):
    admin, etl_dsn, reader = empty
    rows = traffic(seed=11)
    load(etl_dsn, rows[::2])
    refresh(etl_dsn)
    load(etl_dsn, rows[1::2], parts=2)  # merges sessions, changes their first events
    refresh(etl_dsn)
    assert_every_answer(reader, Truth(admin), "rollup")


def test_an_empty_warehouse_has_no_range_and_zero_kpis(empty):
    with questions.read_only(empty[2]) as conn:
        conn.execute("SET jit = on")  # as a warehouse may have it (the local stack's is off)
        assert dashboard.data_range(conn, "Europe/Paris") is None
        assert conn.execute("SHOW jit").fetchone() == ("off",)  # the skipped branch must not cost a compile
        assert dashboard.kpis(conn, Filters(DAY0, DAY0)) == {
            "events": 0, "sessions": 0, "visitors": 0, "product_view_sessions": 0, "purchase_sessions": 0,
            "conversion": None, "revenue": Decimal(0)}
        assert records(dashboard.funnel(conn, Filters(DAY0, DAY0)))[0] == {
            "segment": "all", "step_index": 1, "step": "product_view", "sessions": 0, "conversion": None,
            "drop_off": None}
        assert dashboard.products(conn, Filters(DAY0, DAY0)).empty


def test_a_question_asked_again_is_planned_for_its_own_filters_never_prepared(empty):
    """psycopg prepares a statement run five times and PostgreSQL may then plan it for any parameters, where the
    optional filters ("all" or a value) cost a test per row: the read-only connections prepare nothing."""
    with questions.read_only(empty[2]) as conn:
        for _ in range(8):
            dashboard.products(conn, Filters(DAY0, DAY0))
        assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone() == (0,)


def test_filters_check_their_values_and_give_the_previous_period():
    f = Filters(date(2026, 11, 16), date(2026, 11, 22), tz="Europe/Paris")
    assert f.previous() == Filters(date(2026, 11, 9), date(2026, 11, 15), tz="Europe/Paris")
    params = f.params()
    assert params["start"] == datetime(2026, 11, 15, 23, tzinfo=UTC)
    assert params["end"] == datetime(2026, 11, 22, 23, tzinfo=UTC)
    assert (params["tz"], params["login_state"], params["device"], params["include_bots"]) == (
        "Europe/Paris", "all", "all", False)
    for bad, message in ((dict(login_state="guest"), "login_state"), (dict(device="bot"), "device"),
                         (dict(tz="Mars/Olympus"), "time zone"), (dict(include_bots="yes"), "include_bots"),
                         (dict(end=date(2026, 11, 1)), "reversed")):
        with pytest.raises(questions.AnalyticsError, match=message):
            Filters(**{"start": date(2026, 11, 16), "end": date(2026, 11, 22), **bad}).params()
