"""The Python dashboard (shiny/app.py) in a real Chromium: first full render and the time of each filter change.

The app is the one `clickstream up` starts (clickstream.local.dashboard, reading as dashboard_reader), driven
by Playwright in Chromium ($CHROMIUM, else Debian's /usr/bin/chromium, else Playwright's own), 1300x2400 px.

Warehouse: `--home HOME`, a stack folder such as `query_latency.py --keep HOME` leaves (the 10M one is built with
`query_latency.py --events 10000000 --days 7 --keep /work/bench10m`): started on free ports if it is not
running and stopped again after; or, without `--home`, a private stack built on the fly with about `--events`
events (dashboard_queries.py's loaded_stack: the query benchmark's data, rollups refreshed).

Measured (milliseconds; median and nearest-rank p95):

- first full render: from navigation start (performance.timeOrigin) to the first moment, seen by a
  MutationObserver, when every panel is rendered: each KPI's value, the four charts drawn by Chart.js (their
  canvas, marked data-drawn once drawn), a row in each of the three tables, the product trend's title, no output `.recalculating` and Shiny not busy. `--loads` page
  loads, each in a fresh browser profile (a new Shiny session and connection), after one warm-up load.
- each filter change: from Shiny's `shiny:inputchanged` of the changed input in the page (the moment the client
  sends it), once the page has been quiet for 0.5 s, to the arrival (`shiny:message`) of the last message with
  output values that follows: "server", the server's time for every output the change updates, the loopback hop
  included, the browser's drawing not (held to the target); and to the last `shiny:value`: "settled", which also
  counts the browser drawing the outputs before it in each message (the charts and grids are drawn in the
  browser; Shiny fires an output's `shiny:value` after drawing the ones before it). Both count the round the
  products grid itself starts after redrawing (its view inputs); "first round" (of settled) stops at the
  server's first `shiny:idle`. Per input id, `--changes`
  changes, each to a value other than the current one: date_range (the whole range <-> its last 3 days), tz
  (to each zone the page offers and back to UTC: every whole-hour zone is held to the target, Asia/Kolkata
  reads raw events and is only reported), login_state, device, include_bots, compare, funnel_breakdown,
  trend_grain, and choosing a product (a row of products_table).
- the original workshop's approach in the same run, over the same range: select the raw rows of the range (and
  of the previous period, for the comparison) as dashboard_reader, streamed with COPY into pandas, and compute
  the same panels there (KPIs, funnel, products, categories, product trend, trend, heatmap). Its "first render"
  and its "change that re-reads" (date_range, tz) are the select + compute; its "change that re-aggregates"
  (login_state, device, include_bots) is the compute on rows already in memory. Server time only: no page, no
  drawing, so it is a lower bound of that app's times.
- where the server's time goes: each panel's query, the eight of them started at once on shiny/app.py's Readers
  (its pool of reader connections, as a change starts them), and each chart's Chart.js config built by
  clickstream.analytics.dashboard_charts (as shiny/app.py does) and serialized to JSON, in this process, median
  of `--baseline-repeat` runs over the whole range.

Targets (issue 14): first full render <= 1 s; each change <= 200 ms p95, for every filter and whole-hour zone.

    .venv/bin/python benchmarks/dashboard_render.py --home /work/bench10m [--loads 10] [--changes 10]
                                                    [--baseline-repeat 3] [--json out.json]
    .venv/bin/python benchmarks/dashboard_render.py --events 200000 --days 7     # a small warehouse, built here
"""

from __future__ import annotations

import argparse
import io
import json
import os
import runpy
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import psycopg
from playwright.sync_api import Page, sync_playwright
from shiny.playwright import controller

sys.path.insert(0, str(Path(__file__).resolve().parent))
APP = Path(__file__).resolve().parents[1] / "shiny" / "app.py"
import dashboard_queries  # noqa: E402  (the small warehouse built on the fly, kept stacks, timing)
import query_latency  # noqa: E402  (its range and percentile)

