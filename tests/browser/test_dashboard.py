"""The Python dashboard (shiny/app.py), as `clickstream up` serves it on the test stack, in a real Chromium driven
with shiny.playwright.controller, against the warehouse loaded with a simulated range.

Every KPI, the funnel steps and the top products equal an independent SQL reading of clickstream_events (written
here), for each filter. Also: the empty warehouse, a lost connection (the DW cluster stopped and started again).
Screenshots go to $CLICKSTREAM_TEST_OUTPUT/dashboard/, by default test-output/dashboard/ at the repository root.
"""

from __future__ import annotations

import runpy
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect
from psycopg.rows import dict_row
from shiny.playwright import controller

import dashboard_data
from clickstream.local import stack
from clickstream.shop.simulate import SimulationConfig

pytestmark = [pytest.mark.browser, pytest.mark.integration]
CONFIG = SimulationConfig(start=date(2024, 10, 7), days=3, visitors=150, seed=21)
FIRST, LAST = CONFIG.start, CONFIG.start + timedelta(days=CONFIG.days - 1)
KPIS = ("events", "sessions", "visitors", "conversion", "revenue")
PLOTS = {"funnel_plot": "Sessions reaching each funnel step", "trend_plot": "Events and sessions over time",
         "product_trend_plot": "Daily views, add-to-carts and purchases of the chosen product",
         "heatmap_plot": "Events by hour of day and day of week"}  # id: accessible name
TABLES = ("funnel_table", "products_table", "categories_table")
STEPS = ("Product view", "Add to cart", "Begin checkout", "Purchase")
TOP = 5
WAIT_MS = 20_000
APP_READERS = runpy.run_path(str(Path(__file__).resolve().parents[2] / "shiny" / "app.py"))["READERS"]


# --- the independent reading of clickstream_events -----------------------------------------------------------------
@dataclass(frozen=True)
class View:
    """The filters as the page is set to them."""

    start: date = FIRST
    end: date = LAST
    tz: str = "UTC"
    login_state: str = "all"
    device: str = "all"
    include_bots: bool = False

    def params(self) -> dict:
        zone = ZoneInfo(self.tz)
        return {"start": datetime.combine(self.start, datetime.min.time(), zone),
                "end": datetime.combine(self.end + timedelta(days=1), datetime.min.time(), zone),
                "login_state": self.login_state, "device": self.device, "include_bots": self.include_bots}


# An event (or a session, by its first event) the filters keep; %(p)s are View.params().
KEEPS = """(%(include_bots)s OR NOT {t}is_bot) AND (%(device)s = 'all' OR {t}device_category = %(device)s)
           AND (%(login_state)s = 'all' OR ({t}user_id IS NOT NULL) = (%(login_state)s = 'signed_in'))"""
IN_RANGE = "{t}event_timestamp >= %(start)s AND {t}event_timestamp < %(end)s"
EVENTS_SQL = f"""
SELECT count(*) AS events, coalesce(sum(value) FILTER (WHERE event_name = 'purchase'), 0) AS revenue
FROM clickstream_events WHERE {IN_RANGE.format(t='')} AND {KEEPS.format(t='')}"""
PRODUCTS_SQL = f"""
SELECT context_product_id AS product_id,
       count(*) FILTER (WHERE event_name = 'product_view') AS views,
       count(*) FILTER (WHERE event_name = 'add_to_cart') AS add_to_cart,
       count(*) FILTER (WHERE event_name = 'purchase') AS purchases,
       coalesce(sum(value) FILTER (WHERE event_name = 'purchase'), 0) AS revenue
FROM clickstream_events
WHERE context_product_id IS NOT NULL AND {IN_RANGE.format(t='')} AND {KEEPS.format(t='')}
GROUP BY context_product_id
HAVING count(*) FILTER (WHERE event_name IN ('product_view', 'add_to_cart', 'purchase')) > 0"""
# Sessions: per client and bot flag, a new one after more than 30 minutes without events; the funnel's steps each
# strictly after the one before; kept by the session's first event (its time, device, signed-in state, bot flag).
_SESSION = "(n.client_id, n.is_bot, n.session_no) = (s.client_id, s.is_bot, s.session_no)"
_STEP = """LEFT JOIN LATERAL (SELECT min(n.event_timestamp) AS t FROM numbered n
                   WHERE {session} AND n.event_name = '{name}' AND n.event_timestamp > {after}) AS {alias} ON true"""
