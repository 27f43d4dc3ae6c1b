"""Incremental rollups (issue 11): loads add deltas, the refresh folds them in; the rollups stay equal to a full
rebuild and to the raw answers, against the test stack's warehouse.

Each test empties the warehouse tables (as test_etl does) and loads events of 2038 through load_chunk, the ETL's
own chunk load, from raw objects built as the ingest stores them.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import uuid
from datetime import date, datetime, timedelta, timezone

import psycopg
import pytest

from clickstream.analytics import questions, rollups, warehouse
from clickstream.shop import samples
from clickstream.analytics.transform import transform_object
from clickstream.analytics.warehouse import ObjectLoad, load_chunk

pytestmark = pytest.mark.integration

UTC = timezone.utc
T0 = datetime(2038, 3, 1, tzinfo=UTC)  # a Monday
MIN = timedelta(minutes=1)
MS = timedelta(milliseconds=1)
BOT_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
NAMES = ["page_view", "product_view", "add_to_cart", "begin_checkout", "purchase", "search", "click"]
CASES = [{}, {"include_bots": True}, {"tz": "Asia/Ho_Chi_Minh"}, {"tz": "America/New_York", "include_bots": True}]


@pytest.fixture
def empty(dw, empty_warehouse):
    empty_warehouse(dw[0])
    yield dw
    empty_warehouse(dw[0])


def event(at: datetime, client: str, name: str = "page_view", bot: bool = False, rng: random.Random | None = None,
          user: str | None = None, event_id: str | None = None) -> dict:
    """One stored event (as the ingest writes it) happening at `at` (no sent_ts: event_timestamp = received_at)."""
    rng = rng or random.Random(f"{at}{client}{name}")
    body = samples.canonical_event(name, rng, at, client_id=client, user_id=user,
                                   user_login_state="logged_in" if user else "anonymous")
    del body["sent_ts"]
    if event_id:
        body["event_id"] = event_id
    stamp = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"schema_version": "1", "source": "canonical", "event": body,
            "server": {"received_at": stamp, "request_id": "r", "api_request_id": None, "api_id": None,
                       "stage": None, "user_agent": BOT_UA if bot else BROWSER_UA, "source_ip_prefix": None},
            "legacy": None}


def broken(at: datetime) -> dict:
    """A stored event the contract rejects (no client_id)."""
    stored = event(at, "x")
    del stored["event"]["client_id"]
    return stored


def obj(*events: dict) -> ObjectLoad:
    key = f"events/2038/{uuid.uuid4()}.json"
    raw_object = {"schema_version": "1", "object_id": str(uuid.uuid4()), "received_at": "2038-03-01T00:00:00.000Z",
                  "request_id": "r", "event_count": len(events), "events": list(events)}
    transformed = transform_object(raw_object, key)
    return ObjectLoad(key, "etag", transformed.rows, transformed.rejects)


def load(dsn: str, *objects: ObjectLoad) -> dict:
    with warehouse.connect(dsn) as conn:
        return load_chunk(conn, list(objects))


def refresh(dsn: str) -> list[date]:
    with warehouse.connect(dsn) as conn:
        return rollups.refresh_pending(conn)


def snapshot(admin: str) -> dict[str, list[str]]:
    with psycopg.connect(admin) as conn:
        return {table: [r[0] for r in conn.execute(f"SELECT t::text FROM {table} t ORDER BY 1")]
                for table in rollups.ROLLUP_TABLES}


def assert_exact(dw, first: date = T0.date() - timedelta(days=8), last: date = T0.date() + timedelta(days=8)):
    """Refreshed rollups equal a full rebuild, and every question answers the same from raw and rollups."""
    admin, etl_dsn, reader = dw
    refresh(etl_dsn)
    incremental = snapshot(admin)
    assert not any(incremental[table] for table in rollups.DELTA_TABLES)
    with warehouse.connect(etl_dsn) as conn:
        rollups.rebuild(conn)
    assert snapshot(admin) == incremental
    for case in CASES:
        for name in questions.QUESTIONS:
            raw = records(questions.run_question(name, reader, first, last, source="raw", **case))
            assert records(questions.run_question(name, reader, first, last, source="rollup", **case)) == raw, (
                name, case)
            assert questions.run_question(name, reader, first, last, **case).attrs["source"] == "rollup"


def records(frame) -> list[dict]:
    """The answer's rows, null (NaN in the DataFrame) as None."""
    return [{k: None if isinstance(v, float) and v != v else v for k, v in r.items()} for r in frame.to_dict("records")]


