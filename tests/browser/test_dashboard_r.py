"""The R dashboard (shiny/app.R) in a real Chromium, against the test stack's warehouse loaded with a simulated range.

Every KPI, the funnel steps and the products equal an independent reading of clickstream_events (one SQL query,
sessions and funnel worked out here), for each filter. Also: its R helpers, the empty warehouse, a lost connection.
Skipped, with the reason, without Rscript or the R packages (`.ci/run` installs Debian's). Screenshots go to
$CLICKSTREAM_TEST_OUTPUT/dashboard-r/, by default test-output/dashboard-r/ at the repository root.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect

import dashboard_data
from clickstream.local import stack
from clickstream.shop.simulate import SimulationConfig

pytestmark = [pytest.mark.browser, pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]
HELPERS = ROOT / "shiny" / "R" / "dashboard.R"
R_PACKAGES = ("shiny", "DBI", "RPostgreSQL", "ggplot2")
INSTALL_R = ("apt-get install -y --no-install-recommends r-base-core r-cran-shiny r-cran-dbi r-cran-rpostgresql "
             "r-cran-ggplot2 (as .ci/run does)")
CONFIG = SimulationConfig(start=date(2024, 9, 2), days=3, visitors=120, seed=14)
FIRST, LAST = CONFIG.start, CONFIG.start + timedelta(days=CONFIG.days - 1)
KPIS = ("events", "sessions", "visitors", "conversion", "revenue")
PLOTS = ("funnel_plot", "product_trend_plot", "trend_plot", "heatmap_plot")
TABLES = ("funnel_table", "products_table", "categories_table")
FUNNEL = ("product_view", "add_to_cart", "begin_checkout", "purchase")
SESSION_GAP = timedelta(minutes=30)
WAIT_MS = 20_000


def missing_r() -> str | None:
    """Why the R app cannot run here, or None."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        return f"no Rscript: install R and the dashboard's packages: {INSTALL_R}"
    wanted = ", ".join(f'"{name}"' for name in R_PACKAGES)
    probe = subprocess.run([rscript, "-e", f"cat(setdiff(c({wanted}), rownames(installed.packages())))"],
                           capture_output=True, text=True, timeout=120)
    if probe.returncode or probe.stdout.split():
        return f"R lacks the packages {probe.stdout.split() or probe.stderr.strip()}: {INSTALL_R}"
    return None


@pytest.fixture(scope="session")  # session: decided before the session's stack starts, so no R, no stack
def rscript() -> str:
    if reason := missing_r():
        pytest.skip(reason)
    return shutil.which("Rscript")


