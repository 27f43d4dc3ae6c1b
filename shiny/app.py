"""The clickstream dashboard (Shiny for Python): KPIs against the previous period, the purchase funnel, products
and categories, trends and the hour x weekday heatmap of the warehouse, read as dashboard_reader from the libpq URI
in CLICKSTREAM_DASHBOARD_DSN.

`clickstream up` serves it on 127.0.0.1 (`clickstream status` shows its URL); `clickstream dashboard` runs it in
the foreground. The queries live in clickstream.analytics.dashboard and the charts' Chart.js configs in
clickstream.analytics.dashboard_charts (drawn on a canvas in the browser by www/chart_output.js): this file is the
page and its reactivity. Chart.js and its matrix chart type (the heatmap) are vendored from npm in www/, each with
its version and sha256 in the .txt beside it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import psycopg
from htmltools import HTMLDependency
from shiny import App, reactive, render, req, ui
from shiny.reactive._reactives import Calc_, Effect_, Value
from shiny.render.renderer import Renderer
from shiny.types import SafeException, SilentException

from clickstream.analytics import dashboard, dashboard_charts, questions
from clickstream.analytics.dashboard_charts import STEP_LABELS
from clickstream.analytics.questions import AnalyticsError
from clickstream.analytics.warehouse import WarehouseError


def without_tracing_work() -> None:
    """shiny 1.8 names every reactive value, calc and effect it makes from its caller's source for OpenTelemetry
    (inspect.stack(), which reads source files): about half the server's work when a page opens, whose three data
    grids alone make dozens. And before each output it renders it tries to import the OpenTelemetry SDK, searching
    sys.path each time it is missing. Without the SDK installed nothing can trace: skip the naming, and let that
    import fail at once."""
    try:
        installed = importlib.util.find_spec("opentelemetry.sdk") is not None
    except ModuleNotFoundError:
        installed = False
    if not installed:
        Value._try_infer_name = lambda self: None
        Calc_._extract_otel_attrs = Effect_._extract_otel_attrs = lambda self, fn: {}
        sys.modules.setdefault("opentelemetry.sdk.trace", None)  # None: "not importable", without a search


without_tracing_work()

DSN_ENV = "CLICKSTREAM_DASHBOARD_DSN"
POLL_SECONDS = 3
READERS = 3  # connections of the process, shared by its pages: the eight queries of a change in about three rounds
DEFAULT_DAYS = 7
TIME_ZONES = ("UTC", "Europe/London", "Europe/Paris", "America/New_York", "America/Los_Angeles", "Asia/Ho_Chi_Minh",
              "Asia/Tokyo", "Australia/Sydney", "Asia/Kolkata")
LOGIN_LABELS = {"all": "All shoppers", "signed_in": "Signed in", "anonymous": "Anonymous"}
DEVICE_LABELS = {"all": "All devices", "desktop": "Desktop", "mobile": "Mobile", "tablet": "Tablet"}
BREAKDOWN_LABELS = {"none": "None", "device": "Device", "login_state": "Login state",
                    "traffic_source": "Traffic source (UTM)"}
GRAIN_LABELS = {"day": "Per day", "hour": "Per hour"}
LOST_ERRORS = (WarehouseError, psycopg.Error)
EMPTY_HELP = ("The warehouse has no events yet. Load some with `make demo` (a simulated week, loaded end to end), "
              "or `clickstream simulate` then `clickstream etl`. This page shows them as soon as they are loaded.")


class Reader:
    """A read-only connection to the warehouse, opened on first use and again on the call after it was lost."""

    def __init__(self, dsn: str | None) -> None:
        self.dsn = dsn
        self.conn: psycopg.Connection | None = None

    def __call__(self, question, *args):
        if not self.dsn:
            raise WarehouseError(f"{DSN_ENV} is not set: start the dashboard with `clickstream dashboard`")
        if self.conn is None or self.conn.closed:
            self.conn = questions.read_only(self.dsn)
            self.conn.autocommit = True
        try:
            return question(self.conn, *args)
        except psycopg.Error:
            self.close()
            raise

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Readers:
    """A few Readers on worker threads, one each, shared by every page: the queries a change needs run at once, not
    one after another, and the warehouse sees at most `size` dashboard connections however many pages are open."""

    def __init__(self, dsn: str | None, size: int = READERS) -> None:
        self.pool = ThreadPoolExecutor(size, thread_name_prefix="dashboard-reader")
        self.dsn, self.mine, self.readers, self.generation = dsn, threading.local(), [], 0

    def reader(self) -> Reader:
        """This thread's Reader, its connection closed first if it predates the last reconnect()."""
        if not hasattr(self.mine, "reader"):
            self.mine.reader, self.mine.generation = Reader(self.dsn), self.generation
            self.readers.append(self.mine.reader)
        if self.mine.generation != self.generation:
            self.mine.reader.close()
            self.mine.generation = self.generation
        return self.mine.reader

    def reconnect(self) -> None:
        """Each Reader opens a new connection on its next query (the warehouse came back: theirs are dead)."""
        self.generation += 1

    def submit(self, question, *args) -> Future:
        return self.pool.submit(lambda: self.reader()(question, *args))

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)
        for reader in self.readers:
            reader.close()