SESSIONS_SQL = f"""
WITH marked AS (
    SELECT e.*, CASE WHEN e.event_timestamp - lag(e.event_timestamp) OVER w <= interval '30 minutes'
                     THEN 0 ELSE 1 END AS starts
    FROM clickstream_events e WINDOW w AS (PARTITION BY e.client_id, e.is_bot ORDER BY e.event_timestamp, e.event_id)
), numbered AS MATERIALIZED (
    SELECT m.*, sum(m.starts) OVER (PARTITION BY m.client_id, m.is_bot ORDER BY m.event_timestamp, m.event_id)
           AS session_no
    FROM marked m
), firsts AS (
    SELECT DISTINCT ON (n.client_id, n.is_bot, n.session_no) n.*
    FROM numbered n ORDER BY n.client_id, n.is_bot, n.session_no, n.event_timestamp, n.event_id
), kept AS (
    SELECT s.client_id, s.is_bot, s.session_no FROM firsts s
    WHERE {IN_RANGE.format(t='s.')} AND {KEEPS.format(t='s.')}
)
SELECT count(*) AS sessions, count(DISTINCT s.client_id) AS visitors,
       count(t1.t) AS product_view, count(t2.t) AS add_to_cart, count(t3.t) AS begin_checkout,
       count(t4.t) AS purchase
FROM kept s
{_STEP.format(session=_SESSION, name='product_view', after="'-infinity'", alias='t1')}
{_STEP.format(session=_SESSION, name='add_to_cart', after='t1.t', alias='t2')}
{_STEP.format(session=_SESSION, name='begin_checkout', after='t2.t', alias='t3')}
{_STEP.format(session=_SESSION, name='purchase', after='t3.t', alias='t4')}"""


def truth(admin_dsn: str, view: View) -> dict:
    """KPI texts, funnel (step, sessions) and products {id: (views, add_to_cart, purchases, revenue)} of `view`."""
    with psycopg.connect(admin_dsn, row_factory=dict_row) as conn:
        events = conn.execute(EVENTS_SQL, view.params()).fetchone()
        sessions = conn.execute(SESSIONS_SQL, view.params()).fetchone()
        products = conn.execute(PRODUCTS_SQL, view.params()).fetchall()
    viewed, bought = sessions["product_view"], sessions["purchase"]
    return {
        "kpis": {"events": f"{events['events']:,}", "sessions": f"{sessions['sessions']:,}",
                 "visitors": f"{sessions['visitors']:,}",
                 "conversion": f"{bought / viewed:.2%}" if viewed else "n/a",
                 "revenue": f"{Decimal(events['revenue']):,.2f}"},
        "events": events["events"],
        "funnel": [(label, sessions[step]) for label, step in
                   zip(STEPS, ("product_view", "add_to_cart", "begin_checkout", "purchase"))],
        "products": {row["product_id"]: (row["views"], row["add_to_cart"], row["purchases"], Decimal(row["revenue"]))
                     for row in products},
    }


# --- the stack, the data and the page ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def admin_dsn(local_stack) -> Iterator[str]:
    yield from dashboard_data.empty_warehouse(local_stack)


@pytest.fixture(scope="module")
def simulated(local_stack, admin_dsn) -> str:
    """CONFIG's traffic stored as the ingest Lambda would, loaded by the ETL (the day after too: late events)."""
    dashboard_data.load_simulated(local_stack, CONFIG)
    with psycopg.connect(admin_dsn) as conn:
        kinds = conn.execute("SELECT count(DISTINCT is_bot), count(DISTINCT user_id IS NOT NULL) "
                             "FROM clickstream_events").fetchone()
    assert kinds == (2, 2), "the range needs bots and signed-in shoppers for the filters to matter"
    return admin_dsn


@pytest.fixture(scope="module")
def url(local_stack) -> str:
    status = stack.status(local_stack)
    assert status["services"]["dashboard"]["healthy"], "clickstream up did not start the dashboard"
    return status["dashboard_url"]


@pytest.fixture(scope="module")
def output() -> Path:
    return dashboard_data.output_folder("dashboard")


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with dashboard_data.watched_page(browser, height=2800) as page:
        yield page


def open_at(page: Page, url: str, view: View) -> None:
    page.goto(url)
    page.wait_for_function("window.Shiny && Shiny.shinyapp && Shiny.shinyapp.isConnected()", timeout=WAIT_MS)
    choose(page, view)