def run_r(rscript: str, code: str) -> object:
    """What the R expression `code` returns, through JSON, with shiny/R/dashboard.R sourced."""
    program = f'source("{HELPERS}"); cat(jsonlite::toJSON({code}, auto_unbox = TRUE, digits = NA))'
    done = subprocess.run([rscript, "-e", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_without_r_the_reason_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert missing_r() == f"no Rscript: install R and the dashboard's packages: {INSTALL_R}"
    fake = tmp_path / "Rscript"
    fake.write_text("#!/bin/sh\necho DBI ggplot2\n")
    fake.chmod(0o755)
    monkeypatch.setattr(shutil, "which", lambda name: str(fake))
    assert missing_r() == f"R lacks the packages ['DBI', 'ggplot2']: {INSTALL_R}"


# --- the R helpers -------------------------------------------------------------------------------------------------
def test_the_dsn_is_parsed_and_its_password_percent_decoded(rscript):
    uri = "postgresql://dashboard_reader:" + quote("p@ss:w/rd %'?", safe="") + "@127.0.0.1:5499/clickstream_dw"
    assert run_r(rscript, f'parse_dsn("{uri}")') == {
        "user": "dashboard_reader", "password": "p@ss:w/rd %'?", "host": "127.0.0.1", "port": 5499,
        "dbname": "clickstream_dw"}
    assert run_r(rscript, """parse_dsn("host=h port=7 dbname=dw user=u password='a b\\\\'c'")""")["password"] == "a b'c"


def test_placeholders_become_dbi_variables_quoted_as_literals(rscript):
    sql = "SELECT %(start)s::timestamptz, 5 %% 3 -- %(not_a_parameter)s\\nWHERE %(tz)s = %(start)s"
    assert run_r(rscript, f'dbi_placeholders("{sql}")') == \
        "SELECT ?start::timestamptz, 5 % 3 -- ?not_a_parameter\nWHERE ?tz = ?start"
    interpolated = run_r(rscript, f"""{{
        dir <- tempfile(); dir.create(dir); writeLines("{sql}", file.path(dir, "q.sql"))
        as.character(interpolate_query(DBI::ANSI(), dir, "q", list(start = "2024-09-02 00:00:00+00",
                                                                     tz = "x'); DROP TABLE t; --", unused = "1")))
    }}""")
    assert interpolated == ("SELECT '2024-09-02 00:00:00+00'::timestamptz, 5 % 3 -- ?not_a_parameter\n"
                            "WHERE 'x''); DROP TABLE t; --' = '2024-09-02 00:00:00+00'")


def test_the_period_and_the_one_before_are_local_midnights(rscript):
    bounds = run_r(rscript, 'period_bounds(as.Date("2026-03-28"), as.Date("2026-03-29"), "Europe/Paris")')
    assert bounds == {"current": ["2026-03-27 23:00:00+00", "2026-03-29 22:00:00+00"],  # [start, end)
                      "previous": ["2026-03-25 23:00:00+00", "2026-03-27 23:00:00+00"], "days": 2}


def test_kpi_texts_start_with_the_exact_value_then_the_change(rscript):
    texts = run_r(rscript, """kpi_texts(list(events = 1234567, sessions = 10, visitors = 0, conversion = 0.0525,
                                              revenue = 1234567.5),
                                         list(events = 1000000, sessions = 0, visitors = 0, conversion = 0.05,
                                              revenue = 1e6), 7)""")
    assert texts == {"events": ["1,234,567", "+23.5% vs the previous 7 days"],
                     "sessions": ["10", "new vs the previous 7 days"],
                     "visitors": ["0", "no change vs the previous 7 days"],
                     "conversion": ["5.25%", "+0.25 pp vs the previous 7 days"],
                     "revenue": ["1,234,567.50", "+23.5% vs the previous 7 days"]}


# --- the independent reading of the warehouse ----------------------------------------------------------------------
@dataclass(frozen=True)
class Filters:
    start: date = FIRST
    end: date = LAST
    tz: str = "UTC"
    login_state: str = "all"
    device: str = "all"
    include_bots: bool = False

    def bounds(self) -> tuple[datetime, datetime]:
        local = ZoneInfo(self.tz)
        return (datetime.combine(self.start, datetime.min.time(), local),
                datetime.combine(self.end + timedelta(days=1), datetime.min.time(), local))

    def keeps(self, event: Event) -> bool:
        """Whether the filters keep this event (or this session, by its first event); not its time."""
        return ((self.include_bots or not event.is_bot)
                and self.device in ("all", event.device)
                and self.login_state in ("all", "signed_in" if event.signed_in else "anonymous"))


@dataclass(frozen=True)
class Event:
    client_id: str
    is_bot: bool
    at: datetime
    name: str
    device: str | None
    signed_in: bool
    product_id: str | None
    value: Decimal | None
    utm_source: str | None


def read_events(admin_dsn: str) -> list[Event]:
    with psycopg.connect(admin_dsn) as conn:
        rows = conn.execute(
            "SELECT client_id, is_bot, event_timestamp, event_name, device_category, user_id IS NOT NULL, "
            "context_product_id, value, utm_source FROM clickstream_events "
            "ORDER BY client_id, is_bot, event_timestamp, event_id").fetchall()
    return [Event(*row) for row in rows]


def sessions_of(events: list[Event]) -> list[list[Event]]:
    """Per client and bot flag, a new session after more than 30 minutes without events (events in order)."""
    sessions: list[list[Event]] = []
    for event in events:
        last = sessions[-1][-1] if sessions else None
        if last and (last.client_id, last.is_bot) == (event.client_id, event.is_bot) \
                and event.at - last.at <= SESSION_GAP:
            sessions[-1].append(event)
        else:
            sessions.append([event])
    return sessions


def funnel_step(session: list[Event]) -> int:
    """How many funnel steps the session reached, each strictly after the previous one."""
    reached, after = 0, None
    for step in FUNNEL:
        times = [e.at for e in session if e.name == step and (after is None or e.at > after)]
        if not times:
            break
        reached, after = reached + 1, min(times)
    return reached


def expected(events: list[Event], f: Filters) -> dict:
    """KPIs, funnel (and per segment of each breakdown) and products under filters `f`, from the events alone."""
    start, end = f.bounds()
    kept = [e for e in events if start <= e.at < end and f.keeps(e)]
    sessions = [s for s in sessions_of(events) if start <= s[0].at < end and f.keeps(s[0])]
    steps = [funnel_step(s) for s in sessions]
    reached = [sum(step >= n for step in steps) for n in range(1, 5)]
    products: dict[str, list] = {}
    for e in kept:
        if e.product_id and e.name in ("product_view", "add_to_cart", "purchase"):
            row = products.setdefault(e.product_id, [0, 0, 0, Decimal(0)])
            row[("product_view", "add_to_cart", "purchase").index(e.name)] += 1
            row[3] += e.value if e.name == "purchase" and e.value is not None else 0
    segments = {"device": lambda first: first.device or "(unknown)",
                "login_state": lambda first: "signed_in" if first.signed_in else "anonymous",
                "traffic_source": lambda first: first.utm_source or "(direct)"}
    breakdowns = {name: Counter() for name in segments}
    for session, step in zip(sessions, steps):
        for name, segment in segments.items():
            breakdowns[name].update((segment(session[0]), FUNNEL[n]) for n in range(step))
    return {
        "kpis": {"events": f"{len(kept):,}", "sessions": f"{len(sessions):,}",
                 "visitors": f"{len({s[0].client_id for s in sessions}):,}",
                 "conversion": f"{100 * reached[3] / reached[0]:.2f}%" if reached[0] else "n/a",
                 "revenue": f"{sum((e.value for e in kept if e.name == 'purchase' and e.value), Decimal(0)):,.2f}"},
        "events": len(kept), "funnel": list(zip(FUNNEL, reached)),
        "breakdowns": {name: dict(counts) for name, counts in breakdowns.items()},
        "products": {key: tuple(row) for key, row in products.items()}}


# --- the stack, the data and the app -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def admin_dsn(local_stack) -> Iterator[str]:
    yield from dashboard_data.empty_warehouse(local_stack)


@pytest.fixture(scope="module")
def simulated(local_stack, admin_dsn) -> list[Event]:
    """CONFIG's traffic sent through the ingest API and loaded by the ETL; the warehouse's events."""
    dashboard_data.load_simulated(local_stack, CONFIG)
    events = read_events(admin_dsn)
    assert {e.is_bot for e in events} == {False, True} and {e.signed_in for e in events} == {False, True}
    return events


@pytest.fixture(scope="module")
def output() -> Path:
    return dashboard_data.output_folder("dashboard-r")


@pytest.fixture(scope="module")
def dashboard(rscript, local_stack, admin_dsn, output) -> Iterator[tuple[str, Path]]:
    """(URL, log file) of `clickstream dashboard --r` on a free port (it becomes Rscript), stopped by pid after the
    module."""
    port = stack.free_port()
    env = {key: value for key, value in os.environ.items() if key != "CLICKSTREAM_SQL_DIR"}
    log_path = output / "app.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "clickstream.cli", "dashboard", "--r", "--port", str(port)],
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"the R app exited:\n{log_path.read_text()}"
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"the R app did not answer:\n{log_path.read_text()}"
                time.sleep(0.3)
        assert f"R dashboard: {url}" in log_path.read_text()
        yield url + "/", log_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with dashboard_data.watched_page(browser, height=1300) as page:
        yield page


# --- driving the page ----------------------------------------------------------------------------------------------
# Dates are picked through the date picker's own API: Debian's older bootstrap-datepicker undoes typed dates on blur.
PICK_DATES = """([start, end]) => {
  const inputs = $('#date_range input');
  inputs.eq(0).bsDatepicker('setUTCDate', new Date(start + 'T00:00:00Z'));
  inputs.eq(1).bsDatepicker('setUTCDate', new Date(end + 'T00:00:00Z'));
}"""


def open_loaded(page: Page, url: str) -> None:
    """Open the dashboard and wait for its first render, with the range it chose from the warehouse's data."""
    page.goto(url)
    expect(page.locator("#date_range input").first).to_have_value(str(FIRST), timeout=WAIT_MS)
    expect(page.locator("#kpi_events .kpi-value")).to_be_visible(timeout=WAIT_MS)
    settled(page)


def set_filters(page: Page, f: Filters) -> None:
    page.evaluate(PICK_DATES, [str(f.start), str(f.end)])
    page.select_option("#tz", f.tz)
    page.select_option("#login_state", f.login_state)
    page.select_option("#device", f.device)
    page.locator("#include_bots").set_checked(f.include_bots)


def expect_kpis(page: Page, kpis: dict[str, str]) -> None:
    for key in KPIS:
        expect(page.locator(f"#kpi_{key} .kpi-value")).to_have_text(kpis[key], timeout=WAIT_MS)


def settled(page: Page) -> None:
    """Wait until Shiny has nothing left to compute."""
    page.wait_for_function("!document.documentElement.classList.contains('shiny-busy') "
                           "&& !document.querySelector('.recalculating')", timeout=WAIT_MS)


def until(read, wanted, seconds: float = WAIT_MS / 1000):
    """read() once it returns `wanted`, else its last value after `seconds` (for the caller's assert to show)."""
    deadline = time.monotonic() + seconds
    while (value := read()) != wanted and time.monotonic() < deadline:
        time.sleep(0.2)
    return value


def funnel_segments(page: Page) -> dict[tuple[str, str], int]:
    """{(segment, step): sessions} of the funnel table, steps no session reached left out."""
    rows = table_rows(page, "#funnel_table")
    return {(cells[0], cells[1]): int(cells[2].replace(",", ""))
            for cells in rows if len(cells) == 5 and cells[2] not in ("", "0")}  # rows of the table being replaced


def table_rows(page: Page, selector: str) -> list[list[str]]:
    return [row.locator("td").all_inner_texts() for row in page.locator(f"{selector} tbody tr").all()]


def shown_products(page: Page, count: int) -> dict[str, tuple]:
    """The products table's rows (all of them: 100 a page), once it shows `count` of them."""
    assert 0 < count <= 100
    page.locator("#products_table select").select_option("100")
    expect(page.locator("#products_table tbody tr")).to_have_count(count, timeout=WAIT_MS)
    return {cells[0]: (int(cells[3]), int(cells[4]), int(cells[5]), Decimal(cells[7]))
            for cells in table_rows(page, "#products_table")}


# --- the app -------------------------------------------------------------------------------------------------------
def test_an_empty_warehouse_says_how_to_load_data_then_shows_it_once_loaded(dashboard, page, request, output):
    url, _ = dashboard
    page.goto(url)
    notice = page.locator("#empty_state")
    expect(notice).to_contain_text("no events yet", timeout=WAIT_MS)
    expect(notice).to_contain_text("clickstream demo")
    page.screenshot(path=output / "empty.png", full_page=True)

    events = request.getfixturevalue("simulated")
    expect(notice).to_have_count(0, timeout=WAIT_MS)
    first_day = min(e.at.astimezone(timezone.utc).date() for e in events)
    expect(page.locator("#date_range input").first).to_have_value(str(first_day), timeout=WAIT_MS)
    expect(page.locator("#kpi_events .kpi-value")).not_to_have_text("0", timeout=WAIT_MS)

    page.reload()  # the days loaded after the page first saw some are in its range now
    last_day = max(e.at.astimezone(timezone.utc).date() for e in events)
    expect(page.locator("#date_range input").last).to_have_value(str(last_day), timeout=WAIT_MS)
    expect(page.locator("#date_range input").first).to_have_value(str(first_day))
    expect_kpis(page, expected(events, Filters(start=first_day, end=last_day))["kpis"])
    assert page.errors == []


def test_it_boots_without_errors_and_every_panel_renders(dashboard, simulated, page, output):
    url, log_path = dashboard
    open_loaded(page, url)
    set_filters(page, Filters())
    expect_kpis(page, expected(simulated, Filters())["kpis"])
    for plot in PLOTS:
        expect(page.locator(f"#{plot} img")).to_have_attribute("src", re.compile("^data:image/png"),
                                                               timeout=WAIT_MS)
    for table in TABLES:
        expect(page.locator(f"#{table} tbody tr").first).to_be_visible(timeout=WAIT_MS)
    trend = page.locator("#product_trend_plot img")
    first_trend = trend.get_attribute("src")
    row = page.locator("#products_table tbody tr").nth(2)
    row.click()  # choosing a product shows its daily trend
    expect(page.locator("#product")).to_have_value(row.locator("td").first.inner_text(), timeout=WAIT_MS)
    expect(trend).not_to_have_attribute("src", first_trend, timeout=WAIT_MS)
    daily = page.locator("#trend_plot img").get_attribute("src")
    page.locator("#trend_grain input[value=hour]").check()
    expect(page.locator("#trend_plot img")).not_to_have_attribute("src", daily, timeout=WAIT_MS)
    settled(page)
    page.screenshot(path=output / "dashboard.png", full_page=True)
    assert page.errors == []
    assert "Error" not in page.locator("body").inner_text()
    assert "Warning: Error in" not in log_path.read_text()


def test_kpis_funnel_and_products_equal_the_events(dashboard, simulated, page):
    open_loaded(page, dashboard[0])
    set_filters(page, Filters())
    truth = expected(simulated, Filters())
    expect_kpis(page, truth["kpis"])
    assert truth["funnel"][-1][1] > 0
    expect(page.locator("#funnel_table tbody tr")).to_have_count(4, timeout=WAIT_MS)
    assert [(cells[1], int(cells[2])) for cells in table_rows(page, "#funnel_table")] == truth["funnel"]
    assert shown_products(page, len(truth["products"])) == truth["products"]

    for breakdown, segments in truth["breakdowns"].items():
        assert len({segment for segment, _ in segments}) > 1
        page.locator(f"#funnel_breakdown input[value={breakdown}]").check()
        assert until(lambda: funnel_segments(page), segments) == segments


CHANGES = {
    "date range": Filters(start=FIRST + timedelta(days=1), end=FIRST + timedelta(days=1)),
    "time zone": Filters(tz="Asia/Tokyo"),
    "time zone off the hour": Filters(tz="Asia/Kolkata"),
    "bots": Filters(include_bots=True),
    "login state": Filters(login_state="signed_in"),
    "device": Filters(device="mobile"),
}


@pytest.mark.parametrize("change", CHANGES)
def test_each_filter_changes_the_kpis_and_products_as_the_events_do(dashboard, simulated, page, change):
    open_loaded(page, dashboard[0])
    set_filters(page, Filters())
    before = expected(simulated, Filters())
    expect_kpis(page, before["kpis"])
    changed = CHANGES[change]
    after = expected(simulated, changed)
    assert after["kpis"] != before["kpis"]
    set_filters(page, changed)
    expect_kpis(page, after["kpis"])
    assert shown_products(page, len(after["products"])) == after["products"]


def test_the_change_is_against_the_previous_period_and_goes_with_the_comparison(dashboard, simulated, page):
    open_loaded(page, dashboard[0])
    day = Filters(start=FIRST + timedelta(days=1), end=FIRST + timedelta(days=1))
    set_filters(page, day)
    now = expected(simulated, day)["events"]
    before = expected(simulated, replace(day, start=FIRST, end=FIRST))["events"]
    change = page.locator("#kpi_events .kpi-change")
    expect(change).to_have_text(f"{(now - before) / before:+.1%} vs the previous day", timeout=WAIT_MS)
    page.locator("#compare").uncheck()
    expect(change).to_have_count(0, timeout=WAIT_MS)
    expect(page.locator("#kpi_events")).to_have_text(f"{now:,}")


def test_a_lost_connection_shows_a_message_and_the_data_when_the_warehouse_returns(dashboard, simulated, page,
                                                                                 admin_dsn, output):
    url, log_path = dashboard
    open_loaded(page, url)
    set_filters(page, Filters())
    expect_kpis(page, expected(simulated, Filters())["kpis"])
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        try:
            conn.execute("ALTER ROLE dashboard_reader NOLOGIN")
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'dashboard_reader'")
            notice = page.locator("#connection_notice")
            expect(notice).to_contain_text("cannot be read", timeout=WAIT_MS)  # noticed without any click
            page.select_option("#device", "desktop")
            expect(page.locator("#kpi_events")).to_have_text("Waiting for the warehouse.", timeout=WAIT_MS)
            page.screenshot(path=output / "lost-connection.png", full_page=True)
        finally:
            conn.execute("ALTER ROLE dashboard_reader LOGIN")
    expect(notice).to_have_count(0, timeout=WAIT_MS)
    expect_kpis(page, expected(simulated, Filters(device="desktop"))["kpis"])
    assert page.errors == []
    assert "Error" not in page.locator("body").inner_text()
    assert "Warning: Error in" not in log_path.read_text()  # how Shiny logs an error no output caught
