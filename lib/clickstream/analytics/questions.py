"""The business questions over the warehouse: the SQL files of `sql/analytics/`, run read-only into DataFrames.

    analytics.query(dsn, "SELECT ...", params)              # any read as a DataFrame
    analytics.run_question("funnel", dsn, date(2026, 11, 16), date(2026, 11, 22), tz="Asia/Ho_Chi_Minh")
    analytics.report(dsn, date(2026, 11, 16), date(2026, 11, 22))   # every answer, JSON-ready
    show_sql("funnel")                                      # the file, shown as Markdown in a notebook
    compare_sources(dsn, date(2026, 11, 16), date(2026, 11, 22))   # every question on raw events and on rollups

A date range is inclusive and in the business time zone: from `start` 00:00 to `end` + 1 day 00:00 there.
Bots are excluded unless `include_bots`. Each question has a raw-table query `sql/analytics/<name>.sql`
and a rollup query `sql/analytics/rollup/<name>.sql`; `source="auto"` takes the rollup unless it cannot
answer exactly: a pending (not yet refreshed) day near the range, or, for the questions served by UTC-hour
rollups, a time zone whose offset is not a whole number of hours somewhere in the range (Asia/Kolkata).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
import psycopg
from psycopg.rows import dict_row

from clickstream.analytics import warehouse
from clickstream.settings import project_root

QUESTIONS = ("event_counts", "daily_event_counts", "page_views", "top_products", "product_categories", "funnel",
             "peak_activity", "sessions")
HOURLY_QUESTIONS = frozenset(QUESTIONS) - {"funnel", "sessions"}  # rollups in UTC hours
SOURCES = ("auto", "raw", "rollup")
FUNNEL_STEPS = ("product_view", "add_to_cart", "begin_checkout", "purchase")
REVENUE_CLAIM = ("revenue: the purchases' value as the browsers sent it, the shopper's claim like every client-side "
                 "value; the orders themselves are in shop_oltp")
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # dow 0-6
_HOUR = timedelta(hours=1)


class AnalyticsError(ValueError):
    """A request the questions cannot answer: an unknown time zone, question or source, a reversed range or one
    beyond the timestamps the warehouse can hold."""


def sql_dir() -> Path:
    return project_root() / "sql" / "analytics"


def load_sql(name: str, source: str = "raw") -> str:
    """The text of question `name`'s query on the raw table or (source="rollup") on the rollups."""
    if name not in QUESTIONS:
        raise AnalyticsError(f"unknown question {name!r}; one of {', '.join(QUESTIONS)}")
    if source not in ("raw", "rollup"):
        raise AnalyticsError(f"source must be raw or rollup here, not {source!r}")
    return (sql_dir() / ("rollup" if source == "rollup" else "") / f"{name}.sql").read_text(encoding="utf-8")


@dataclass(frozen=True)
class SqlFile:
    """A question's SQL file; a notebook shows it as a Markdown code block."""

    path: str
    text: str

    def _repr_markdown_(self) -> str:
        return f"`{self.path}`\n\n```sql\n{self.text.strip()}\n```"


def show_sql(name: str, source: str = "raw") -> SqlFile:
    """Question `name`'s file on the raw table or (source="rollup") on the rollups, with its path in the repository."""
    folder = "sql/analytics/rollup" if source == "rollup" else "sql/analytics"
    return SqlFile(f"{folder}/{name}.sql", load_sql(name, source))


def query(conn_or_dsn: psycopg.Connection | str, sql_text: str,
          params: Mapping[str, Any] | tuple | list | None = None) -> pd.DataFrame:
    """Run one read and return its rows as a DataFrame (columns kept when there are no rows).

    Given a DSN it opens a read-only connection for the call; a connection is used as it is. A question's
    file runs as `query(dsn, load_sql("funnel"), params)`.
    """
    if isinstance(conn_or_dsn, str):
        with read_only(conn_or_dsn) as conn:
            return query(conn, sql_text, params)
    rows, columns = _rows(conn_or_dsn, sql_text, params)
    return pd.DataFrame(rows, columns=columns)


def read_only(dsn: str) -> psycopg.Connection:
    """A read-only connection (warehouse.connect: a WarehouseError without the password if it fails) that never
    prepares statements: psycopg prepares one run five times, PostgreSQL then plans it once for any parameters, and
    the questions' optional filters ("all" or a value) stay in that plan as per-row tests (the dashboard's
    products and categories took twice as long at 10M events). Each run is planned for its own values."""
    conn = warehouse.connect(dsn)
    conn.read_only = True
    conn.prepare_threshold = None
    return conn