def choose(page: Page, view: View) -> None:
    controller.InputDateRange(page, "date_range").set((str(view.start), str(view.end)))
    controller.InputSelect(page, "tz").set(view.tz)
    controller.InputSelect(page, "login_state").set(view.login_state)
    controller.InputSelect(page, "device").set(view.device)
    controller.InputSwitch(page, "include_bots").set(view.include_bots)


def expect_kpis(page: Page, kpis: dict[str, str]) -> None:
    for key in KPIS:
        expect(page.locator(f"#kpi_{key} .kpi-value")).to_have_text(kpis[key], timeout=WAIT_MS)


def settled(page: Page) -> None:
    page.wait_for_function("!document.documentElement.classList.contains('shiny-busy') "
                           "&& !document.querySelector('.recalculating')", timeout=WAIT_MS)


def rows(page: Page, table: str) -> list[list[str]]:
    return [row.locator("td").all_inner_texts() for row in page.locator(f"#{table} tbody tr").all()]


def expect_drawn(page: Page, plot: str) -> None:
    """Chart.js has drawn the chart on its canvas in the output."""
    expect(page.locator(f"#{plot}[data-drawn] canvas")).to_be_visible(timeout=WAIT_MS)


FUNNEL_DRAWN = """() => {
  const chart = Chart.getChart(document.querySelector('#funnel_plot canvas'));
  const bars = chart.getDatasetMeta(0).data;
  return {steps: chart.data.labels, sessions: chart.data.datasets.map(d => d.data),
          labels: chart.options.plugins.barLabels.labels, heights: bars.map(bar => bar.base - bar.y),
          axis: chart.scales.y.getPixelForValue(0) - chart.scales.y.getPixelForValue(1)};
}"""


def expect_funnel_bars(page: Page, funnel: list[tuple[str, int]]) -> None:
    """The funnel chart's bars, as Chart.js holds them and as it drew them (each bar as tall as its sessions on the
    axis), with their labels, are `funnel`'s (step, sessions)."""
    steps, sessions = [step for step, _ in funnel], [n for _, n in funnel]
    page.wait_for_function(f"(want) => {{ try {{ return JSON.stringify(({FUNNEL_DRAWN})().sessions) === "
                           "JSON.stringify([want]); } catch (error) { return false; } }", arg=sessions, timeout=WAIT_MS)
    drawn = page.evaluate(FUNNEL_DRAWN)
    assert (drawn["steps"], drawn["sessions"], drawn["labels"]) == (steps, [sessions], [f"{n:,}" for n in sessions])
    assert drawn["heights"] == pytest.approx([n * drawn["axis"] for n in sessions], abs=1.0)


def top_products(page: Page) -> dict[str, tuple]:
    """The first TOP rows of the products table: {id: (views, add_to_cart, purchases, revenue)}."""
    settled(page)
    shown = rows(page, "products_table")[:TOP]
    return {cells[7]: (int(cells[2]), int(cells[3]), int(cells[4]), Decimal(cells[6]).quantize(Decimal("0.01")))
            for cells in shown}


def expect_top_products(page: Page, products: dict[str, tuple]) -> None:
    """The table's first rows are products with the highest revenues, each with its own figures."""
    shown = top_products(page)
    assert len(shown) == min(TOP, len(products))
    assert {key: products[key] for key in shown} == shown
    assert sorted((row[3] for row in shown.values()), reverse=True) == \
        sorted((row[3] for row in products.values()), reverse=True)[:TOP]


# --- the app -------------------------------------------------------------------------------------------------------
def test_an_empty_warehouse_says_how_to_load_data_then_shows_it_once_loaded(url, admin_dsn, page, request, output):
    page.goto(url)
    notice = page.locator("#warehouse_status")
    expect(notice).to_contain_text("no events yet", timeout=WAIT_MS)
    expect(notice).to_contain_text("make demo")
    expect(notice).to_contain_text("clickstream simulate` then `clickstream etl")
    page.screenshot(path=output / "empty.png", full_page=True)

    request.getfixturevalue("simulated")
    expect(notice).to_contain_text("holds events", timeout=WAIT_MS)  # without a reload
    with psycopg.connect(admin_dsn) as conn:
        last = conn.execute("SELECT max(event_timestamp AT TIME ZONE 'UTC')::date "
                            "FROM clickstream_events").fetchone()[0]
    page.reload()
    shown = View(start=max(FIRST, last - timedelta(days=6)), end=last)  # the last 7 days with data
    controller.InputDateRange(page, "date_range").expect_value((str(shown.start), str(shown.end)), timeout=WAIT_MS)
    expect_kpis(page, truth(admin_dsn, shown)["kpis"])
    assert page.errors == []