# The page's first dates and every page's poll of the warehouse's state, on the event loop's thread: one connection
# for the process, so opening a page waits for no connection but its queries' own; the queries run on READERS_POOL.
STATE_READER = Reader(os.environ.get(DSN_ENV))
READERS_POOL = Readers(os.environ.get(DSN_ENV))


def warehouse_state(read: Reader) -> tuple[str, object]:
    """("ready", (first day, last day)), ("empty", None) or ("lost", why)."""
    try:
        found = read(dashboard.data_range, "UTC")
    except LOST_ERRORS as error:
        return "lost", " ".join(str(error).split()) or type(error).__name__
    return ("ready", found) if found else ("empty", None)


def default_range(state: tuple[str, object]) -> tuple[date, date]:
    """The warehouse's last 7 days with data (up to today when there is none)."""
    first, last = state[1] if state[0] == "ready" else (None, date.today())
    start = last - timedelta(days=DEFAULT_DAYS - 1)
    return (max(first, start) if first else start), last


# --- formatting ---------------------------------------------------------------------------------------------------
def format_value(key: str, value) -> str:
    if key == "conversion":
        return "n/a" if value is None else f"{value:.2%}"
    if key == "revenue":
        return f"{value:,.2f}"
    return f"{value:,}"


def count(value) -> str:
    return "" if value is None or pd.isna(value) else f"{int(value):,}"


def percent(series: pd.Series) -> pd.Series:
    return series.map(lambda value: "" if value is None or pd.isna(value) else f"{value:.1%}")


# --- charts: Chart.js configs (clickstream.analytics.dashboard_charts), drawn in the browser ---------------------
class chart(Renderer[dict]):
    """An output whose value is a Chart.js config, drawn by www/chart_output.js (only the JSON travels)."""

    async def transform(self, value: dict) -> dict:
        return value


CHART_ALTS = {"funnel_plot": "Sessions reaching each funnel step",
              "trend_plot": "Events and sessions over time",
              "product_trend_plot": "Daily views, add-to-carts and purchases of the chosen product",
              "heatmap_plot": "Events by hour of day and day of week"}
WWW = Path(__file__).parent / "www"


def vendored(record: str) -> dict[str, str]:
    """The `key: value` lines of www/RECORD: a vendored script's package, version, file and sha256."""
    return dict(re.findall(r"^(\w+): (\S+)$", (WWW / record).read_text(encoding="utf-8"), re.M))


def script(record: str) -> HTMLDependency:
    found = vendored(record)
    return HTMLDependency(found["package"], found["version"], source={"subdir": str(WWW)},
                          script={"src": found["file"]}, all_files=False)


CHART_SCRIPTS = (  # served by the app itself: the page works offline and on an instance with no internet
    script("chart.js.txt"), script("chartjs-chart-matrix.txt"),
    HTMLDependency("clickstream-chart-output", "1", source={"subdir": str(WWW)},
                   script={"src": "chart_output.js"}, all_files=False),
)


