"""The warehouse, output folder and watched pages the dashboard tests (Python and R apps) share."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import psycopg
from playwright.sync_api import Browser, Page

from clickstream import aws
from clickstream.analytics import etl, rollups, warehouse
from clickstream.local import stack
from clickstream.settings import Settings
from clickstream.shop import traffic
from clickstream.shop.simulate import SimulationConfig

ROOT = Path(__file__).resolve().parents[2]


def empty(admin_dsn: str) -> None:
    tables = ("clickstream_events", "clickstream_rejected", "etl_load_log", "rollup_pending", *rollups.ROLLUP_TABLES)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE " + ", ".join(tables))


def empty_warehouse(settings: Settings) -> Iterator[str]:
    """The superuser's DSN of the migrated warehouse, empty at first and emptied again when the generator ends."""
    dsn = stack.status(settings)["dw_admin_dsn"]
    warehouse.migrate(dsn)
    empty(dsn)
    yield dsn
    empty(dsn)


def load_simulated(settings: Settings, config: SimulationConfig) -> None:
    """`config`'s traffic stored as the ingest Lambda would, loaded by the ETL (the day after too: late events)."""
    s3 = aws.client("s3", settings)
    traffic.send(config, traffic.IngestTarget.from_templates(settings, s3))
    bucket, etl_dsn = stack.status(settings)["raw_bucket"], stack.warehouse_dsn(settings, "etl_writer")
    for n in range(config.days + 1):
        etl.run_etl(s3, bucket, etl_dsn, etl.EtlRequest(date=config.start + timedelta(days=n)))


def output_folder(name: str) -> Path:
    """$CLICKSTREAM_TEST_OUTPUT/<name>/ (by default test-output/<name>/ at the repository root), created."""
    folder = Path(os.environ.get("CLICKSTREAM_TEST_OUTPUT", ROOT / "test-output")) / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextmanager
def watched_page(browser: Browser, height: int) -> Iterator[Page]:
    """A page of a fresh browser profile, 1300 px wide; every console error and page error goes to page.errors."""
    context = browser.new_context(viewport={"width": 1300, "height": height})
    page = context.new_page()
    page.errors = []
    page.on("console", lambda message: message.type == "error" and page.errors.append(message.text))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()