from clickstream.analytics import dashboard, dashboard_charts, questions  # noqa: E402
from clickstream.local import stack  # noqa: E402
from clickstream.settings import Settings  # noqa: E402
from clickstream.shop.browser import CHROMIUM_ARGS, NO_CHROMIUM, find_chromium  # noqa: E402

RENDER_TARGET_MS = 1000.0
CHANGE_TARGET_MS = 200.0
RAW_ZONES = ("Asia/Kolkata",)  # not a whole number of hours from UTC: the events table answers
QUIET_MS = 500
WAIT_MS = 120_000
KPIS = ("events", "sessions", "visitors", "conversion", "revenue")
PLOTS = ("funnel_plot", "trend_plot", "product_trend_plot", "heatmap_plot")
TABLES = ("funnel_table", "products_table", "categories_table")
SESSION_GAP = pd.Timedelta(minutes=30)
FUNNEL = ("product_view", "add_to_cart", "begin_checkout", "purchase")

# Records, from the page's first script on, what the measurements read: input changes, output values, idle
# moments (performance.now(), ms since navigation start), and the first moment every panel is rendered.
RECORDER = """
(() => {
  const b = window.__bench = {changes: [], values: [], received: [], idle: [], errors: [], mark: 0, rendered: null};
  const has = (sel) => document.querySelector(sel) !== null;
  const complete = () => %(kpis)s.every(k => has(`#kpi_${k} .kpi-value`))
      && %(plots)s.every(p => has(`#${p}[data-drawn] canvas`))
      && %(tables)s.every(t => has(`#${t} tbody tr`))
      && (document.querySelector('#product_trend_title')?.textContent || '').trim() !== ''
      && !has('.recalculating') && !document.documentElement.classList.contains('shiny-busy');
  new MutationObserver(() => { if (b.rendered === null && complete()) b.rendered = performance.now(); })
      .observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
  document.addEventListener('DOMContentLoaded', () => {
    const $ = window.jQuery;
    $(document).on('shiny:inputchanged', e => {
      if (!e.name.startsWith('.clientdata')) b.changes.push([e.name, performance.now()]);
    });
    $(document).on('shiny:message', e => {
      if (Object.keys(e.message.values || {}).length) b.received.push(performance.now());
    });
    $(document).on('shiny:value', e => b.values.push([e.name, performance.now()]));
    $(document).on('shiny:error', e => { b.values.push([e.name, performance.now()]); b.errors.push(e.name); });
    $(document).on('shiny:idle', () => b.idle.push(performance.now()));
  });
  b.quiet = (ms) => {
    const change = b.changes.find(c => c[1] >= b.mark);
    const values = change ? b.values.filter(v => v[1] >= change[1]) : [];
    const last = Math.max(...b.changes.map(c => c[1]), ...b.values.map(v => v[1]));
    return values.length > 0 && !document.documentElement.classList.contains('shiny-busy')
        && performance.now() - last >= ms;
  };
})();
""" % {"kpis": json.dumps(KPIS), "plots": json.dumps(PLOTS), "tables": json.dumps(TABLES)}


# --- figures ---------------------------------------------------------------------------------------------------
def summary(times: list[float]) -> dict:
    """median, nearest-rank p95 and the count of `times` (ms)."""
    return {"median_ms": round(statistics.median(times), 1), "p95_ms": round(query_latency.percentile(times, 95), 1),
            "n": len(times)}