def sessions(admin: str, client: str) -> list[tuple]:
    with psycopg.connect(admin) as conn:
        return conn.execute("SELECT session_start, session_end, events FROM rollup_sessions WHERE client_id = %s"
                            " ORDER BY session_start", (client,)).fetchall()


def test_an_event_that_merges_two_sessions_joins_them(empty):
    admin, etl_dsn, _ = empty
    a, b = T0 + timedelta(hours=10), T0 + timedelta(hours=11)
    load(etl_dsn, obj(event(a, "m"), event(b, "m", "product_view")), obj(event(b + 5 * MIN, "n")))
    assert_exact(empty)
    assert sessions(admin, "m") == [(a, a, 1), (b, b, 1)]
    load(etl_dsn, obj(event(a + 30 * MIN, "m", "click")))  # exactly 30 minutes from both: one session
    assert_exact(empty)
    assert sessions(admin, "m") == [(a, b, 3)]
    load(etl_dsn, obj(event(b + 30 * MIN + MS, "m")))  # 30 minutes and 1 ms later: a new session
    assert_exact(empty)
    assert sessions(admin, "m") == [(a, b, 3), (b + 30 * MIN + MS, b + 30 * MIN + MS, 1)]


def test_a_session_across_midnight_and_a_late_event_for_an_old_day(empty):
    admin, etl_dsn, _ = empty
    before, after = T0 + timedelta(days=2, hours=23, minutes=50), T0 + timedelta(days=3, minutes=10)
    load(etl_dsn, obj(event(after, "n", "add_to_cart"), event(after + MIN, "n", "begin_checkout")))
    assert_exact(empty)
    load(etl_dsn, obj(event(before, "n", "product_view")))
    assert_exact(empty)
    assert sessions(admin, "n") == [(before, after + MIN, 3)]
    with psycopg.connect(admin) as conn:
        assert conn.execute("SELECT funnel_step FROM rollup_sessions WHERE client_id = 'n'").fetchall() == [(3,)]
    late = T0 - timedelta(days=5)  # days before anything else: a session of its own, the next one's previous
    load(etl_dsn, obj(event(late, "n", "page_view"), event(late + timedelta(days=10), "n", "purchase")))
    assert_exact(empty)
    assert len(sessions(admin, "n")) == 3


def test_resends_and_quarantines_add_nothing(empty):
    admin, etl_dsn, _ = empty
    first = obj(*(event(T0 + timedelta(hours=h), f"c{h % 3}", NAMES[h % len(NAMES)]) for h in range(12)))
    counts = load(etl_dsn, first)
    assert counts[first.key].rows_inserted == 12
    refresh(etl_dsn)
    before = snapshot(admin)
    again = load(etl_dsn, ObjectLoad("events/2038/resent.json", "etag", first.rows, []))
    assert again["events/2038/resent.json"].rows_inserted == 0 and again["events/2038/resent.json"].duplicates == 12
    quarantined = obj(broken(T0 + timedelta(hours=3)), broken(T0 + timedelta(hours=4)))
    assert load(etl_dsn, quarantined)[quarantined.key].rejected == 2
    refresh(etl_dsn)
    assert snapshot(admin) == before
    # a chunk of old and new ids (the staging path): only the new rows count
    mixed = obj(*(event(T0 + timedelta(hours=h), f"c{h % 3}", NAMES[h % len(NAMES)]) for h in range(6, 15)),
                broken(T0))
    result = load(etl_dsn, mixed)[mixed.key]
    assert (result.rows_inserted, result.duplicates, result.rejected) == (3, 6, 1)
    assert_exact(empty, T0.date(), T0.date())
    with psycopg.connect(admin) as conn:
        assert conn.execute("SELECT sum(events)::int FROM rollup_hourly_events").fetchone() == (15,)


