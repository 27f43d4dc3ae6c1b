"""The `sbw` compatibility schema (migration 0006): the original workshop's R dashboard runs on this warehouse.

Events of both trackers go through the project's own path (contract.normalize_event, the raw object the ingest
writes, transform_object, load_chunk), then the original app's query runs as sbw_reader, unchanged.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from psycopg import errors, sql

from clickstream import contract
from clickstream.analytics.transform import transform_object
from clickstream.analytics.warehouse import ObjectLoad, load_chunk
from clickstream.ingestion.ingest import ServerContext, build_raw_object
from clickstream.local import postgres, stack
from clickstream.shop import samples

pytestmark = pytest.mark.integration

DAY = datetime(2035, 2, 10, tzinfo=timezone.utc)
RECEIVED_AT = DAY + timedelta(hours=9)
# The columns of the original ETL's table (SBW-Cloudworks/ClickStream.Lambda, ClickStream.Lambda.ETL/index.mjs).
ORIGINAL_COLUMNS = [
    "event_id", "event_timestamp", "event_name", "user_id", "user_login_state", "identity_source", "client_id",
    "session_id", "is_first_visit", "context_product_id", "context_product_name", "context_product_category",
    "context_product_brand", "context_product_price", "context_product_discount_price", "context_product_url_path",
]
# How a new-tracker event must read in sbw (issue 14), every v1 name.
SHOWN_AS = {
    "page_view": "page_view", "product_list_view": "category_view", "product_view": "product_view",
    "search": "search", "add_to_cart": "add_to_cart_click", "remove_from_cart": "remove_from_cart_click",
    "add_to_wishlist": "wishlist_toggle", "begin_checkout": "checkout_start", "purchase": "checkout_complete",
    "login": "login_success", "logout": "logout", "sign_up": "sign_up", "click": "click", "share": "share_click",
}
# The original app's fetch_events (SBW-Cloudworks/ClickSteam.RShiny, SHINY_R_CLICKSTEAMS_PROJECT.R), as it sends it:
# RPostgres binds $1, $2 (and $3 with a login state), so it runs here through psycopg's RawCursor.
APP_QUERY = (
    "SELECT event_timestamp, event_name, user_login_state, client_id, session_id, is_first_visit,"
    " context_product_id AS product_id, context_product_name AS product_name,"
    " context_product_category AS product_category, context_product_brand AS product_brand,"
    " context_product_price::numeric AS product_price, context_product_discount_price AS product_discount_price,"
    " context_product_url_path AS product_url_path"
    " FROM clickstream_events WHERE event_timestamp >= $1 AND event_timestamp < $2 "
)


def load(conn: psycopg.Connection, *posted: dict) -> list[str]:
    """Load posted events (v1 or legacy) as the ingest and the ETL would; their event ids in order."""
    normalized = []
    for event in posted:
        result, reasons = contract.normalize_event(event, RECEIVED_AT)
        assert reasons == []
        normalized.append(result)
    raw_object = build_raw_object(normalized, ServerContext(request_id="r-sbw"), RECEIVED_AT, uuid.uuid4())
    key = f"events/2035/02/10/09/{raw_object['object_id']}.json"
    transformed = transform_object(raw_object, key)
    assert transformed.rejects == []
    load_chunk(conn, [ObjectLoad(key, "etag-1", transformed.rows, transformed.rejects)])
    return [event.event["event_id"] for event in normalized]


def canonical(name: str, **overrides) -> dict:
    return samples.canonical_event(name, at=DAY + timedelta(hours=8), **overrides)


def legacy(name: str, **overrides) -> dict:
    return samples.legacy_event(name, event_id=str(uuid.uuid4()), **overrides)


@pytest.fixture(scope="module")
def sbw_dsn(local_stack) -> str:
    return stack.warehouse_dsn(local_stack, postgres.SBW_READER)


@pytest.fixture
def loaded(dw, empty_warehouse):
    """Every v1 name from the new tracker, every original name from the original one; {event_id: name shown}."""
    admin, etl_dsn, _ = dw
    empty_warehouse(admin)
    spoofed = canonical("page_view", properties={"legacy": {"event_name": "checkout_complete"}})
    with psycopg.connect(etl_dsn) as conn:
        new = load(conn, *(canonical(name) for name in contract.EVENT_NAMES), spoofed)
        old = load(conn, *(legacy(name) for name in contract.LEGACY_EVENT_NAMES))
    yield {**dict(zip(new, [*(SHOWN_AS[name] for name in contract.EVENT_NAMES), "page_view"])),
           **dict(zip(old, contract.LEGACY_EVENT_NAMES))}
    empty_warehouse(admin)


def rows(dsn: str, query: str, params=()) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()


def app_kpis(conn: psycopg.Connection, login_state: str = "ALL") -> dict:
    """The app's query for DAY (its date range input: [day, day + 1) in UTC) and its KPI arithmetic."""
    query, params = APP_QUERY, [DAY, DAY + timedelta(days=1)]
    if login_state != "ALL":
        query, params = query + "AND user_login_state = $3", [*params, login_state]
    fetched = conn.cursor(row_factory=psycopg.rows.dict_row).execute(query, params).fetchall()
    names = [row["event_name"] for row in fetched]
    add_to_cart, checkout_complete = names.count("add_to_cart_click"), names.count("checkout_complete")
    return {"total_events": len(fetched), "unique_clients": len({row["client_id"] for row in fetched}),
            "checkout_rate": round(checkout_complete / add_to_cart * 100, 1) if add_to_cart > 0 else 0}