def change_timing(changes: list, values: list, idle: list[float], mark: float, received: list[float]) -> dict:
    """A change's timing from the page's records ([name, ms] pairs; idle and received ms): the first input change
    at or after `mark`, then "server" to the last message with values received after it, "settled" to the last
    output value after it and "first round" to the last value before the first idle that follows a value."""
    try:
        name, t0 = next((n, t) for n, t in changes if t >= mark)
    except StopIteration:
        raise ValueError("no input changed after the mark") from None
    after = [(n, t) for n, t in values if t >= t0]
    if not after:
        raise ValueError(f"no output updated after {name} changed")
    first_idle = min((t for t in idle if t >= after[0][1]), default=float("inf"))
    first_round = [t for _, t in after if t <= first_idle]
    server = max((t for t in received if t >= t0), default=after[-1][1])
    return {"input": name, "server_ms": server - t0, "settled_ms": after[-1][1] - t0,
            "first_round_ms": first_round[-1] - t0,
            "outputs": sorted({n for n, _ in after})}


# --- the warehouse and the app ---------------------------------------------------------------------------------
@contextmanager
def warehouse(args) -> Iterator[tuple[Settings, dict]]:
    """(settings, data figures) of `--home` or of a small warehouse built here."""
    if args.home:
        with dashboard_queries.kept_stack(args.home) as settings:
            yield settings, {"home": str(args.home)}
    else:
        with dashboard_queries.loaded_stack(args.events, args.days, args.workers) as (settings, _, figures):
            yield settings, figures


def new_page(browser, url: str) -> Page:
    context = browser.new_context(viewport={"width": 1300, "height": 2400})
    context.add_init_script(RECORDER)
    page = context.new_page()
    page.goto(url)
    page.wait_for_function("window.__bench.rendered !== null", timeout=WAIT_MS)
    return page


def first_renders(browser, url: str, loads: int) -> tuple[float, list[float]]:
    """(the warm-up load's ms, each further load's ms) to every panel rendered."""
    times = []
    for _ in range(loads + 1):
        page = new_page(browser, url)
        try:
            times.append(page.evaluate("window.__bench.rendered"))
            errors = page.evaluate("window.__bench.errors")
            if errors:
                raise RuntimeError(f"outputs failed to render: {errors}")
        finally:
            page.context.close()
    return times[0], times[1:]


def timed_change(page: Page, act: Callable[[], None]) -> dict:
    """Run `act` (one input change) and time it from the page's records, once the page is quiet."""
    mark = page.evaluate("window.__bench.mark = performance.now()")
    act()
    page.wait_for_function(f"window.__bench.quiet({QUIET_MS})", timeout=WAIT_MS)
    b = page.evaluate("({changes: __bench.changes, values: __bench.values, idle: __bench.idle, "
                      "errors: __bench.errors, received: __bench.received})")
    if b["errors"]:
        raise RuntimeError(f"outputs failed to render: {b['errors']}")
    return change_timing(b["changes"], b["values"], b["idle"], mark, b["received"])


def set_dates(page: Page, start: date, end: date) -> None:
    """Both ends at once, as one input change (the date widgets' own typing sends each end separately)."""
    page.evaluate("([s, e]) => Shiny.setInputValue('date_range:shiny.date', [s, e])", [str(start), str(end)])


def change_plan(page: Page, first: date, last: date) -> Iterator[tuple[str, str, Callable[[], None]]]:
    """(input id, case, act) of every change, in an order where each one changes its input's value."""
    short = last - timedelta(days=2)
    for dates in ((short, last), (first, last)):
        yield "date_range", f"{dates[0]}..{dates[1]}", lambda d=dates: set_dates(page, *d)
    zones = [z for z in page.locator("#tz option").evaluate_all("options => options.map(o => o.value)") if z != "UTC"]
    for zone in zones:
        yield "tz", zone, lambda z=zone: controller.InputSelect(page, "tz").set(z)
        yield "tz", "UTC", lambda: controller.InputSelect(page, "tz").set("UTC")
    for input_id, values, kind in (("login_state", ("signed_in", "anonymous", "all"), controller.InputSelect),
                                   ("device", ("desktop", "mobile", "tablet", "all"), controller.InputSelect),
                                   ("funnel_breakdown", ("device", "login_state", "traffic_source", "none"),
                                    controller.InputRadioButtons),
                                   ("trend_grain", ("hour", "day"), controller.InputRadioButtons)):
        for value in values:
            yield input_id, value, lambda i=input_id, v=value, k=kind: k(page, i).set(v)
    for input_id in ("include_bots", "compare"):
        for value in (True, False) if input_id == "include_bots" else (False, True):
            yield input_id, str(value).lower(), lambda i=input_id, v=value: controller.InputSwitch(page, i).set(v)
    for row in (1, 2, 3):
        yield "product", f"row {row}", lambda r=row: controller.OutputDataFrame(page, "products_table").select_rows([r])


