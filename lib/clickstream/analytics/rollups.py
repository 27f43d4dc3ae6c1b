"""Rollup tables of the warehouse (migrations 0003-0005, 0007), kept up to date incrementally, exact and crash-safe.

    rollups.mark_load(cur, rows)         # before load_chunk's transaction and first in it: the rows' UTC days
    rollups.add_rows(cur, rows)          # then the rows it inserted, as deltas
    rollups.refresh_pending(conn)        # after the loads: fold the deltas in, one transaction
    rollups.mark_pending(cur, days)      # events changed some other way: recompute those UTC days
    rollups.rebuild(conn)                # everything again from clickstream_events

Rollups: events and the sum of their values per UTC hour x event name x is_bot x device_category x signed
in (`rollup_hourly_events`), page views per UTC hour x is_bot x page path (`rollup_hourly_pages`), product
views / add-to-carts / purchases / revenue per UTC hour x is_bot x product x device_category x signed in
(`rollup_hourly_products`), one row per DW session (`rollup_sessions`: start, end, events, signed in,
furthest in-order funnel step, the first event's device, signed-in state and utm_source; the rules of the
SQL function `clickstream_sessions`), and those sessions per UTC hour of their start x is_bot x hour of the
client's previous session (`rollup_hourly_sessions`), x the first event's dimensions
(`rollup_hourly_session_dims`), and x the hour of the client's previous session among those a dashboard
filter keeps (`rollup_hourly_visitors`, one scope per filter: see migration 0007).

A refresh costs what the new rows cost, not what their hours hold (issue 11):
- Counts and sums are additive. `add_rows` appends what the load's inserted rows add (ids already in the
  table are not in `rows`) to the append-only delta tables, and the (client_id, is_bot) of the rows with
  their time span; the refresh adds the deltas to the hourly rollups and deletes them.
- Sessions: for each (client_id, is_bot) with new events, the span from its first to its last new event is
  widened to the old sessions within 30 minutes of it (at most one step: old sessions are more than 30
  minutes apart and no new event lies between two of them outside the span), and the client's sessions in
  the span are deleted and computed again from its events in the span only (`clickstream_span_sessions`,
  read through the index on (client_id, is_bot, event_timestamp)). A new event that merges two sessions,
  extends one, crosses midnight or arrives days late is inside such a span.
- rollup_hourly_sessions, _session_dims and _visitors: a session's rows depend on its own start and
  dimensions and on its previous session in each scope (same is_bot or any, and maybe the same device and
  signed-in state). The sessions whose rows can change are those of the client starting in a span (either
  is_bot) and the first ones after it in each scope: their old rows are subtracted and their new rows added
  (one signed row per session in `rollup_session_changes`); rows that reach zero sessions are deleted.

`rollup_pending` keeps the UTC days with changes not folded in yet (`analytics.pending_near` reads raw events
near them). Days marked by `mark_pending` (recompute) have their hours computed again from their events and
their clients' sessions around the day recomputed as above. Refreshes take an EXCLUSIVE lock on
`rollup_pending`, and loads mark their days first in their transaction (before inserting anything), so a
refresh sees every delta of the loads committed before it and none is written while it runs. Loads also
mark their days in a transaction of their own just before, so the marks in the load's transaction find
committed rows and never wait on another load (a mark left by a load that then fails only costs a refresh
with nothing to fold). Loads only append deltas, so concurrent loads never wait on each other's delta rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, timedelta, timezone
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import pq

from clickstream.analytics.transform import COLUMNS

DELTA_TABLES = ("rollup_delta_events", "rollup_delta_pages", "rollup_delta_products", "rollup_delta_clients")
ROLLUP_TABLES = ("rollup_hourly_events", "rollup_hourly_pages", "rollup_hourly_products", "rollup_sessions",
                 "rollup_hourly_sessions", "rollup_hourly_session_dims", "rollup_hourly_visitors", *DELTA_TABLES)

_DAY_BOUNDS = (
    "%(first)s::date::timestamp AT TIME ZONE 'UTC'",
    "(%(last)s::date + 1)::timestamp AT TIME ZONE 'UTC'",
)
_IN_BLOCK = f"event_timestamp >= {_DAY_BOUNDS[0]} AND event_timestamp < {_DAY_BOUNDS[1]}"
_HOUR_IN_BLOCK = f"hour >= {_DAY_BOUNDS[0]} AND hour < {_DAY_BOUNDS[1]}"

# Recompute the hours of the days first..last from their events.
_HOURLY = [
    f"DELETE FROM rollup_hourly_events WHERE {_HOUR_IN_BLOCK}",
    "INSERT INTO rollup_hourly_events (hour, event_name, is_bot, device_category, signed_in, events, value)"
    " SELECT date_trunc('hour', event_timestamp, 'UTC'), event_name, is_bot, device_category, user_id IS NOT NULL,"
    " count(*), coalesce(sum(value), 0)"
    f" FROM clickstream_events WHERE {_IN_BLOCK} GROUP BY 1, 2, 3, 4, 5",
    f"DELETE FROM rollup_hourly_pages WHERE {_HOUR_IN_BLOCK}",
    "INSERT INTO rollup_hourly_pages (hour, is_bot, page_path, page_views)"
    " SELECT date_trunc('hour', event_timestamp, 'UTC'), is_bot, page_path, count(*)"
    f" FROM clickstream_events WHERE event_name = 'page_view' AND {_IN_BLOCK} GROUP BY 1, 2, 3",
    f"DELETE FROM rollup_hourly_products WHERE {_HOUR_IN_BLOCK}",
    "INSERT INTO rollup_hourly_products (hour, is_bot, product_id, device_category, signed_in, product_name,"
    " category, brand, views, add_to_cart, purchases, revenue)"
    " SELECT date_trunc('hour', event_timestamp, 'UTC'), is_bot, context_product_id, device_category,"
    " user_id IS NOT NULL,"
    " min(context_product_name), min(context_product_category), min(context_product_brand),"
    " count(*) FILTER (WHERE event_name = 'product_view'), count(*) FILTER (WHERE event_name = 'add_to_cart'),"
    " count(*) FILTER (WHERE event_name = 'purchase'),"
    " coalesce(sum(value) FILTER (WHERE event_name = 'purchase'), 0)"
    " FROM clickstream_events"
    " WHERE event_name IN ('product_view', 'add_to_cart', 'purchase') AND context_product_id IS NOT NULL"
    f" AND {_IN_BLOCK} GROUP BY 1, 2, 3, 4, 5",
]

# Add the delta tables to the hourly rollups and empty them.
_FOLD = [
    "WITH d AS (DELETE FROM rollup_delta_events RETURNING *)"
    " INSERT INTO rollup_hourly_events AS r (hour, event_name, is_bot, device_category, signed_in, events, value)"
    " SELECT hour, event_name, is_bot, device_category, signed_in, sum(events), sum(value) FROM d"
    " GROUP BY 1, 2, 3, 4, 5"
    " ON CONFLICT ON CONSTRAINT rollup_hourly_events_key DO UPDATE SET events = r.events + excluded.events,"
    " value = r.value + excluded.value",
    "WITH d AS (DELETE FROM rollup_delta_pages RETURNING *)"
    " INSERT INTO rollup_hourly_pages AS r (hour, is_bot, page_path, page_views)"
    " SELECT hour, is_bot, page_path, sum(page_views) FROM d GROUP BY 1, 2, 3"
    " ON CONFLICT ON CONSTRAINT rollup_hourly_pages_key DO UPDATE SET page_views = r.page_views + excluded.page_views",
    "WITH d AS (DELETE FROM rollup_delta_products RETURNING *)"
    " INSERT INTO rollup_hourly_products AS r (hour, is_bot, product_id, device_category, signed_in, product_name,"
    " category, brand, views, add_to_cart, purchases, revenue)"
    " SELECT hour, is_bot, product_id, device_category, signed_in, min(product_name), min(category), min(brand),"
    " sum(views), sum(add_to_cart), sum(purchases), sum(revenue) FROM d GROUP BY 1, 2, 3, 4, 5"
    " ON CONFLICT ON CONSTRAINT rollup_hourly_products_key DO UPDATE"
    " SET product_name = least(r.product_name, excluded.product_name),"
    " category = least(r.category, excluded.category), brand = least(r.brand, excluded.brand),"
    " views = r.views + excluded.views, add_to_cart = r.add_to_cart + excluded.add_to_cart,"
    " purchases = r.purchases + excluded.purchases, revenue = r.revenue + excluded.revenue",
]

_RECOMPUTE_DAYS = (
    "unnest(%(recompute)s::date[]) AS d,"
    " LATERAL (SELECT d::timestamp AT TIME ZONE 'UTC' AS lo, (d + 1)::timestamp AT TIME ZONE 'UTC' AS hi) AS day"
)


_SCOPES = range(8)  # rollup_hourly_visitors.scope: 1 both bot flags, 2 same device, 4 same signed-in state


def _previous(scope: int) -> str:
    """The start of the session before each one among those of its client that `scope` keeps together."""
    partition = ["r.client_id", *(() if scope & 1 else ("r.is_bot",)), *(("r.device_category",) if scope & 2 else ()),
                 *(("r.first_signed_in",) if scope & 4 else ())]
    order = "r.session_start, r.is_bot" if scope & 1 else "r.session_start"
    return f"lag(r.session_start) OVER (PARTITION BY {', '.join(partition)} ORDER BY {order}) AS prev{scope}"


def _changes(sign: int, spans: bool = True) -> str:
    """Insert into rollup_session_changes, with `sign`, the sessions whose rows in the hourly session rollups a
    change in the spans can change (see the module docstring; spans=False: every session), as rollup_sessions
    holds them now, with the hours of their previous sessions in each scope ('-infinity': none within 840 hours,
    as in migration 0004)."""
    sessions = ("(SELECT client_id, min(lo) AS lo FROM rollup_spans GROUP BY 1) AS c JOIN rollup_sessions r"
                # a previous session more than 840 hours before counts as none: reading from then on is enough
                " ON r.client_id = c.client_id AND r.session_start >= c.lo - interval '841 hours'"
                if spans else "rollup_sessions r")
    after = " OR ".join(f"{'' if scope & 1 else 'o.is_bot = s.is_bot AND '}"
                        f"(o.prev{scope} IS NULL OR o.prev{scope} <= s.hi)" for scope in _SCOPES)
    changed = (" WHERE EXISTS (SELECT FROM rollup_spans s WHERE s.client_id = o.client_id AND ("
               f"o.session_start BETWEEN s.lo AND s.hi OR o.session_start > s.hi AND ({after})))" if spans else "")
    previous = ", ".join(f"CASE WHEN o.prev{scope} IS NULL OR o.prev{scope} < o.hour - interval '840 hours'"
                         f" THEN '-infinity' ELSE date_trunc('hour', o.prev{scope}, 'UTC') END" for scope in _SCOPES)
    return (
        "INSERT INTO rollup_session_changes"
        " WITH ordered AS (SELECT r.*, date_trunc('hour', r.session_start, 'UTC') AS hour, "
        + ", ".join(_previous(scope) for scope in _SCOPES) + f" FROM {sessions})"
        f" SELECT {sign}, o.is_bot, o.hour, o.events, o.signed_in, o.funnel_step, o.device_category,"
        f" o.first_signed_in, o.traffic_source, {previous} FROM ordered o{changed}"
    )


def _add_changes(table: str, constraint: str, keys: dict[str, str], values: dict[str, str],
                 source: str = "rollup_session_changes") -> list[str]:
    """Add the signed session changes to `table` (keys and values: column -> expression over `source`), then
    delete its rows of the changed hours that count no session any more."""
    sums = {column: f"sum(sign * {expression})" for column, expression in values.items()}
    return [
        f"INSERT INTO {table} AS r ({', '.join([*keys, *values])})"
        f" SELECT {', '.join([*keys.values(), *sums.values()])} FROM {source}"
        f" GROUP BY {', '.join(str(n) for n in range(1, len(keys) + 1))}"
        f" HAVING {' OR '.join(f'{total} <> 0' for total in sums.values())}"
        f" ON CONFLICT ON CONSTRAINT {constraint} DO UPDATE SET "
        + ", ".join(f"{column} = r.{column} + excluded.{column}" for column in values),
        f"DELETE FROM {table} WHERE sessions = 0 AND hour IN (SELECT DISTINCT hour FROM rollup_session_changes)",
    ]


_STEPS = {"product_view": "(funnel_step >= 1)::int", "add_to_cart": "(funnel_step >= 2)::int",
          "begin_checkout": "(funnel_step >= 3)::int", "purchase": "(funnel_step >= 4)::int"}
_CHANGES_TABLE = (
    "CREATE TEMP TABLE rollup_session_changes (sign integer, is_bot boolean, hour timestamptz, events integer,"
    " signed_in boolean, funnel_step smallint, device_category text, first_signed_in boolean, traffic_source text, "
    + ", ".join(f"prev{scope} timestamptz" for scope in _SCOPES) + ") ON COMMIT DROP"
)
_ADD_SESSIONS = [
    *_add_changes("rollup_hourly_sessions", "rollup_hourly_sessions_pkey",
                  {"hour": "hour", "is_bot": "is_bot", "prev_hour": "prev0", "prev_any_hour": "prev1"},
                  {"sessions": "1", "bounces": "(events = 1)::int", "signed_in": "signed_in::int", "events": "events",
                   **_STEPS}),
    *_add_changes("rollup_hourly_session_dims", "rollup_hourly_session_dims_key",
                  {"hour": "hour", "is_bot": "is_bot", "device_category": "device_category",
                   "first_signed_in": "first_signed_in", "traffic_source": "traffic_source"},
                  {"sessions": "1", **_STEPS}),
    *_add_changes("rollup_hourly_visitors", "rollup_hourly_visitors_key",
                  {"hour": "hour", "scope": "v.scope",
                   "device_category": "CASE WHEN v.scope & 2 = 2 THEN device_category END",
                   "first_signed_in": "CASE WHEN v.scope & 4 = 4 THEN first_signed_in END", "prev_hour": "v.prev_hour"},
                  {"sessions": "1"},
                  "rollup_session_changes CROSS JOIN LATERAL (VALUES "
                  + ", ".join(f"({scope}::smallint, prev{scope})" for scope in _SCOPES)
                  + ") AS v (scope, prev_hour) WHERE v.scope & 1 = 1 OR NOT is_bot"),
]


_SESSIONS = [
    "CREATE TEMP TABLE rollup_touched (client_id text, is_bot boolean, lo timestamptz, hi timestamptz)"
    " ON COMMIT DROP",
    # The new events' spans (deltas), and for the days to recompute, their clients' events and the old
    # sessions within 30 minutes of them (events may have gone).
    "WITH delta AS (DELETE FROM rollup_delta_clients RETURNING client_id, is_bot, lo, hi)"
    " INSERT INTO rollup_touched SELECT client_id, is_bot, min(lo), max(hi) FROM ("
    "  SELECT * FROM delta"
    "  UNION ALL"
    f"  SELECT e.* FROM {_RECOMPUTE_DAYS}, LATERAL ("
    "   SELECT client_id, is_bot, min(event_timestamp), max(event_timestamp) FROM clickstream_events"
    "   WHERE event_timestamp >= day.lo AND event_timestamp < day.hi GROUP BY 1, 2) AS e"
    "  UNION ALL"
    f"  SELECT r.* FROM {_RECOMPUTE_DAYS}, LATERAL ("
    "   SELECT client_id, is_bot, session_start, session_end FROM rollup_sessions"
    "   WHERE session_end >= day.lo - interval '30 minutes' AND session_start < day.hi + interval '30 minutes') AS r"
    " ) AS touched GROUP BY 1, 2",
    "CREATE TEMP TABLE rollup_spans (client_id text, is_bot boolean, lo timestamptz, hi timestamptz) ON COMMIT DROP",
    # Widened to the old sessions within 30 minutes: the last one starting before, and those starting in it.
    "INSERT INTO rollup_spans SELECT t.client_id, t.is_bot, least(t.lo, o.lo), greatest(t.hi, o.hi)"
    " FROM rollup_touched t CROSS JOIN LATERAL ("
    "  SELECT min(r.session_start) AS lo, max(r.session_end) AS hi FROM ("
    "   (SELECT session_start, session_end FROM rollup_sessions"
    "    WHERE client_id = t.client_id AND is_bot = t.is_bot AND session_start < t.lo - interval '30 minutes'"
    "    ORDER BY session_start DESC LIMIT 1)"
    "   UNION ALL"
    "   SELECT session_start, session_end FROM rollup_sessions"
    "   WHERE client_id = t.client_id AND is_bot = t.is_bot"
    "   AND session_start BETWEEN t.lo - interval '30 minutes' AND t.hi + interval '30 minutes'"
    "  ) AS r WHERE r.session_end >= t.lo - interval '30 minutes') AS o",
    "ANALYZE rollup_spans",
    _CHANGES_TABLE,
    _changes(-1),
    "DELETE FROM rollup_sessions r USING rollup_spans s"
    " WHERE r.client_id = s.client_id AND r.is_bot = s.is_bot AND r.session_start BETWEEN s.lo AND s.hi",
    "INSERT INTO rollup_sessions SELECT * FROM clickstream_span_sessions(ARRAY(SELECT ROW(client_id, is_bot, lo, hi)"
    "::rollup_span FROM rollup_spans))",
    _changes(+1),
    *_ADD_SESSIONS,
]

_WORK_MEM = "SET LOCAL work_mem = '128MB'"  # the sessions' sorts in memory (4MB, the default, spills at ~50k events)
_COLUMN = {name: index for index, name in enumerate(COLUMNS)}
_TS, _NAME, _BOT, _CLIENT, _PAGE, _VALUE, _DEVICE, _USER = (_COLUMN[name] for name in (
    "event_timestamp", "event_name", "is_bot", "client_id", "page_path", "value", "device_category", "user_id"))
_PRODUCT_ID, _PRODUCT_NAME, _CATEGORY, _BRAND = (_COLUMN[name] for name in (
    "context_product_id", "context_product_name", "context_product_category", "context_product_brand"))
_PRODUCT_STEP = {"product_view": 0, "add_to_cart": 1, "purchase": 2}
_CENTS = Decimal("0.01")
_DELTA_COPY = {
    "rollup_delta_events": "COPY rollup_delta_events (hour, event_name, is_bot, device_category, signed_in, events,"
                           " value) FROM STDIN",
    "rollup_delta_pages": "COPY rollup_delta_pages (hour, is_bot, page_path, page_views) FROM STDIN",
    "rollup_delta_products": "COPY rollup_delta_products (hour, is_bot, product_id, device_category, signed_in,"
                             " product_name, category, brand, views, add_to_cart, purchases, revenue) FROM STDIN",
    "rollup_delta_clients": "COPY rollup_delta_clients (client_id, is_bot, lo, hi) FROM STDIN",
}


def mark_load(cur: psycopg.Cursor | psycopg.Connection, rows: Sequence[Sequence[Any]]) -> None:
    """Mark the UTC days of `rows` (clickstream.analytics.transform rows) pending, their changes to come as deltas
    (add_rows): in a transaction of its own just before the load, then first in the load's transaction. A
    row without a timestamp is left to the insert to refuse."""
    utc = timezone.utc
    days = sorted({(ts if ts.tzinfo is utc else ts.astimezone(utc)).date()
                   for row in rows if (ts := row[_TS]) is not None})
    if days:
        cur.execute("INSERT INTO rollup_pending (day, recompute) SELECT unnest(%s::date[]), false"
                    " ON CONFLICT (day) DO NOTHING", (days,))


def add_rows(cur: psycopg.Cursor, rows: Sequence[Sequence[Any]]) -> None:
    """Append what `rows` add to the rollups to the delta tables, in the transaction that inserted them (only
    those inserted), after mark_load."""
    with cur.connection.cursor() as delta_cur:
        for table, delta_rows in deltas(rows).items():
            if delta_rows:
                with delta_cur.copy(_DELTA_COPY[table]) as copy:
                    for delta_row in delta_rows:
                        copy.write_row(delta_row)


def deltas(rows: Iterable[Sequence[Any]]) -> dict[str, list[tuple]]:
    """The rows of each delta table that `rows` (clickstream.analytics.transform rows) add, in one pass."""
    utc = timezone.utc
    events: dict[tuple, list] = {}
    pages: dict[tuple, int] = {}
    products: dict[tuple, list] = {}
    clients: dict[tuple, list] = {}
    for row in rows:
        ts = row[_TS]
        if ts.tzinfo is not utc:
            ts = ts.astimezone(utc)
        hour = ts.replace(minute=0, second=0, microsecond=0)
        name, is_bot, device, value = row[_NAME], row[_BOT], row[_DEVICE], row[_VALUE]
        signed_in = row[_USER] is not None
        key = (hour, name, is_bot, device, signed_in)
        counts = events.get(key)
        if counts is None:
            events[key] = [1, value]
        else:
            counts[0] += 1
            counts[1] = _plus(counts[1], value)
        if name == "page_view":
            key = (hour, is_bot, row[_PAGE])
            pages[key] = pages.get(key, 0) + 1
        else:
            step = _PRODUCT_STEP.get(name)
            if step is not None and row[_PRODUCT_ID] is not None:
                key = (hour, is_bot, row[_PRODUCT_ID], device, signed_in,
                       row[_PRODUCT_NAME], row[_CATEGORY], row[_BRAND])
                counts = products.get(key)
                if counts is None:
                    counts = products[key] = [0, 0, 0, None]
                counts[step] += 1
                if step == 2:
                    counts[3] = _plus(counts[3], value)
        key = (row[_CLIENT], is_bot)
        span = clients.get(key)
        if span is None:
            clients[key] = [ts, ts]
        elif ts < span[0]:
            span[0] = ts
        elif ts > span[1]:
            span[1] = ts
    return {
        "rollup_delta_events": [(*key, n, _cents(value)) for key, (n, value) in events.items()],
        "rollup_delta_pages": [(*key, n) for key, n in pages.items()],
        "rollup_delta_products": [(*key, views, carts, purchases, _cents(revenue))
                                  for key, (views, carts, purchases, revenue) in products.items()],
        "rollup_delta_clients": [(*key, lo, hi) for key, (lo, hi) in clients.items()],
    }


def _plus(total: Decimal | None, value: Decimal | None) -> Decimal | None:
    return total if value is None else value if total is None else total + value


def _cents(total: Decimal | None) -> Decimal:
    """A sum of values as the database's sum gives it: 0 without any, else with their two decimals."""
    return Decimal(0) if total is None else total.quantize(_CENTS)


