"""Rollup tables of the warehouse (migrations 0003 and 0004) and their refresh, exact and crash-safe.

    rollups.mark_pending(cur, days)      # in load_chunk's transaction: the UTC days of the rows it inserted
    rollups.refresh_pending(conn)        # after the loads: recompute those days, clear them, one transaction

Rollups: events per UTC hour x event name x is_bot (`rollup_hourly_events`), page views per UTC hour x
is_bot x page path (`rollup_hourly_pages`), product views / add-to-carts / purchases / revenue per UTC hour
x is_bot x product (`rollup_hourly_products`), and one row per DW session (`rollup_sessions`: start, end,
events, signed in, furthest in-order funnel step) from the SQL function `clickstream_sessions`, and those
sessions per UTC hour of their start x is_bot x hour of the client's previous session
(`rollup_hourly_sessions`, migration 0004, from the SQL function `clickstream_hourly_sessions`).

A pending day's hours are recomputed from that day's events. Sessions cross midnight and merge when an
event arrives between two of them, so for each (client_id, is_bot) that has events on a pending day, or
an old session within 30 minutes of one, the refresh recomputes the span from the start of the first such
session (or event) to the end of the last: every session of that client starting in the span is deleted
and computed again from the events. Before and after the span the client has a gap of more than 30
minutes, so no session outside it changes. The sessions are computed in one pass over the events from
the earliest span start to the latest span end (pending days far apart make that pass long). The hours of
rollup_hourly_sessions recomputed are those of the client's sessions in a span (before and after) and of its
first session after it, whose previous session may have changed.

Every day whose events change must be marked (load_chunk does it for inserts); a day's rollups are only as
fresh as its last refresh. Refreshes take an EXCLUSIVE lock on `rollup_pending`: loads that mark days wait
until the refresh commits, and a refresh waits for the loads in progress, so no marked day is cleared before
its rows are counted.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

import psycopg
from psycopg import pq

ROLLUP_TABLES = ("rollup_hourly_events", "rollup_hourly_pages", "rollup_hourly_products", "rollup_sessions",
                 "rollup_hourly_sessions")

_DAY_BOUNDS = (
    "%(first)s::date::timestamp AT TIME ZONE 'UTC'",
    "(%(last)s::date + 1)::timestamp AT TIME ZONE 'UTC'",
)
_IN_BLOCK = f"event_timestamp >= {_DAY_BOUNDS[0]} AND event_timestamp < {_DAY_BOUNDS[1]}"
_HOUR_IN_BLOCK = f"hour >= {_DAY_BOUNDS[0]} AND hour < {_DAY_BOUNDS[1]}"

_HOURLY = [
    f"DELETE FROM rollup_hourly_events WHERE {_HOUR_IN_BLOCK}",
    "INSERT INTO rollup_hourly_events (hour, event_name, is_bot, events)"
    " SELECT date_trunc('hour', event_timestamp, 'UTC'), event_name, is_bot, count(*)"
    f" FROM clickstream_events WHERE {_IN_BLOCK} GROUP BY 1, 2, 3",
    f"DELETE FROM rollup_hourly_pages WHERE {_HOUR_IN_BLOCK}",
    "INSERT INTO rollup_hourly_pages (hour, is_bot, page_path, page_views)"
    " SELECT date_trunc('hour', event_timestamp, 'UTC'), is_bot, page_path, count(*)"
    f" FROM clickstream_events WHERE event_name = 'page_view' AND {_IN_BLOCK} GROUP BY 1, 2, 3",
    f"DELETE FROM rollup_hourly_products WHERE {_HOUR_IN_BLOCK}",
    "INSERT INTO rollup_hourly_products"
    " (hour, is_bot, product_id, product_name, category, brand, views, add_to_cart, purchases, revenue)"
    " SELECT date_trunc('hour', event_timestamp, 'UTC'), is_bot, context_product_id,"
    " min(context_product_name), min(context_product_category), min(context_product_brand),"
    " count(*) FILTER (WHERE event_name = 'product_view'), count(*) FILTER (WHERE event_name = 'add_to_cart'),"
    " count(*) FILTER (WHERE event_name = 'purchase'),"
    " coalesce(sum(value) FILTER (WHERE event_name = 'purchase'), 0)"
    " FROM clickstream_events"
    " WHERE event_name IN ('product_view', 'add_to_cart', 'purchase') AND context_product_id IS NOT NULL"
    f" AND {_IN_BLOCK} GROUP BY 1, 2, 3",
]

# Per (client_id, is_bot): the span to recompute, from its events on the pending days and its old sessions
# that end at most 30 minutes before a pending day or start less than 30 minutes after it.
_PENDING_DAYS = (
    "unnest(%(days)s::date[]) AS d,"
    " LATERAL (SELECT d::timestamp AT TIME ZONE 'UTC' AS lo, (d + 1)::timestamp AT TIME ZONE 'UTC' AS hi) AS day"
)
_TOUCHED_IN_SPANS = (
    "INSERT INTO rollup_touched_hours SELECT DISTINCT date_trunc('hour', r.session_start, 'UTC')"
    " FROM rollup_spans s JOIN rollup_sessions r"
    " ON r.client_id = s.client_id AND r.session_start BETWEEN s.lo AND s.hi"
)
_SESSIONS = [
    "CREATE TEMP TABLE rollup_spans (client_id text, is_bot boolean, lo timestamptz, hi timestamptz)"
    " ON COMMIT DROP",
    "INSERT INTO rollup_spans SELECT client_id, is_bot, min(lo), max(hi) FROM ("
    "  SELECT e.client_id, e.is_bot, e.lo, e.hi"
    f"  FROM {_PENDING_DAYS}, LATERAL ("
    "   SELECT client_id, is_bot, min(event_timestamp) AS lo, max(event_timestamp) AS hi FROM clickstream_events"
    "   WHERE event_timestamp >= day.lo AND event_timestamp < day.hi GROUP BY 1, 2) AS e"
    "  UNION ALL"
    "  SELECT r.client_id, r.is_bot, r.session_start, r.session_end"
    f"  FROM {_PENDING_DAYS}, LATERAL ("
    "   SELECT client_id, is_bot, session_start, session_end FROM rollup_sessions"
    "   WHERE session_end >= day.lo - interval '30 minutes' AND session_start < day.hi + interval '30 minutes') AS r"
    " ) AS touched GROUP BY 1, 2",
    "ANALYZE rollup_spans",
    "CREATE TEMP TABLE rollup_touched_hours (hour timestamptz) ON COMMIT DROP",
    # The hours of rollup_hourly_sessions that change: those of the client's sessions (either is_bot) in the
    # span, before and after the recompute, and of its first session of each is_bot after the span, whose
    # previous session may be another one now.
    _TOUCHED_IN_SPANS,
    "INSERT INTO rollup_touched_hours SELECT date_trunc('hour', n.start, 'UTC')"
    " FROM rollup_spans s CROSS JOIN (VALUES (false), (true)) AS b (is_bot), LATERAL ("
    "  SELECT min(r.session_start) AS start FROM rollup_sessions r"
    "  WHERE r.client_id = s.client_id AND r.is_bot = b.is_bot AND r.session_start > s.hi) AS n"
    " WHERE n.start IS NOT NULL",
    "DELETE FROM rollup_sessions r USING rollup_spans s"
    " WHERE r.client_id = s.client_id AND r.is_bot = s.is_bot AND r.session_start BETWEEN s.lo AND s.hi",
    "INSERT INTO rollup_sessions (client_id, is_bot, session_start, session_end, events, signed_in, funnel_step)"
    " SELECT f.client_id, f.is_bot, f.session_start, f.session_end, f.events, f.signed_in, f.funnel_step"
    " FROM clickstream_sessions((SELECT min(lo) FROM rollup_spans), (SELECT max(hi) FROM rollup_spans)) AS f"
    " JOIN rollup_spans s ON s.client_id = f.client_id AND s.is_bot = f.is_bot"
    " AND f.session_start BETWEEN s.lo AND s.hi",
    _TOUCHED_IN_SPANS,
    "DELETE FROM rollup_hourly_sessions WHERE hour IN (SELECT hour FROM rollup_touched_hours)",
    "INSERT INTO rollup_hourly_sessions"
    " SELECT * FROM clickstream_hourly_sessions(ARRAY(SELECT DISTINCT hour FROM rollup_touched_hours))",
]


def mark_pending(cur: psycopg.Cursor | psycopg.Connection, days: Iterable[date]) -> None:
    """Mark UTC `days` for the next refresh, in the caller's transaction (the one that changed their events)."""
    ordered = sorted(set(days))
    if ordered:
        cur.execute(
            "INSERT INTO rollup_pending (day) SELECT unnest(%s::date[]) ON CONFLICT (day) DO NOTHING", (ordered,)
        )