def _rows(conn: psycopg.Connection, text: str, params) -> tuple[list[dict[str, Any]], list[str]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(text, params)
        return cur.fetchall(), [column.name for column in cur.description or []]


def zone(tz: str) -> ZoneInfo:
    """The IANA time zone `tz`, or an AnalyticsError that says so."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise AnalyticsError(f"unknown time zone {tz!r}: use an IANA name such as UTC, Europe/Paris or "
                             "Asia/Ho_Chi_Minh") from None


def period(start: date, end: date, tz: str = "UTC") -> tuple[datetime, datetime]:
    """[start 00:00, end + 1 day 00:00) in `tz`, as UTC datetimes; the dates are inclusive."""
    if not isinstance(start, date) or not isinstance(end, date) or isinstance(start, datetime) \
            or isinstance(end, datetime):
        raise AnalyticsError("start and end must be dates (datetime.date), not times")
    if start > end:
        raise AnalyticsError(f"the range is reversed: from {start} is after to {end}")
    local = zone(tz)
    try:
        return (datetime.combine(start, time(0), local).astimezone(timezone.utc),
                datetime.combine(end + timedelta(days=1), time(0), local).astimezone(timezone.utc))
    except OverflowError:
        raise AnalyticsError(f"from {start} to {end} in {tz} reaches beyond the timestamps the warehouse can hold "
                             "(years 1 to 9999 in UTC): choose dates inside them") from None


def whole_hour_offsets(tz: str, start: datetime, end: datetime) -> bool:
    """Whether `tz` is a whole number of hours from UTC at every instant of [start, end)."""
    local = zone(tz)
    moment = start.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    while moment < end:
        if moment.astimezone(local).utcoffset() % _HOUR:
            return False
        moment += _HOUR
    return True


def pending_near(conn: psycopg.Connection, start: datetime) -> bool:
    """Whether a day from the day before `start` (UTC) on is waiting for its rollup refresh."""
    day = start.astimezone(timezone.utc).date()
    day -= timedelta(days=1 if day > date.min else 0)
    return conn.execute("SELECT EXISTS (SELECT 1 FROM rollup_pending WHERE day >= %s)", (day,)).fetchone()[0]


def choose_source(name: str, source: str, tz: str, start: datetime, end: datetime, pending: bool) -> str:
    """raw or rollup for question `name` (see the module docstring); source="rollup" that cannot be exact fails."""
    if source not in SOURCES:
        raise AnalyticsError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
    hourly_ok = name not in HOURLY_QUESTIONS or whole_hour_offsets(tz, start, end)
    if source == "rollup" and not hourly_ok:
        raise AnalyticsError(f"{name} cannot be read from the UTC-hour rollups in {tz}: its offset from UTC is "
                             "not a whole number of hours; use source raw or auto")
    if source == "auto":
        return "rollup" if hourly_ok and not pending else "raw"
    return source


def run_question(name: str, conn_or_dsn: psycopg.Connection | str, start: date, end: date, tz: str = "UTC", *,
                 include_bots: bool = False, source: str = "auto", limit: int | None = None) -> pd.DataFrame:
    """Answer question `name` for the dates [start, end] in `tz` (see load_sql for the queries)."""
    if isinstance(conn_or_dsn, str):
        with read_only(conn_or_dsn) as conn:
            return run_question(name, conn, start, end, tz, include_bots=include_bots, source=source, limit=limit)
    rows, columns, chosen = _answer(name, conn_or_dsn, start, end, tz, include_bots, source, limit)
    frame = pd.DataFrame(rows, columns=columns)
    frame.attrs["source"] = chosen
    return frame


def both_ways(name: str, conn_or_dsn: psycopg.Connection | str, start: date, end: date,
              tz: str = "UTC") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Question `name`'s answers read from the raw events and from the rollups (an AnalyticsError when the
    rollups cannot answer it exactly)."""
    if isinstance(conn_or_dsn, str):
        with read_only(conn_or_dsn) as conn:
            return both_ways(name, conn, start, end, tz)
    from_raw, from_rollup = (run_question(name, conn_or_dsn, start, end, tz, source=source)
                             for source in ("raw", "rollup"))
    return from_raw, from_rollup


def compare_sources(conn_or_dsn: psycopg.Connection | str, start: date, end: date, tz: str = "UTC") -> pd.DataFrame:
    """One row per question: its rows read from the raw events and from the rollups, and whether the two answers
    are equal (`same answer`)."""
    if isinstance(conn_or_dsn, str):
        with read_only(conn_or_dsn) as conn:
            return compare_sources(conn, start, end, tz)
    compared = []
    for name in QUESTIONS:
        from_raw, from_rollup = both_ways(name, conn_or_dsn, start, end, tz)
        compared.append({"question": name, "rows (raw)": len(from_raw), "rows (rollup)": len(from_rollup),
                         "same answer": from_raw.equals(from_rollup)})
    return pd.DataFrame(compared).set_index("question")


def heatmap_cells(frame: pd.DataFrame) -> dict[tuple[int, int], int]:
    """{(dow, hour): events} of the cells with events of a peak_activity or dashboard heatmap answer."""
    return {(int(dow), int(hour)): int(events)
            for dow, hour, events in zip(frame["dow"], frame["hour"], frame["events"]) if events}


def follow_cells(utc: pd.DataFrame, local: pd.DataFrame, first: date, tz: str) -> pd.DataFrame:
    """Each cell of `utc` (a peak_activity answer in UTC for a range starting on `first`, a Monday) followed to its
    cell in `tz`: the UTC and local weekday and hour, with the events of each cell in its own answer."""
    if first.weekday() != 0:
        raise AnalyticsError(f"the range must start on a Monday to name its weekdays, not on {first:%A}")
    utc_cells, local_cells = heatmap_cells(utc), heatmap_cells(local)
    rows = []
    for dow, hour in zip(utc["dow"], utc["hour"]):
        moment = datetime.combine(first + timedelta(days=int(dow)), time(int(hour)), timezone.utc)
        there = moment.astimezone(zone(tz))
        rows.append({"UTC": f"{moment:%a %H:00}", "events in UTC": utc_cells.get((int(dow), int(hour)), 0),
                     tz: f"{there:%a %H:00}", f"events in {tz}": local_cells.get((there.weekday(), there.hour), 0)})
    return pd.DataFrame(rows, columns=["UTC", "events in UTC", tz, f"events in {tz}"])


def _answer(name: str, conn: psycopg.Connection, start: date, end: date, tz: str, include_bots: bool, source: str,
            limit: int | None = None, pending: bool | None = None) -> tuple[list[dict[str, Any]], list[str], str]:
    """(rows, columns, source used) of one question; `pending` (rollups not fresh near the range) is looked up
    when not given."""
    if name not in QUESTIONS:
        raise AnalyticsError(f"unknown question {name!r}; one of {', '.join(QUESTIONS)}")
    lo, hi = period(start, end, tz)
    if pending is None:
        pending = source == "auto" and pending_near(conn, lo)
    chosen = choose_source(name, source, tz, lo, hi, pending)
    params = {"start": lo, "end": hi, "tz": tz, "include_bots": bool(include_bots), "limit": limit}
    rows, columns = _rows(conn, load_sql(name, chosen), params)
    return rows, columns, chosen


def report(dsn: str | psycopg.Connection, start: date, end: date, tz: str = "UTC", include_bots: bool = False,
           source: str = "auto") -> dict[str, Any]:
    """Every answer for the dates [start, end] in `tz`, as one JSON-ready dict.

    Keys: from, to, tz, include_bots, start, end (the UTC bounds), event_counts {name: n}, daily_event_counts
    {day: {name: n}}, page_views [{page_path, page_views}], top_products [{product_id, product_name,
    category, brand, views, add_to_cart, purchases, revenue, view_to_purchase}] (every product, best
    revenue first), categories [same per category], funnel [{step, sessions, conversion, drop_off}] in step
    order, funnel_conversion (purchase / product_view sessions), peak_activity [{dow, hour, events}] (dow 0 =
    Monday, cells with events), sessions {sessions, visitors, bounces, signed_in_sessions, events, bounce_rate,
    sessions_per_visitor, signed_in_share}, sources {question: raw | rollup}. Revenue is an exact decimal
    string with 2 decimals ("1234.50"); rates are floats, null when undefined.
    """
    if isinstance(dsn, str):
        with read_only(dsn) as conn:
            return report(conn, start, end, tz, include_bots, source)
    lo, hi = period(start, end, tz)
    pending = source == "auto" and pending_near(dsn, lo)
    answers, sources = {}, {}
    for name in QUESTIONS:
        rows, _, sources[name] = _answer(name, dsn, start, end, tz, include_bots, source, pending=pending)
        answers[name] = _records(rows)
    funnel = [{key: value for key, value in row.items() if key != "step_index"} for row in answers["funnel"]]
    first, last = funnel[0]["sessions"], funnel[-1]["sessions"]
    daily: dict[str, dict[str, int]] = {}
    for row in answers["daily_event_counts"]:
        daily.setdefault(row["day"], {})[row["event_name"]] = row["events"]
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "tz": tz,
        "include_bots": include_bots,
        "start": lo.isoformat(),
        "end": hi.isoformat(),
        "event_counts": {row["event_name"]: row["events"] for row in answers["event_counts"]},
        "daily_event_counts": daily,
        "page_views": answers["page_views"],
        "top_products": answers["top_products"],
        "categories": answers["product_categories"],
        "funnel": funnel,
        "funnel_conversion": last / first if first else None,
        "peak_activity": answers["peak_activity"],
        "sessions": answers["sessions"][0],
        "sources": sources,
    }