def test_it_boots_without_errors_and_every_panel_renders(url, simulated, page, output):
    open_at(page, url, View())
    expect_kpis(page, truth(simulated, View())["kpis"])
    for plot, name in PLOTS.items():
        expect_drawn(page, plot)
        expect(page.get_by_role("img", name=name)).to_have_attribute("id", plot)
    days = page.evaluate("""() => { const y = Chart.getChart(document.querySelector('#heatmap_plot canvas')).scales.y;
                                    return [0, 6].map(n => [y.getLabelForValue(n), y.getPixelForValue(n)]); }""")
    assert days[0][0] == "Mon" and days[1][0] == "Sun" and days[0][1] < days[1][1]  # the week reads down
    for table in TABLES:
        expect(page.locator(f"#{table} tbody tr").first).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#product_trend_title")).not_to_be_empty()
    controller.InputRadioButtons(page, "trend_grain").set("hour")
    controller.InputRadioButtons(page, "funnel_breakdown").set("traffic_source")
    settled(page)
    page.screenshot(path=output / "dashboard.png", full_page=True)
    assert page.errors == []
    assert page.locator(".shiny-output-error").count() == 0
    assert "Traceback" not in page.locator("body").inner_text()


def test_open_pages_share_the_apps_few_warehouse_connections(url, simulated, browser, admin_dsn):
    """However many pages are open, the app holds its pool's connections and the state reader's, no more."""
    contexts = [browser.new_context() for _ in range(5)]
    try:
        for context in contexts:
            page = context.new_page()
            page.goto(url)
            expect(page.locator("#kpi_events .kpi-value")).not_to_be_empty(timeout=WAIT_MS)
        with psycopg.connect(admin_dsn) as conn:
            (held,) = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = 'dashboard_reader'").fetchone()
    finally:
        for context in contexts:
            context.close()
    assert 1 <= held <= APP_READERS + 1


def test_kpis_funnel_and_top_products_equal_the_events(url, simulated, page):
    open_at(page, url, View())
    expected = truth(simulated, View())
    expect_kpis(page, expected["kpis"])
    assert expected["funnel"][-1][1] > 0, "the range needs purchases"
    controller.OutputDataFrame(page, "funnel_table").expect_nrow(4, timeout=WAIT_MS)
    assert [(cells[1], int(cells[2].replace(",", ""))) for cells in rows(page, "funnel_table")] == expected["funnel"]
    expect_top_products(page, expected["products"])
    expect_funnel_bars(page, expected["funnel"])


CHANGES = {
    "date range": View(start=FIRST + timedelta(days=1), end=FIRST + timedelta(days=1)),
    "time zone": View(tz="Asia/Tokyo"),
    "bots": View(include_bots=True),
    "login state": View(login_state="signed_in"),
    "device": View(device="mobile"),
}


@pytest.mark.parametrize("change", CHANGES)
def test_each_filter_changes_the_kpis_and_products_as_the_events_do(url, simulated, page, change):
    open_at(page, url, View())
    before = truth(simulated, View())
    expect_kpis(page, before["kpis"])
    changed = CHANGES[change]
    after = truth(simulated, changed)
    assert after["kpis"] != before["kpis"], "this filter must matter for the simulated range"
    choose(page, changed)
    expect_kpis(page, after["kpis"])
    expect_top_products(page, after["products"])


def test_a_filter_change_redraws_the_funnel_chart_with_the_new_numbers(url, simulated, page):
    open_at(page, url, View())
    before, after = (truth(simulated, view)["funnel"] for view in (View(), CHANGES["login state"]))
    assert before != after
    expect_funnel_bars(page, before)
    canvas = page.locator("#funnel_plot canvas").element_handle()
    controller.InputSelect(page, "login_state").set(CHANGES["login state"].login_state)
    expect_funnel_bars(page, after)
    assert canvas.evaluate("canvas => canvas.isConnected")  # redrawn in place (chart.update), not a new chart


def test_the_change_is_against_the_previous_period_and_goes_with_the_comparison(url, simulated, page):
    day = View(start=FIRST + timedelta(days=1), end=FIRST + timedelta(days=1))
    open_at(page, url, day)
    now, before = truth(simulated, day)["events"], truth(simulated, replace(day, start=FIRST, end=FIRST))["events"]
    change = page.locator("#kpi_events .kpi-change")
    expect(change).to_have_text(f"{(now - before) / before:+.1%} vs previous period", timeout=WAIT_MS)
    controller.InputSwitch(page, "compare").set(False)
    expect(change).to_have_count(0, timeout=WAIT_MS)
    expect(page.locator("#kpi_events")).to_have_text(f"{now:,}")