def filter_changes(browser, url: str, first: date, last: date, changes: int) -> list[dict]:
    """Every planned change, `changes` rounds, on one page opened on the whole range."""
    page = new_page(browser, url)
    try:
        set_dates(page, first, last)
        page.wait_for_function(f"window.__bench.quiet({QUIET_MS})", timeout=WAIT_MS)
        timings = []
        for _ in range(changes):
            for input_id, case, act in change_plan(page, first, last):
                timing = timed_change(page, act)
                timings.append({"input_id": input_id, "case": case, **timing})
        return timings
    finally:
        page.context.close()


def change_rows(timings: list[dict]) -> list[dict]:
    """Per input id (tz: per zone), server, settled and first-round median/p95, and whether the server time
    meets the target (where it applies)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for t in timings:
        key = (t["input_id"], t["case"] if t["input_id"] == "tz" else "")
        groups.setdefault(key, []).append(t)
    rows = []
    for (input_id, case), group in groups.items():
        server, settled, first_round = (summary([t[key] for t in group])
                                        for key in ("server_ms", "settled_ms", "first_round_ms"))
        held = case not in RAW_ZONES
        rows.append({"input_id": input_id, "case": case, "server": server, "settled": settled,
                     "first_round": first_round, "target_ms": CHANGE_TARGET_MS if held else None,
                     "met": server["p95_ms"] <= CHANGE_TARGET_MS if held else None,
                     "outputs": sorted({o for t in group for o in t["outputs"]})})
    return rows


# --- the original workshop's approach: raw rows of the range, aggregated in the app ----------------------------
RAW_ROWS = """COPY (
    SELECT event_timestamp, event_name, client_id, is_bot, user_id IS NOT NULL AS signed_in, device_category,
           utm_source, context_product_id, context_product_name, context_product_category, value
    FROM clickstream_events WHERE event_timestamp >= %s AND event_timestamp < %s
) TO STDOUT (FORMAT csv, HEADER)"""


def select_rows(conn: psycopg.Connection, start: date, end: date, tz: str) -> pd.DataFrame:
    """The raw rows of [start, end + 1 day) in tz, as the original app selects them."""
    zone = ZoneInfo(tz)
    lo, hi = (datetime.combine(day, datetime.min.time(), zone) for day in (start, end + timedelta(days=1)))
    buffer = io.BytesIO()
    with conn.cursor() as cur, cur.copy(RAW_ROWS, (lo, hi)) as copy:
        for block in copy:
            buffer.write(block)
    buffer.seek(0)
    rows = pd.read_csv(buffer, dtype={"event_name": "category", "client_id": "category", "device_category": "category",
                                      "utm_source": "category", "context_product_id": "category", "is_bot": "string",
                                      "signed_in": "string"})
    rows["event_timestamp"] = pd.to_datetime(rows["event_timestamp"], utc=True, format="ISO8601").dt.tz_convert(tz)
    for flag in ("is_bot", "signed_in"):
        rows[flag] = rows[flag] == "t"
    return rows


def keep(rows: pd.DataFrame, login_state: str, device: str, include_bots: bool) -> pd.Series:
    """Rows (events, or sessions by their first event) the filters keep."""
    kept = pd.Series(True, index=rows.index) if include_bots else ~rows["is_bot"]
    if device != "all":
        kept &= rows["device_category"] == device
    if login_state != "all":
        kept &= rows["signed_in"] == (login_state == "signed_in")
    return kept


def sessions(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per session (30 minutes of inactivity per client and bot flag): its first event's columns, start
    and the time it reached each funnel step in order (NaT when not)."""
    ordered = rows.sort_values(["client_id", "is_bot", "event_timestamp"], kind="stable")
    same = (ordered["client_id"] == ordered["client_id"].shift()) & (ordered["is_bot"] == ordered["is_bot"].shift())
    new = ~same | (ordered["event_timestamp"] - ordered["event_timestamp"].shift() > SESSION_GAP)
    ordered = ordered.assign(session=new.cumsum())
    result = ordered[new].set_index("session")
    reached = pd.Series(pd.Timestamp.min.tz_localize("UTC"), index=result.index)
    for step in FUNNEL:
        events = ordered[ordered["event_name"] == step]
        after = events["event_timestamp"] > reached.reindex(events["session"]).to_numpy()
        reached = events[after].groupby("session")["event_timestamp"].min().reindex(result.index)
        result[step] = reached
    return result