def mark_pending(cur: psycopg.Cursor | psycopg.Connection, days: Iterable[date]) -> None:
    """Mark UTC `days` to be recomputed from their events by the next refresh, in the caller's transaction
    (the one that changed their events some other way than load_chunk)."""
    ordered = sorted(set(days))
    if ordered:
        cur.execute(
            "INSERT INTO rollup_pending (day) SELECT unnest(%s::date[])"
            " ON CONFLICT (day) DO UPDATE SET recompute = true WHERE NOT rollup_pending.recompute", (ordered,)
        )


def pending_days(conn: psycopg.Connection) -> list[date]:
    return [row[0] for row in conn.execute("SELECT day FROM rollup_pending ORDER BY day").fetchall()]


def refresh_pending(conn: psycopg.Connection) -> list[date]:
    """Fold the deltas in, recompute the days marked for it, and clear every pending day, in one transaction;
    returns the days.

    `conn` must not be inside a transaction (the refresh commits its own). A failure rolls everything
    back: the days stay pending and the rollups as they were.
    """
    _outside_transaction(conn, "refresh_pending")
    with conn.transaction():
        conn.execute("LOCK TABLE rollup_pending IN EXCLUSIVE MODE")
        conn.execute(_WORK_MEM)
        pending = conn.execute("SELECT day, recompute FROM rollup_pending ORDER BY day").fetchall()
        days, recompute = [day for day, _ in pending], [day for day, again in pending if again]
        with conn.cursor() as cur:
            for statement in _FOLD:
                cur.execute(statement)
            for first, last in day_blocks(recompute):
                for statement in _HOURLY:
                    cur.execute(statement, {"first": first, "last": last})
            if days:
                for statement in _SESSIONS:
                    cur.execute(statement, {"recompute": recompute})
        conn.execute("DELETE FROM rollup_pending WHERE day = ANY(%s)", (days,))
    return days