def chart_output(output_id: str, height: str) -> ui.Tag:
    return ui.div(id=output_id, class_="chart-output", role="img", aria_label=CHART_ALTS[output_id],
                  style=f"height: {height}; width: 100%; position: relative;")


# --- page ---------------------------------------------------------------------------------------------------------
def kpi_box(key: str, title: str, *extra) -> ui.Tag:
    return ui.value_box(title, ui.output_ui(f"kpi_{key}"), *extra, theme="light")


def panel(title: str, *body, footer=None) -> ui.Tag:
    return ui.card(ui.card_header(title), *body, *([ui.card_footer(footer)] if footer else []), full_screen=True)


STYLE = """
.kpi-value { display: block; font-size: 1.6rem; font-weight: 600; }
.kpi-change { display: block; font-size: 0.85rem; }
.kpi-change.up { color: #047857; } .kpi-change.down { color: #b91c1c; } .kpi-change.flat { color: #6b7280; }
"""


def app_ui(request) -> ui.Tag:
    start, end = default_range(warehouse_state(STATE_READER))
    return ui.page_sidebar(
        ui.sidebar(
            ui.input_date_range("date_range", "Dates", start=start, end=end),
            ui.input_select("tz", "Business time zone", list(TIME_ZONES)),
            ui.input_select("login_state", "Shoppers", LOGIN_LABELS),
            ui.input_select("device", "Device", DEVICE_LABELS),
            ui.input_switch("include_bots", "Include bots", False),
            ui.input_switch("compare", "Compare with the previous period", True),
            ui.p("A session's device and login state are those of its first event.", class_="small text-muted"),
            width=290,
        ),
        ui.head_content(ui.tags.link(rel="icon", href="data:,"), ui.tags.style(STYLE)), *CHART_SCRIPTS,
        ui.output_ui("warehouse_status"),
        ui.layout_columns(
            kpi_box("events", "Events"), kpi_box("sessions", "Sessions"), kpi_box("visitors", "Visitors"),
            kpi_box("conversion", "Conversion (view → purchase)"),
            kpi_box("revenue", "Revenue", ui.p("shoppers' claim", class_="small text-muted mb-0")),
            col_widths=(2, 2, 2, 3, 3), fill=False,
        ),
        ui.layout_columns(
            panel("Funnel", ui.input_radio_buttons("funnel_breakdown", "Breakdown", BREAKDOWN_LABELS, inline=True),
                  chart_output("funnel_plot", "320px"), ui.output_data_frame("funnel_table")),
            panel("Trends", ui.input_radio_buttons("trend_grain", "Grain", GRAIN_LABELS, inline=True),
                  chart_output("trend_plot", "380px")),
            col_widths=(6, 6), fill=False,
        ),
        panel("Products", ui.p("Sort by a column, search with the boxes under the headers, choose a product (a row) "
                               "to see its daily trend.", class_="small text-muted"),
              ui.output_data_frame("products_table"), footer=questions.REVENUE_CLAIM),
        ui.layout_columns(
            panel("Product trend", ui.output_text("product_trend_title", inline=False),
                  chart_output("product_trend_plot", "320px")),
            panel("Categories", ui.output_data_frame("categories_table"), footer=questions.REVENUE_CLAIM),
            col_widths=(6, 6), fill=False,
        ),
        panel("Activity by hour and weekday", chart_output("heatmap_plot", "300px")),
        title="Clickstream dashboard",
        fillable=False,
    )