def original_panels(rows: pd.DataFrame, previous: pd.DataFrame | None, login_state: str, device: str,
                    include_bots: bool) -> dict:
    """The dashboard's panels computed in the app from raw rows (and the previous period's KPIs)."""
    def kpis(frame: pd.DataFrame) -> dict:
        events = frame[keep(frame, login_state, device, include_bots)]
        session = sessions(frame)
        session = session[keep(session, login_state, device, include_bots)]
        viewed, bought = session["product_view"].notna().sum(), session["purchase"].notna().sum()
        return {"events": len(events), "sessions": len(session), "visitors": session["client_id"].nunique(),
                "conversion": bought / viewed if viewed else None,
                "revenue": events.loc[events["event_name"] == "purchase", "value"].sum(), "frame": events,
                "session_rows": session}

    now = kpis(rows)
    events, session = now.pop("frame"), now.pop("session_rows")
    products = (events[events["event_name"].isin(["product_view", "add_to_cart", "purchase"])]
                .pivot_table(index="context_product_id", columns="event_name", values="event_timestamp",
                             aggfunc="count", observed=True, fill_value=0))
    purchases = events[events["event_name"] == "purchase"]
    revenue = purchases.groupby("context_product_id", observed=True)["value"].sum()
    products = products.assign(revenue=revenue).sort_values("revenue", ascending=False)
    categories = events.groupby(["context_product_category", "event_name"], observed=True).size().unstack(fill_value=0)
    top = products.index[0] if len(products) else None
    local = events["event_timestamp"]
    return {
        "kpis": now, "previous": kpis(previous) if previous is not None else None,
        "funnel": {step: int(session[step].notna().sum()) for step in FUNNEL},
        "products": products, "categories": categories,
        "product_trend": events[events["context_product_id"] == top].groupby(
            [local.dt.date, "event_name"], observed=True).size(),
        "trend": (events.groupby(local.dt.floor("D")).size(), session.groupby(
            session["event_timestamp"].dt.floor("D")).size()),
        "heatmap": events.groupby([local.dt.day_of_week, local.dt.hour]).size(),
    }


def original_approach(reader_dsn: str, first: date, last: date, repeat: int) -> dict:
    """Select + compute ("first render", "change that re-reads") and compute only ("change that re-aggregates")."""
    days = (last - first).days + 1
    reads, computes = [], []
    with psycopg.connect(reader_dsn, autocommit=True) as conn:
        for n in range(repeat):
            started = time.perf_counter()
            rows = select_rows(conn, first, last, "UTC")
            previous = select_rows(conn, first - timedelta(days=days), first - timedelta(days=1), "UTC")
            original_panels(rows, previous, "all", "all", False)
            reads.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            original_panels(rows, previous, ("all", "signed_in", "anonymous")[n % 3], "mobile", bool(n % 2))
            computes.append((time.perf_counter() - started) * 1000)
    return {"rows": len(rows), "select_and_compute": summary(reads), "compute_only": summary(computes)}


