"""The running dashboard (shiny/app.py) in Chromium, driven with Playwright and Shiny's test controller (here, next to
the storefront's browser helpers, so that no analytics module imports the shop's code).

    executable, found = browser.chromium()
    shown = dashboard_browser.screenshot(url, Filters(first, last), f"{kpis['events']:,}", path, executable)

`screenshot` sets the page's filters, waits until the events KPI shows the expected text, every chart is drawn,
every table has rows and nothing is recalculating, saves a full-page PNG and returns the KPI's text. It runs in a
thread of its own, so it also works in a notebook (Playwright's sync API refuses a running asyncio loop).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from clickstream.analytics.dashboard import Filters
from clickstream.shop.browser import CHROMIUM_ARGS

PLOTS = ("funnel_plot", "trend_plot", "product_trend_plot", "heatmap_plot")
TABLES = ("funnel_table", "products_table", "categories_table")
EVENTS_KPI = "#kpi_events .kpi-value"
SETTLED = ("window.Shiny && Shiny.shinyapp && Shiny.shinyapp.isConnected() && !document.querySelector('.recalculating')"
           " && !document.documentElement.classList.contains('shiny-busy')")
VIEWPORT = {"width": 1300, "height": 2400}


def screenshot(url: str, f: Filters, events_text: str, path: Path, executable: str, timeout_ms: int = 20_000) -> str:
    """Open the dashboard at `url` in Chromium (`executable`), set the filters `f`, wait until the events KPI reads
    `events_text` and every panel is drawn, save a full-page screenshot to `path`; the KPI's text. A Playwright
    AssertionError or TimeoutError when the page does not get there within `timeout_ms` per step."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(_screenshot, url, f, events_text, Path(path), executable, timeout_ms).result()


def _screenshot(url: str, f: Filters, events_text: str, path: Path, executable: str, timeout_ms: int) -> str:
    from playwright.sync_api import expect, sync_playwright
    from shiny.playwright import controller

    with sync_playwright() as playwright:
        chrome = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = chrome.new_page(viewport=VIEWPORT)
            page.goto(url)
            page.wait_for_function(SETTLED, timeout=timeout_ms)
            controller.InputSelect(page, "tz").set(f.tz)
            controller.InputDateRange(page, "date_range").set((str(f.start), str(f.end)))
            controller.InputSelect(page, "login_state").set(f.login_state)
            controller.InputSelect(page, "device").set(f.device)
            controller.InputSwitch(page, "include_bots").set(f.include_bots)
            expect(page.locator(EVENTS_KPI)).to_have_text(events_text, timeout=timeout_ms)
            for plot in PLOTS:  # drawn by Chart.js
                expect(page.locator(f"#{plot}[data-drawn] canvas")).to_be_visible(timeout=timeout_ms)
            for table in TABLES:
                expect(page.locator(f"#{table} tbody tr").first).to_be_visible(timeout=timeout_ms)
            page.wait_for_function(SETTLED, timeout=timeout_ms)
            page.screenshot(path=path, full_page=True)
            return page.locator(EVENTS_KPI).inner_text()
        finally:
            chrome.close()