def test_bot_and_browser_sessions_of_one_client_keep_their_previous_sessions(empty):
    _, etl_dsn, _ = empty
    t = T0 + timedelta(days=1, hours=8)
    load(etl_dsn, obj(event(t, "b"), event(t + timedelta(hours=2), "b", bot=True), event(t + timedelta(hours=4), "b")))
    assert_exact(empty)
    load(etl_dsn, obj(event(t + timedelta(hours=1), "b", bot=True), event(t + timedelta(hours=3), "b")))
    assert_exact(empty)
    load(etl_dsn, obj(event(t + timedelta(hours=2, minutes=20), "b"), event(t - timedelta(hours=1), "b", bot=True)))
    assert_exact(empty)


def random_events(seed: int, clients: int) -> list[dict]:
    """Visits of `clients` clients over days 0-3, with gaps of exactly 30 min, just over, hours, crossing
    midnights; every 7th client a bot, some signed in."""
    rng = random.Random(seed)
    events = []
    for index in range(clients):
        t = T0 + timedelta(days=rng.randrange(3), hours=rng.randrange(24), minutes=rng.randrange(60))
        for _ in range(rng.randrange(1, 20)):
            events.append(event(t, f"r{index}", rng.choice(NAMES), index % 7 == 0, rng,
                                f"u{index}" if rng.random() < 0.3 else None))
            t += rng.choice([MS, 5 * MIN, 29 * MIN, 30 * MIN, 30 * MIN + MS, 3 * 60 * MIN, 20 * 60 * MIN])
    return events