# --- where a change's server time goes ------------------------------------------------------------------------
def server_breakdown(reader_dsn: str, first: date, last: date, repeat: int) -> dict:
    """Median ms of each panel's query (clickstream.analytics.dashboard), of all eight started at once on
    shiny/app.py's Readers (as a change starts them) and of building each chart's Chart.js config
    (clickstream.analytics.dashboard_charts, as shiny/app.py does) and serializing it to JSON, over the whole range
    in UTC with no filter."""
    def median_ms(call: Callable[[], object]) -> float:
        return round(statistics.median(dashboard_queries.timed(call, repeat)), 1)

    f = dashboard.Filters(first, last)
    with questions.read_only(reader_dsn) as conn:
        conn.autocommit = True
        data = {"kpis": lambda: dashboard.kpis(conn, f),
                "kpis (previous period)": lambda: dashboard.kpis(conn, f.previous()),
                "funnel": lambda: dashboard.funnel(conn, f), "products": lambda: dashboard.products(conn, f),
                "categories": lambda: dashboard.categories(conn, f), "trend (day)": lambda: dashboard.trend(conn, f),
                "heatmap": lambda: dashboard.heatmap(conn, f)}
        frames = {name: call() for name, call in data.items()}
        product = frames["products"]["product_id"].iloc[0]
        data["product_trend"] = lambda: dashboard.product_trend(conn, f, product)
        frames["product_trend"] = data["product_trend"]()
        queries = {name: median_ms(call) for name, call in data.items()}
    at_once = [(dashboard.kpis, f), (dashboard.kpis, f.previous()), (dashboard.funnel, f, "none"),
               (dashboard.products, f), (dashboard.categories, f), (dashboard.trend, f, "day"), (dashboard.heatmap, f),
               (dashboard.product_trend, f, product)]
    readers = runpy.run_path(str(APP))["Readers"](reader_dsn)  # the app's pool of reader connections
    try:
        queries_at_once = median_ms(lambda: [job.result() for job in [readers.submit(*key) for key in at_once]])
    finally:
        readers.close()
    specs = {"funnel_plot": lambda: dashboard_charts.funnel_chart(frames["funnel"]),
             "trend_plot": lambda: dashboard_charts.trend_chart(frames["trend (day)"], "day"),
             "product_trend_plot": lambda: dashboard_charts.product_trend_chart(frames["product_trend"]),
             "heatmap_plot": lambda: dashboard_charts.heatmap_chart(frames["heatmap"], "UTC")}
    return {"queries_ms": queries, "queries_at_once_ms": queries_at_once,
            "chart_specs_ms": {name: median_ms(lambda s=spec: json.dumps(s())) for name, spec in specs.items()}}