def data_range(conn_or_dsn: psycopg.Connection | str, tz: str = "UTC") -> tuple[date, date] | None:
    """First and last day (in `tz`) with events, from the hourly rollup and the pending days' events
    (sql/analytics/dashboard/data_range.sql); None if empty."""
    zone(tz)
    frame = query(conn_or_dsn, (sql_dir() / "dashboard" / "data_range.sql").read_text(encoding="utf-8"), {"tz": tz})
    first, last = frame.iloc[0]
    return None if first is None or pd.isna(first) else (first, last)


def _records(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: _json_value(value) for key, value in row.items()} for row in rows]


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


def resolve_range(conn_or_dsn: psycopg.Connection | str, start: date | None, end: date | None, tz: str = "UTC",
                  days: int = 7) -> tuple[date, date]:
    """The dates to report on: both given as they are; one given, the `days` days from or to it; none, the
    last `days` days that have data (fewer when the data starts later). AnalyticsError when there is no data."""
    zone(tz)
    if start is not None and end is not None:
        return start, end
    try:
        if start is not None:
            return start, start + timedelta(days=days - 1)
        if end is not None:
            return end - timedelta(days=days - 1), end
    except OverflowError:
        raise AnalyticsError(f"{days} days from {start or end} reach beyond the calendar (years 1 to 9999): "
                             "give both --from and --to") from None
    found = data_range(conn_or_dsn, tz)
    if found is None:
        raise AnalyticsError("the warehouse has no events yet: run `clickstream simulate` then `clickstream etl`, "
                             "or give --from and --to")
    first, last = found
    return max(first, last - timedelta(days=days - 1)), last