def test_event_names_are_the_contracts_mappings(dw):
    shown = {(original, event_name, contract.ORIGINAL_EVENT_NAMES.get(event_name) == original)
             for original, (event_name, _) in contract.LEGACY_EVENT_NAMES.items()}
    assert set(rows(dw[0], "SELECT original_name, event_name, for_v1_events FROM sbw.event_names")) == shown


def test_the_view_has_the_original_tables_columns(dw):
    columns = rows(dw[0], "SELECT column_name FROM information_schema.columns"
                          " WHERE table_schema = 'sbw' AND table_name = 'clickstream_events' ORDER BY ordinal_position")
    assert [column for (column,) in columns] == ORIGINAL_COLUMNS


def test_every_event_of_both_trackers_reads_in_the_original_vocabulary(dw, loaded):
    shown = dict(rows(dw[0], "SELECT event_id::text, event_name FROM sbw.clickstream_events"))
    assert shown == loaded
    assert rows(dw[0], "SELECT count(*) FROM public.clickstream_events") == [(len(loaded),)]


def test_the_original_apps_query_and_checkout_rate_run_unchanged_as_sbw_reader(dw, loaded, sbw_dsn):
    admin, etl_dsn, reader_dsn = dw
    with psycopg.connect(etl_dsn) as conn:  # 3 + 1 adds to cart, 1 + 2 completed checkouts: 75 %
        load(conn, canonical("add_to_cart"), canonical("add_to_cart"), legacy("checkout_complete"))
    with psycopg.connect(sbw_dsn, cursor_factory=psycopg.RawCursor) as conn:
        assert conn.execute("SHOW search_path").fetchone() == ("sbw, public",)
        kpis = app_kpis(conn)
        guests = app_kpis(conn, "guest")  # the original tracker's events say guest, the new one's anonymous
    clients = rows(admin, "SELECT count(DISTINCT client_id) FROM clickstream_events")[0][0]
    assert kpis == {"total_events": len(loaded) + 3, "unique_clients": clients, "checkout_rate": 75.0}
    assert guests == {"total_events": len(contract.LEGACY_EVENT_NAMES) + 1, "unique_clients": 1,
                      "checkout_rate": 200.0}
    with psycopg.connect(reader_dsn, cursor_factory=psycopg.RawCursor) as conn:  # the canonical table: the bug
        assert app_kpis(conn)["checkout_rate"] == 0


def test_dashboard_reader_reads_sbw_and_both_readers_read_later_views(dw, loaded, sbw_dsn):
    admin, _, reader_dsn = dw
    with psycopg.connect(reader_dsn) as conn:
        conn.execute("SET search_path TO sbw, public")
        assert conn.execute("SELECT count(*) FROM clickstream_events").fetchone() == (len(loaded),)
        assert conn.execute("SELECT count(*) FROM event_names").fetchone() == (len(contract.LEGACY_EVENT_NAMES),)
    view = sql.Identifier("sbw", f"later_{uuid.uuid4().hex[:8]}")
    with psycopg.connect(admin, autocommit=True) as conn:  # as a later migration would
        conn.execute(sql.SQL("CREATE VIEW {} AS SELECT count(*) AS events FROM public.clickstream_events").format(view))
    try:
        for dsn in (reader_dsn, sbw_dsn):
            with psycopg.connect(dsn) as conn:
                assert conn.execute(sql.SQL("SELECT events FROM {}").format(view)).fetchone() == (len(loaded),)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP VIEW {}").format(view))


TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


def test_both_readers_may_only_select_each_relation_of_sbw(dw):
    admin = dw[0]
    relations = [name for (name,) in rows(admin, "SELECT oid::regclass::text FROM pg_class"
                                                 " WHERE relnamespace = 'sbw'::regnamespace")]
    assert {"sbw.clickstream_events", "sbw.event_names"} <= set(relations)
    for role in (postgres.SBW_READER, postgres.DASHBOARD_READER):
        for relation in relations:
            granted = {privilege for privilege in TABLE_PRIVILEGES
                       if rows(admin, "SELECT has_table_privilege(%s, %s, %s)", (role, relation, privilege))[0][0]}
            assert granted == {"SELECT"}, (role, relation)


@pytest.mark.parametrize("statement", [
    "DELETE FROM public.clickstream_events",
    "SELECT count(*) FROM public.clickstream_events",
    "SELECT count(*) FROM public.etl_load_log",
    "CREATE TABLE sbw.mine (id int)",
    "CREATE VIEW mine AS SELECT 1",
    "CREATE TEMP TABLE mine (id int)",
    "CREATE SCHEMA mine",
])
def test_sbw_reader_reads_nothing_outside_sbw_and_creates_nothing(dw, sbw_dsn, statement):
    with psycopg.connect(sbw_dsn) as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(statement)


def test_sbw_reader_reaches_only_the_warehouse(local_stack, sbw_dsn):
    password = psycopg.conninfo.conninfo_to_dict(sbw_dsn)["password"]
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(postgres.dsn(local_stack.host, local_stack.dw_port, "postgres", postgres.SBW_READER, password))