# --- report ----------------------------------------------------------------------------------------------------
def markdown(figures: dict) -> str:
    render = figures["first_render"]
    lines = ["| measurement (changes: server time; settled with the browser's drawing) | median ms | p95 ms | target "
             "| met |", "|---|---:|---:|---:|---|",
             f"| first full render ({render['n']} loads) | {render['median_ms']:,.0f} | {render['p95_ms']:,.0f} | "
             f"<= {RENDER_TARGET_MS:,.0f} | {'yes' if render['p95_ms'] <= RENDER_TARGET_MS else 'no'} |"]
    for row in figures["changes"]:
        name = f"{row['input_id']} -> {row['case']}" if row["case"] else row["input_id"]
        s, d = row["server"], row["settled"]
        target = f"<= {row['target_ms']:.0f}" if row["target_ms"] else "(raw events: reported)"
        met = "" if row["met"] is None else ("yes" if row["met"] else "no")
        lines.append(f"| change {name} ({s['n']}x; settled {d['median_ms']:,.0f} / {d['p95_ms']:,.0f}) | "
                     f"{s['median_ms']:,.0f} | {s['p95_ms']:,.0f} | {target} | {met} |")
    original = figures["original"]
    for key, what in (("select_and_compute", "original approach: select raw rows + compute (first render, "
                                                "date_range or tz change)"),
                      ("compute_only", "original approach: compute on rows in memory (login, device, bots change)")):
        s = original[key]
        lines.append(f"| {what}, {original['rows']:,} rows, {s['n']}x | {s['median_ms']:,.0f} | {s['p95_ms']:,.0f} "
                     "| | |")
    breakdown = figures["server_breakdown"]
    parts = {kind: (", ".join(f"{name} {ms:,.0f}" for name, ms in breakdown[kind].items()), sum(breakdown[kind].values()))
             for kind in ("queries_ms", "chart_specs_ms")}
    lines.append(f"\nServer work of an unfiltered whole-range change, median ms: queries {parts['queries_ms'][0]} "
                 f"(sum {parts['queries_ms'][1]:,.0f}; all eight at once on the app's reader connections "
                 f"{breakdown['queries_at_once_ms']:,.0f}); chart specs built and serialized "
                 f"{parts['chart_specs_ms'][0]} (sum {parts['chart_specs_ms'][1]:,.0f}).")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, help="the warehouse's stack folder (query_latency.py --keep HOME)")
    parser.add_argument("--events", type=int, default=200_000, help="without --home: about how many events to "
                                                                     "build (default 200,000)")
    parser.add_argument("--days", type=int, default=7, help="simulated days from 2026-11-16 (default 7)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="without --home: load processes")
    parser.add_argument("--loads", type=int, default=10, help="measured page loads (default 10, after a warm-up)")
    parser.add_argument("--changes", type=int, default=10, help="rounds of every filter change (default 10)")
    parser.add_argument("--baseline-repeat", type=int, default=3, help="runs of the original approach (default 3)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    with warehouse(args) as (settings, data), sync_playwright() as playwright:
        status = stack.status(settings)
        url, reader = status["dashboard_url"], stack.warehouse_dsn(settings, "dashboard_reader")
        with psycopg.connect(reader) as conn:
            first, last = conn.execute("SELECT min(event_timestamp AT TIME ZONE 'UTC')::date, "
                                       "max(event_timestamp AT TIME ZONE 'UTC')::date FROM clickstream_events"
                                       ).fetchone()
            events = conn.execute("SELECT count(*) FROM clickstream_events").fetchone()[0]
        last = min(last, first + timedelta(days=args.days - 1))
        executable, where = find_chromium(os.environ.get("CHROMIUM"), playwright.chromium.executable_path)
        if executable is None:
            raise SystemExit(NO_CHROMIUM)
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            print(f"{events:,} events, {first}..{last}; dashboard {url}; {where}", flush=True)
            warm_up, renders = first_renders(browser, url, args.loads)
            print(f"first render: warm-up {warm_up:.0f} ms, then {summary(renders)}", flush=True)
            timings = filter_changes(browser, url, first, last, args.changes)
        finally:
            browser.close()
        print("original approach ...", flush=True)
        original = original_approach(reader, first, last, args.baseline_repeat)
        breakdown = server_breakdown(reader, first, last, args.baseline_repeat)

    figures = {"command": shlex.join([".venv/bin/python", *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                                            time.gmtime()),
               "events": events, "range": [str(first), str(last)], "data": data, "cores": os.cpu_count(),
               "load_average": os.getloadavg(), "first_render": summary(renders), "first_render_warm_up_ms": warm_up,
               "changes": change_rows(timings), "original": original,
               "server_breakdown": breakdown}
    print(markdown(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
