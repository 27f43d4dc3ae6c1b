"""The dashboards' data layer: one SQL file of `sql/analytics/dashboard/` per panel, run read-only.

    f = dashboard.Filters(date(2026, 11, 16), date(2026, 11, 22), tz="Europe/Paris", device="mobile")
    dashboard.kpis(conn, f), dashboard.kpis(conn, f.previous())      # the KPIs and those of the period before
    dashboard.funnel(conn, f, breakdown="traffic_source")
    dashboard.kpis_by(conn, f, "device")                              # the KPIs for each device the page offers

A range is inclusive and in the business time zone `tz`: from `start` 00:00 to `end` + 1 day 00:00 there.
The same definitions as `clickstream report` (shiny/app.py and shiny/app.R show them):

- Session-scoped: sessions (DW sessions, 30 minutes of inactivity per client_id and bot flag, that start in
  the range), visitors (distinct client_id of those sessions), the funnel (sessions reaching product_view ->
  add_to_cart -> begin_checkout -> purchase in that order), conversion (purchase sessions / product-view
  sessions), trend's sessions (by the hour or day of their start). A session's device, login state (signed
  in: its first event has a user_id) and traffic source (utm_source, "(direct)" when null; device
  "(unknown)" when null) are those of its FIRST event.
- Event-scoped: events, revenue (sum of the purchase events' value, the shopper's claim), products,
  categories, product_trend, trend's events and the heatmap use each event's own device_category and
  signed-in state (user_id is not null).
- Bots are excluded unless include_bots.

Each file takes only the parameters start, end (timestamptz), tz, login_state, device, include_bots, breakdown,
grain and product_id (`%(name)s` placeholders, which shiny/app.R binds itself), and aggregates in SQL: on the
UTC-hour rollups (migration 0007 gave them these dimensions) when they answer exactly, else on the events
table (a time zone whose offset is not a whole number of hours, such as Asia/Kolkata, or days whose rollups
are not refreshed yet); `source(conn, f)` says which.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg

from clickstream.analytics import questions
from clickstream.analytics.questions import AnalyticsError

LOGIN_STATES = ("all", "signed_in", "anonymous")
DEVICES = ("all", "desktop", "mobile", "tablet")
BREAKDOWNS = ("none", "device", "login_state", "traffic_source")
GRAINS = ("hour", "day")
FILES = ("kpis", "funnel", "products", "categories", "product_trend", "trend", "heatmap", "data_range")


@dataclass(frozen=True)
class Filters:
    """What every panel is filtered by; `start` and `end` are inclusive dates in `tz`."""

    start: date
    end: date
    tz: str = "UTC"
    login_state: str = "all"
    device: str = "all"
    include_bots: bool = False

    def previous(self) -> Filters:
        """The period of the same length just before this one."""
        days = (self.end - self.start).days + 1
        try:
            return replace(self, start=self.start - timedelta(days=days), end=self.start - timedelta(days=1))
        except OverflowError:
            raise AnalyticsError(f"no period before {self.start}: the calendar starts in year 1") from None

    def params(self) -> dict[str, Any]:
        """The SQL parameters (start, end: the UTC bounds of the range), after checking every filter."""
        if self.login_state not in LOGIN_STATES:
            raise AnalyticsError(f"login_state must be one of {', '.join(LOGIN_STATES)}, not {self.login_state!r}")
        if self.device not in DEVICES:
            raise AnalyticsError(f"device must be one of {', '.join(DEVICES)}, not {self.device!r}")
        if not isinstance(self.include_bots, bool):
            raise AnalyticsError(f"include_bots must be true or false, not {self.include_bots!r}")
        lo, hi = questions.period(self.start, self.end, self.tz)
        return {"start": lo, "end": hi, "tz": self.tz, "login_state": self.login_state, "device": self.device,
                "include_bots": self.include_bots}


def sql_path(name: str) -> Path:
    if name not in FILES:
        raise AnalyticsError(f"unknown dashboard query {name!r}; one of {', '.join(FILES)}")
    return questions.sql_dir() / "dashboard" / f"{name}.sql"


def load_sql(name: str) -> str:
    """The text of the dashboard query `name` (sql/analytics/dashboard/<name>.sql)."""
    return sql_path(name).read_text(encoding="utf-8")


def _run(conn: psycopg.Connection, name: str, f: Filters, **extra: Any) -> pd.DataFrame:
    params = {**f.params(), **extra}
    no_jit(conn)
    return questions.query(conn, load_sql(name), params)


def no_jit(conn: psycopg.Connection) -> None:
    """Turn JIT compilation off for the connection's session (the local stack's server has it off; a
    warehouse may not): each file's events-table branch, skipped at run time, makes the planner's estimate
    high enough to compile every query, 30-300 ms where the rollup branch runs in 5-20 ms (300k events).
    Other clients of the files should do the same."""
    conn.execute("SET jit = off")


def kpis_by(conn: psycopg.Connection, f: Filters, field: str, values: tuple[Any, ...] | None = None
            ) -> dict[Any, dict[str, Any]]:
    """The KPIs of `f` with the filter `field` set to each of `values` (by default every choice the page offers:
    the devices, the login states, bots excluded and included), as the page shows them after each choice."""
    offered = {"device": DEVICES, "login_state": LOGIN_STATES, "include_bots": (False, True)}
    if values is None:
        if field not in offered:
            raise AnalyticsError(f"give the values of {field!r}; the page offers defaults for {', '.join(offered)}")
        values = offered[field]
    return {value: kpis(conn, replace(f, **{field: value})) for value in values}


def format_change(key: str, value: Any, before: Any) -> tuple[str, str]:
    """(text, direction: up, down or flat) of a KPI's change against the previous period, as the page shows it:
    percentage points for the conversion, a relative change for the others."""
    if key == "conversion":
        if value is None or before is None:
            return "no conversion to compare", "flat"
        delta = (value - before) * 100
        return f"{delta:+.2f} pp vs previous period", direction(delta)
    if before == 0:
        return ("new: none in the previous period" if value else "none in either period"), direction(value)
    change = (value - before) / before
    return f"{change:+.1%} vs previous period", direction(change)


def direction(delta: Any) -> str:
    return "up" if delta > 0 else "down" if delta < 0 else "flat"


def _choice(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise AnalyticsError(f"{what} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def kpis(conn: psycopg.Connection, f: Filters) -> dict[str, Any]:
    """events, sessions, visitors, product_view_sessions, purchase_sessions, conversion (None without product
    views) and revenue (Decimal) of the range."""
    row = _run(conn, "kpis", f).iloc[0].to_dict()
    result = {key: int(row[key]) for key in ("events", "sessions", "visitors", "product_view_sessions",
                                             "purchase_sessions")}
    conversion = row["conversion"]
    result["conversion"] = None if conversion is None or pd.isna(conversion) else float(conversion)
    result["revenue"] = Decimal(row["revenue"])
    return result


def funnel(conn: psycopg.Connection, f: Filters, breakdown: str = "none") -> pd.DataFrame:
    """segment, step_index, step, sessions, conversion (of the previous step), drop_off, per segment of
    `breakdown` ("all" for none)."""
    return _run(conn, "funnel", f, breakdown=_choice(breakdown, BREAKDOWNS, "breakdown"))


def products(conn: psycopg.Connection, f: Filters) -> pd.DataFrame:
    """product_id, product_name, category, views, add_to_cart, purchases, conversion (purchases / views),
    revenue; best revenue first."""
    return _run(conn, "products", f)


def categories(conn: psycopg.Connection, f: Filters) -> pd.DataFrame:
    """category, views, add_to_cart, purchases, conversion, revenue; best revenue first."""
    return _run(conn, "categories", f)


def product_trend(conn: psycopg.Connection, f: Filters, product_id: str) -> pd.DataFrame:
    """day (in tz, every day of the range), views, add_to_cart, purchases, revenue of one product."""
    if not isinstance(product_id, str) or not product_id:
        raise AnalyticsError("product_id must be a product's id (a non-empty string)")
    return _run(conn, "product_trend", f, product_id=product_id)


def trend(conn: psycopg.Connection, f: Filters, grain: str = "day") -> pd.DataFrame:
    """bucket (local timestamp in tz, every hour or day of the range), events, sessions (starting in it)."""
    return _run(conn, "trend", f, grain=_choice(grain, GRAINS, "grain"))


def heatmap(conn: psycopg.Connection, f: Filters) -> pd.DataFrame:
    """dow (0 = Monday), hour (0-23) in tz, events: all 168 cells."""
    return _run(conn, "heatmap", f)


def source(conn: psycopg.Connection, f: Filters) -> str:
    """"rollup" or "raw": what the queries read for `f` (the SQL function dashboard_reads_rollups, the rule of
    questions.choose_source: whole UTC hours, a time zone a whole number of hours from UTC, no pending day)."""
    params = f.params()
    reads = conn.execute("SELECT dashboard_reads_rollups(%(start)s, %(end)s, %(tz)s)", params).fetchone()[0]
    return "rollup" if reads else "raw"


def data_range(conn: psycopg.Connection, tz: str = "UTC") -> tuple[date, date] | None:
    """First and last day (in `tz`) with events; None when the warehouse is empty."""
    no_jit(conn)
    return questions.data_range(conn, tz)