def test_products_are_searchable_and_a_chosen_product_shows_its_trend(url, simulated, page):
    open_at(page, url, View())
    products = controller.OutputDataFrame(page, "products_table")
    third = page.locator("#products_table tbody tr").nth(2).locator("td")
    settled(page)
    name, product_id = third.nth(0).inner_text(timeout=WAIT_MS), third.nth(7).inner_text(timeout=WAIT_MS)
    assert page.locator("#product_trend_title").inner_text() != name  # the first product's, until one is chosen
    products.set_filter({"col": 7, "value": product_id})
    products.expect_nrow(1, timeout=WAIT_MS)
    products.select_rows([0])
    expect(page.locator("#product_trend_title")).to_have_text(name, timeout=WAIT_MS)
    expect_drawn(page, "product_trend_plot")


def test_a_chosen_product_stays_chosen_and_selected_through_a_filter_change(url, simulated, page):
    """Redrawn with new figures, the grid selects the chosen product's row again; the product trend stays on it
    and is drawn once, not first for the product that moved into the old row."""
    open_at(page, url, View())
    settled(page)
    third = page.locator("#products_table tbody tr").nth(2).locator("td")
    name, product_id = third.nth(0).inner_text(timeout=WAIT_MS), third.nth(7).inner_text(timeout=WAIT_MS)
    controller.OutputDataFrame(page, "products_table").select_rows([2])
    expect(page.locator("#product_trend_title")).to_have_text(name, timeout=WAIT_MS)
    changed = values_after(page, lambda: controller.InputSwitch(page, "include_bots").set(True))
    assert changed.count("product_trend_plot") == 1 and "product_trend_title" not in changed
    expect(page.locator("#product_trend_title")).to_have_text(name)
    selected = page.locator("#products_table tbody tr[aria-selected=true] td")
    expect(selected.nth(7)).to_have_text(product_id, timeout=WAIT_MS)


def values_after(page: Page, change) -> list[str]:
    """The outputs (by id, in order) whose values arrive after `change()`, until the page has been quiet for a
    second (the products grid's own round, when it reports its redrawn view, included)."""
    settled(page)
    page.evaluate("""() => { window.__values = []; window.__last = performance.now();
        $(document).on('shiny:value.values_after', (e) => { window.__values.push(e.name); window.__last = performance.now(); }); }""")
    change()
    page.wait_for_function("window.__values.length > 0 && performance.now() - window.__last > 1000 "
                           "&& !document.documentElement.classList.contains('shiny-busy')", timeout=WAIT_MS)
    return page.evaluate("() => { $(document).off('shiny:value.values_after'); return window.__values; }")


def test_a_filter_change_draws_the_product_trend_once_and_other_changes_leave_it(url, simulated, page):
    """The product trend comes with the rest of a change, and not again when the products grid reports its
    redrawn view; a change that leaves the products alone leaves it alone."""
    open_at(page, url, View())
    expect_drawn(page, "product_trend_plot")
    grain = values_after(page, lambda: controller.InputRadioButtons(page, "trend_grain").set("hour"))
    assert "trend_plot" in grain and not {"product_trend_plot", "products_table", "kpi_events"} & set(grain)
    device = values_after(page, lambda: controller.InputSelect(page, "device").set("mobile"))
    assert [device.count(name) for name in ("products_table", "product_trend_plot", "kpi_events")] == [1, 1, 1]
    expect_top_products(page, truth(simulated, View(device="mobile"))["products"])


def test_a_lost_connection_shows_a_message_and_the_data_when_the_warehouse_returns(url, simulated, local_stack,
                                                                                 page, output):
    open_at(page, url, View())
    expected = truth(simulated, View())["kpis"]
    expect_kpis(page, expected)
    dw = stack.clusters(local_stack)["dw"]
    notice = page.locator("#warehouse_status .alert-warning")
    try:
        assert dw.stop()
        expect(notice).to_contain_text("cannot be reached", timeout=WAIT_MS)
        page.screenshot(path=output / "lost-connection.png", full_page=True)
        assert "Traceback" not in page.locator("body").inner_text()
    finally:
        dw.ensure_started()
    expect(notice).to_have_count(0, timeout=WAIT_MS)
    expect_kpis(page, expected)
    assert page.locator(".shiny-output-error").count() == 0
    assert page.errors == []