def pending_days(conn: psycopg.Connection) -> list[date]:
    return [row[0] for row in conn.execute("SELECT day FROM rollup_pending ORDER BY day").fetchall()]


def refresh_pending(conn: psycopg.Connection) -> list[date]:
    """Recompute the rollups of every pending day and clear them, in one transaction; returns the days.

    `conn` must not be inside a transaction (the refresh commits its own). A failure rolls everything
    back: the days stay pending and the rollups as they were.
    """
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        raise ValueError("refresh_pending needs a connection outside a transaction: commit or roll back first")
    with conn.transaction():
        conn.execute("LOCK TABLE rollup_pending IN EXCLUSIVE MODE")
        days = pending_days(conn)
        with conn.cursor() as cur:
            for first, last in day_blocks(days):
                for statement in _HOURLY:
                    cur.execute(statement, {"first": first, "last": last})
            if days:
                for statement in _SESSIONS:
                    cur.execute(statement, {"days": days})
        conn.execute("DELETE FROM rollup_pending WHERE day = ANY(%s)", (days,))
    return days


def refresh_days(conn: psycopg.Connection, days: Iterable[date]) -> list[date]:
    """Mark `days` and refresh everything pending (after changing events some other way than load_chunk).

    Like refresh_pending, it needs `conn` outside a transaction: commit your own changes first, or use an
    autocommit connection."""
    with conn.transaction():
        mark_pending(conn, days)
    return refresh_pending(conn)


def day_blocks(days: Iterable[date]) -> list[tuple[date, date]]:
    """Runs of consecutive days as (first, last): [1, 2, 3, 5] -> [(1, 3), (5, 5)]."""
    blocks: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if blocks and day - blocks[-1][1] == timedelta(days=1):
            blocks[-1] = (blocks[-1][0], day)
        else:
            blocks.append((day, day))
    return blocks