@pytest.mark.parametrize("seed", [1, 2])
def test_random_loads_in_any_order_with_resends_and_rejects_stay_exact(empty, seed):
    _, etl_dsn, _ = empty
    rng = random.Random(seed)
    events = random_events(seed, clients=30)
    rng.shuffle(events)  # late events, merges, sessions completed across loads
    loaded: list[dict] = []
    position = 0
    while position < len(events):
        size = rng.randrange(1, 40)
        batch = events[position:position + size]
        position += size
        resent = rng.sample(loaded, min(len(loaded), rng.randrange(4)))
        objects = [obj(*batch[:size // 2], *resent), obj(*batch[size // 2:], broken(T0))]
        load(etl_dsn, *[o for o in objects if o.rows or o.rejects])
        loaded += batch
        if rng.random() < 0.4:
            assert_exact(empty)
    assert_exact(empty)


MOBILE_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
             " Version/17.0 Mobile/15E148 Safari/604.1")
TABLET_UA = ("Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0"
             " Mobile/15E148 Safari/604.1")


def varied(events: list[dict], seed: int) -> list[dict]:
    """The events with browsers (desktop, mobile, tablet) and traffic sources (none too) changing from event
    to event: the first event of a session, which gives its dimensions, changes as late events arrive."""
    rng = random.Random(seed)
    for stored in events:
        if stored["server"]["user_agent"] != BOT_UA:
            stored["server"]["user_agent"] = rng.choice([BROWSER_UA, MOBILE_UA, TABLET_UA])
        stored["event"]["utm"] = rng.choice([None, {"source": "newsletter"}, {"source": "google", "medium": "cpc"}])
    return events


@pytest.mark.parametrize("seed", [8, 9])
def test_first_event_dimensions_stay_exact_in_any_load_order(empty, seed):
    """The dashboards' dimensions (device, signed-in state, traffic source of a session's first event; device
    and signed-in state of each event) in rollup_hourly_events, _products, rollup_sessions, _session_dims and
    _visitors: after loads in any order, equal to a rebuild."""
    admin, etl_dsn, _ = empty
    rng = random.Random(seed)
    events = varied(random_events(seed, clients=25), seed)
    rng.shuffle(events)
    for at in range(0, len(events), 30):
        load(etl_dsn, obj(*events[at:at + 30]))
        if at % 90 == 0:
            assert_exact(empty)
    assert_exact(empty)
    with psycopg.connect(admin) as conn:
        devices = {row[0] for row in conn.execute("SELECT DISTINCT device_category FROM rollup_sessions")}
        scopes = {row[0] for row in conn.execute("SELECT DISTINCT scope FROM rollup_hourly_visitors")}
    assert {"desktop", "mobile", "tablet"} <= devices and scopes == set(range(8))


def test_days_marked_for_recompute_and_deltas_refresh_together(empty):
    admin, etl_dsn, _ = empty
    load(etl_dsn, obj(*random_events(3, clients=10)))
    refresh(etl_dsn)
    with psycopg.connect(admin) as conn, conn.cursor() as cur:  # events changed some other way than a load
        cur.execute("DELETE FROM clickstream_events WHERE client_id IN ('r1', 'r2')")
        rollups.mark_pending(cur, [T0.date() + timedelta(days=d) for d in range(5)])
    load(etl_dsn, obj(*random_events(4, clients=6)))
    assert_exact(empty)


def test_two_loads_at_once_and_a_refresh_all_succeed(empty):
    """Chunks of the same hours and clients (and some of the same ids) loaded by concurrent connections while
    refreshes run: every load commits, no deadlock, and the result is exact."""
    _, etl_dsn, _ = empty
    events = random_events(5, clients=40)
    random.Random(5).shuffle(events)
    halves = [events[0::2] + events[1:40:2], events[1::2]]  # the first 20 of the second half twice
    errors: list[BaseException] = []
    inserted: list[int] = []
    start = threading.Barrier(3)

    def loader(part: list[dict]) -> None:
        try:
            start.wait()
            with warehouse.connect(etl_dsn) as conn:
                for at in range(0, len(part), 25):
                    counts = load_chunk(conn, [obj(*part[at:at + 25])])
                    inserted.append(sum(c.rows_inserted for c in counts.values()))
        except BaseException as error:  # noqa: BLE001 - reported by the test thread
            errors.append(error)

    def refresher() -> None:
        try:
            start.wait()
            for _ in range(5):
                refresh(etl_dsn)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=loader, args=(half,)) for half in halves] + [threading.Thread(target=refresher)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert sum(inserted) == len(events)
    assert_exact(empty)


def test_rebuild_command_recomputes_the_rollups(empty, local_stack):
    admin, etl_dsn, _ = empty
    load(etl_dsn, obj(*random_events(6, clients=8)))
    refresh(etl_dsn)
    expected = snapshot(admin)
    assert expected["rollup_sessions"] and expected["rollup_hourly_sessions"]
    env = dict(os.environ)

    def rebuild(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "clickstream.cli", "rollups", "rebuild", *args],
                              capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    with psycopg.connect(admin) as conn:  # hours a recompute of their days rewrites
        conn.execute("UPDATE rollup_hourly_events SET events = events + 1")
        conn.execute("DELETE FROM rollup_hourly_products")
    first, last = T0.date() - timedelta(days=10), T0.date() + timedelta(days=30)
    assert "rollups recomputed for 41 UTC days" in rebuild("--from", str(first), "--to", str(last))
    assert snapshot(admin) == expected
    with psycopg.connect(admin) as conn:  # anything: the whole rebuild starts from nothing
        conn.execute("DELETE FROM rollup_sessions WHERE client_id = 'r3'")
        conn.execute("UPDATE rollup_hourly_sessions SET sessions = sessions + 1")
    assert "rollups recomputed for" in rebuild()
    assert snapshot(admin) == expected
    help_text = subprocess.run([sys.executable, "-m", "clickstream.cli", "rollups", "rebuild", "--help"],
                               capture_output=True, text=True, env=env, timeout=60)
    assert "--from" in help_text.stdout and "Recompute the rollups" in help_text.stdout
