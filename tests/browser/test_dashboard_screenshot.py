"""clickstream.shop.dashboard_browser.screenshot (notebook 05's live page) against the dashboard that
`clickstream up` serves on the test stack, with a small simulated range loaded."""

from __future__ import annotations

from datetime import date, timedelta

import psycopg
import pytest

import dashboard_data
from clickstream.analytics import dashboard
from clickstream.local import stack
from clickstream.shop import browser, dashboard_browser
from clickstream.shop.simulate import SimulationConfig

pytestmark = [pytest.mark.browser, pytest.mark.integration]
CONFIG = SimulationConfig(start=date(2035, 6, 4), days=2, visitors=30, seed=55)
FIRST, LAST = CONFIG.start, CONFIG.start + timedelta(days=CONFIG.days - 1)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def loaded(local_stack):
    """(dashboard URL, reader DSN, Chromium) with CONFIG's range loaded; the warehouse emptied afterwards."""
    executable, found = browser.chromium()
    assert executable, found
    for admin in dashboard_data.empty_warehouse(local_stack):
        dashboard_data.load_simulated(local_stack, CONFIG)
        status = stack.status(local_stack)
        yield status["dashboard_url"], stack.warehouse_dsn(local_stack, "dashboard_reader"), executable


def test_the_screenshot_shows_the_filtered_kpi_and_every_panel(loaded, tmp_path):
    url, reader, executable = loaded
    mobile = dashboard.Filters(FIRST, LAST, tz="Asia/Ho_Chi_Minh", device="mobile")
    with psycopg.connect(reader) as conn:
        events = dashboard.kpis(conn, mobile)["events"]
        everyone = dashboard.kpis(conn, dashboard.Filters(FIRST, LAST))["events"]
    assert 0 < events < everyone
    path = tmp_path / "dashboard.png"
    assert dashboard_browser.screenshot(url, mobile, f"{events:,}", path, executable) == f"{events:,}"
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 50_000


def test_a_kpi_the_page_never_shows_is_an_error_and_no_screenshot(loaded, tmp_path):
    url, _, executable = loaded
    path = tmp_path / "never.png"
    with pytest.raises(AssertionError):
        dashboard_browser.screenshot(url, dashboard.Filters(FIRST, LAST), "-1", path, executable)
    assert not path.exists()