def format_report(result: Mapping[str, Any], top: int = 10) -> str:
    """The report as plain-text tables, for a terminal."""
    bots = "bots included" if result["include_bots"] else "bots excluded"
    sections = [f"Report {result['from']} to {result['to']} ({result['tz']}, {bots}; "
                f"{result['start']} <= event_timestamp < {result['end']})"]

    def table(title: str, rows: Any, **kwargs: Any) -> None:
        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
        body = "(no data)" if frame.empty else frame.to_string(**{"index": False, **kwargs})
        sections.append(f"{title}\n{body}")

    table("Events by name", [{"event_name": k, "events": v} for k, v in result["event_counts"].items()])
    daily = pd.DataFrame(result["daily_event_counts"]).T.fillna(0).astype(int).sort_index()
    table("Events per day", daily.rename_axis("day"), index=True)
    table(f"Page views (top {top})", result["page_views"][:top])
    products = pd.DataFrame(result["top_products"][:top])
    if not products.empty:
        products["view_to_purchase"] = products["view_to_purchase"].map(_percent)
        products = products.drop(columns="brand")
    table(f"Top products by revenue (top {top} of {len(result['top_products'])})", products)
    sections[-1] += f"\n{REVENUE_CLAIM}"
    categories = pd.DataFrame(result["categories"])
    if not categories.empty:
        categories["view_to_purchase"] = categories["view_to_purchase"].map(_percent)
    table("Categories", categories)
    funnel = pd.DataFrame(result["funnel"])
    funnel["conversion"] = funnel["conversion"].map(_percent)
    funnel["drop_off"] = funnel["drop_off"].map(lambda n: "" if n is None or n != n else f"{int(n):,}")
    table(f"Funnel (sessions, steps in order; product view -> purchase {_percent(result['funnel_conversion'])})",
          funnel)
    cells = sorted(result["peak_activity"], key=lambda cell: (-cell["events"], cell["dow"], cell["hour"]))[:top]
    table(f"Peak activity (busiest {len(cells)} hours, {result['tz']})",
          [{"day": DAY_NAMES[c["dow"]], "hour": f"{c['hour']:02d}:00", "events": c["events"]} for c in cells])
    sessions = dict(result["sessions"])
    for key in ("bounce_rate", "signed_in_share"):
        sessions[key] = _percent(sessions[key])
    if sessions["sessions_per_visitor"] is not None:
        sessions["sessions_per_visitor"] = f"{sessions['sessions_per_visitor']:.2f}"
    table("Sessions (30 minutes of inactivity)", [{"measure": k, "value": v} for k, v in sessions.items()])
    sources = sorted(set(result["sources"].values()))
    sections.append(f"read from: {', '.join(sources)}")
    return "\n\n".join(sections)


def _percent(value: float | None) -> str:
    return "" if value is None or value != value else f"{value:.1%}"