def server(input, output, session) -> None:
    read, readers = STATE_READER, READERS_POOL
    initial = warehouse_state(read)
    warehouse = reactive.value(initial)
    automatic = {default_range(initial)}  # the dates this page chose; dates the user chose stay

    @reactive.effect
    def _poll() -> None:
        """Read the warehouse's state every few seconds: a lost connection comes back, new data shows up (and the
        dates follow it while they are the default: the last days with data)."""
        reactive.invalidate_later(POLL_SECONDS)
        state = warehouse_state(read)
        with reactive.isolate():
            before, shown = warehouse(), tuple(input.date_range())
        if state != before:
            if state[0] == "ready":
                readers.reconnect()
            warehouse.set(state)
            # While the browser updates the dates, either end may be missing or an older default of ours.
            ours = all(bound is None or bound in {dates[n] for dates in automatic} for n, bound in enumerate(shown))
            if state[0] == "ready" and ours:
                start, end = default_range(state)
                automatic.add((start, end))
                ui.update_date_range("date_range", start=start, end=end)

    @reactive.calc
    def started() -> dict[tuple, Future]:
        """Every panel's query for the filters and the other inputs as they are, started at once on the readers; the
        panels' calcs take their results from here (a query not among them, after another input changed, runs
        alone)."""
        if warehouse()[0] != "ready":
            raise SilentException()
        chosen = filters()
        with reactive.isolate():
            wanted = [(dashboard.kpis, chosen), (dashboard.products, chosen), (dashboard.categories, chosen),
                      (dashboard.funnel, chosen, input.funnel_breakdown()),
                      (dashboard.trend, chosen, input.trend_grain()), (dashboard.heatmap, chosen)]
            if input.compare():
                wanted.append((dashboard.kpis, chosen.previous()))
            if chosen_product.is_set():
                wanted.append((dashboard.product_trend, chosen, chosen_product()[0]))
        return {key: readers.submit(*key) for key in wanted}

    def ask(question, *args):
        """question(conn, *args), or nothing while the warehouse is empty or lost (the page says why)."""
        if warehouse()[0] != "ready":
            raise SilentException()
        future = started().get((question, *args)) or readers.submit(question, *args)
        try:
            return future.result()
        except LOST_ERRORS as error:
            warehouse.set(("lost", " ".join(str(error).split()) or type(error).__name__))
            raise SilentException() from None

    @reactive.calc
    def filters() -> dashboard.Filters:
        start, end = input.date_range()
        req(start, end)
        chosen = dashboard.Filters(start, end, tz=input.tz(), login_state=input.login_state(),
                                   device=input.device(), include_bots=input.include_bots())
        try:
            chosen.params()
        except AnalyticsError as error:
            raise SafeException(str(error)) from None
        return chosen

    @render.ui
    def warehouse_status():
        kind, detail = warehouse()
        if kind == "lost":
            return ui.div(ui.strong("The warehouse cannot be reached. "), f"{detail}. ",
                          f"The page tries again every {POLL_SECONDS} seconds and shows the data when it answers.",
                          class_="alert alert-warning", role="alert")
        if kind == "empty":
            return ui.div(ui.strong("No data yet. "), EMPTY_HELP, class_="alert alert-info", role="status")
        first, last = detail
        return ui.p(f"The warehouse holds events from {first} to {last} (UTC days).", class_="small text-muted")

    # KPIs: one query for the period and one for the previous one (switching the comparison re-reads only that),
    # shared by the five boxes.
    @reactive.calc
    def kpis_now() -> dict:
        return ask(dashboard.kpis, filters())

    @reactive.calc
    def kpis_before() -> dict | None:
        return ask(dashboard.kpis, filters().previous()) if input.compare() else None

    def kpi(key: str) -> ui.TagList:
        now, before = kpis_now(), kpis_before()
        parts = [ui.span(format_value(key, now[key]), class_="kpi-value")]
        if before is not None:
            text, trend = dashboard.format_change(key, now[key], before[key])
            parts.append(ui.span(text, class_=f"kpi-change {trend}"))
        return ui.TagList(*parts)

    @render.ui
    def kpi_events():
        return kpi("events")

    @render.ui
    def kpi_sessions():
        return kpi("sessions")

    @render.ui
    def kpi_visitors():
        return kpi("visitors")

    @render.ui
    def kpi_conversion():
        return kpi("conversion")

    @render.ui
    def kpi_revenue():
        return kpi("revenue")

    # Funnel
    @reactive.calc
    def funnel_data() -> pd.DataFrame:
        return ask(dashboard.funnel, filters(), input.funnel_breakdown())

    @chart
    def funnel_plot():
        return dashboard_charts.funnel_chart(funnel_data())

    @render.data_frame
    def funnel_table():
        frame = funnel_data()
        shown = pd.DataFrame({"Segment": frame["segment"], "Step": frame["step"].map(STEP_LABELS),
                              "Sessions": frame["sessions"], "Conversion": percent(frame["conversion"]),
                              "Drop-off": frame["drop_off"].map(count)})
        return render.DataGrid(shown, width="100%")

    # Products, categories and the chosen product's trend
    @reactive.calc
    def products_data() -> pd.DataFrame:
        return ask(dashboard.products, filters())

    @render.data_frame
    def products_table():
        frame = products_data()
        shown = pd.DataFrame({"Product": frame["product_name"], "Category": frame["category"],
                              "Views": frame["views"], "Add to cart": frame["add_to_cart"],
                              "Purchases": frame["purchases"],
                              "View → purchase %": (frame["conversion"].astype(float) * 100).round(1),
                              "Revenue": frame["revenue"].astype(float).round(2), "ID": frame["product_id"]})
        return render.DataGrid(shown, filters=True, selection_mode="row", width="100%", height="420px")

    chosen_product = reactive.value()  # (product_id, name), set only when it changes

    def choose(product: tuple) -> None:
        with reactive.isolate():
            unchanged = chosen_product.is_set() and chosen_product() == product
        if not unchanged:  # reactive values compare by identity: an equal new tuple would invalidate
            chosen_product.set(product)

    @reactive.effect(priority=1)  # before the outputs: the product trend is drawn in the same round as the grid
    def _keep_product() -> None:
        """New products (the filters changed, or the first round): the chosen product while it has figures in the
        range, else the top product. So a filter change keeps the product and re-reads and redraws its trend once."""
        frame = products_data()
        req(not frame.empty)
        ids = frame["product_id"].tolist()
        with reactive.isolate():
            kept = chosen_product.is_set() and chosen_product()[0] in ids
        if not kept:
            choose((ids[0], frame["product_name"].iat[0]))

    @reactive.effect
    @reactive.event(input.products_table_cell_selection)
    async def _pick_product() -> None:
        """A row chosen in the grid becomes the chosen product. A grid redrawn with new figures has cleared its
        selection: the chosen product's row is selected again."""
        picked = products_table.data_view(selected=True)
        if len(picked):
            choose((picked["ID"].iat[0], picked["Product"].iat[0]))
            return
        ids = products_data()["product_id"].tolist()
        with reactive.isolate():
            chosen = chosen_product()[0] if chosen_product.is_set() else None
        if chosen in ids:
            await products_table.update_cell_selection({"type": "row", "rows": [ids.index(chosen)]})

    @reactive.calc
    def product_trend_data() -> pd.DataFrame:
        return ask(dashboard.product_trend, filters(), chosen_product()[0])

    @render.text
    def product_trend_title():
        return chosen_product()[1]

    @chart
    def product_trend_plot():
        return dashboard_charts.product_trend_chart(product_trend_data())

    @reactive.calc
    def categories_data() -> pd.DataFrame:
        return ask(dashboard.categories, filters())

    @render.data_frame
    def categories_table():
        frame = categories_data()
        shown = pd.DataFrame({"Category": frame["category"], "Views": frame["views"],
                              "Add to cart": frame["add_to_cart"], "Purchases": frame["purchases"],
                              "View → purchase %": (frame["conversion"].astype(float) * 100).round(1),
                              "Revenue": frame["revenue"].astype(float).round(2)})
        return render.DataGrid(shown, width="100%")

    # Trends and the heatmap
    @reactive.calc
    def trend_data() -> pd.DataFrame:
        return ask(dashboard.trend, filters(), input.trend_grain())

    @chart
    def trend_plot():
        return dashboard_charts.trend_chart(trend_data(), input.trend_grain())

    @reactive.calc
    def heatmap_data() -> pd.DataFrame:
        return ask(dashboard.heatmap, filters())

    @chart
    def heatmap_plot():
        return dashboard_charts.heatmap_chart(heatmap_data(), filters().tz)


app = App(app_ui, server)