def refresh_days(conn: psycopg.Connection, days: Iterable[date]) -> list[date]:
    """Mark `days` to recompute and refresh everything pending (after changing events some other way than
    load_chunk).

    Like refresh_pending, it needs `conn` outside a transaction: commit your own changes first, or use an
    autocommit connection."""
    with conn.transaction():
        mark_pending(conn, days)
    return refresh_pending(conn)


def rebuild(conn: psycopg.Connection, first: date | None = None, last: date | None = None) -> list[date]:
    """Compute the rollups again from clickstream_events; returns the UTC days recomputed.

    Without bounds: every rollup row is deleted and computed again (and every pending day and delta
    cleared). With `first` and/or `last`: those UTC days (open ends: the first or last day with events)
    are recomputed like days marked by mark_pending. `conn` must be outside a transaction."""
    _outside_transaction(conn, "rebuild")
    if first is not None or last is not None:
        with conn.transaction():
            low, high = conn.execute("SELECT (min(event_timestamp) AT TIME ZONE 'UTC')::date,"
                                     " (max(event_timestamp) AT TIME ZONE 'UTC')::date FROM clickstream_events"
                                     ).fetchone()
        first, last = first or low, last or high
        if first is None or last is None or first > last:
            return []
        return refresh_days(conn, [first + timedelta(days=n) for n in range((last - first).days + 1)])
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("LOCK TABLE rollup_pending IN EXCLUSIVE MODE")
        cur.execute(_WORK_MEM)
        for table in ROLLUP_TABLES:
            cur.execute(f"DELETE FROM {table}")
        cur.execute("DELETE FROM rollup_pending")
        low, high = cur.execute("SELECT (min(event_timestamp) AT TIME ZONE 'UTC')::date,"
                                " (max(event_timestamp) AT TIME ZONE 'UTC')::date FROM clickstream_events").fetchone()
        if low is None:
            return []
        for statement in _HOURLY:
            cur.execute(statement, {"first": low, "last": high})
        cur.execute("INSERT INTO rollup_sessions SELECT * FROM clickstream_sessions('-infinity', 'infinity')")
        for statement in (_CHANGES_TABLE, _changes(+1, spans=False), *_ADD_SESSIONS):
            cur.execute(statement)
    return [low + timedelta(days=n) for n in range((high - low).days + 1)]


def day_blocks(days: Iterable[date]) -> list[tuple[date, date]]:
    """Runs of consecutive days as (first, last): [1, 2, 3, 5] -> [(1, 3), (5, 5)]."""
    blocks: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if blocks and day - blocks[-1][1] == timedelta(days=1):
            blocks[-1] = (blocks[-1][0], day)
        else:
            blocks.append((day, day))
    return blocks


def _outside_transaction(conn: psycopg.Connection, name: str) -> None:
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        raise ValueError(f"{name} needs a connection outside a transaction: commit or roll back first")
