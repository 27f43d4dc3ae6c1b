"""Fixtures of the integration tests that use the test stack's warehouse (shared by every test file, so each
empties what it loads)."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest

from clickstream.analytics import rollups, warehouse
from clickstream.local import stack
from clickstream.settings import Settings

LOADED_TABLES = ("clickstream_events", "clickstream_rejected", "etl_load_log", "rollup_pending",
                 *rollups.ROLLUP_TABLES)


@pytest.fixture(scope="module")
def dw(local_stack: Settings) -> tuple[str, str, str]:
    """(admin DSN, etl_writer DSN, dashboard_reader DSN) of the migrated test warehouse."""
    admin = stack.status(local_stack)["dw_admin_dsn"]
    warehouse.migrate(admin)
    return admin, stack.warehouse_dsn(local_stack, "etl_writer"), stack.warehouse_dsn(local_stack, "dashboard_reader")


def _empty(admin_dsn: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE " + ", ".join(LOADED_TABLES))


@pytest.fixture(scope="session")
def empty_warehouse() -> Callable[[str], None]:
    """empty_warehouse(admin_dsn): delete every event, reject, load-log row and rollup of the warehouse."""
    return _empty
