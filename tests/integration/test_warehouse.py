"""The warehouse schema, its migrations runner and the chunk load, against the test stack's real PostgreSQL."""

from __future__ import annotations

import hashlib
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.conninfo import make_conninfo

from clickstream import aws
from clickstream.analytics import rollups, warehouse
from clickstream.ingestion import raw
from clickstream.local import postgres, stack
from clickstream.analytics.transform import COLUMNS, Reject, transform_object
from clickstream.analytics.warehouse import ObjectLoad, load_chunk

pytestmark = pytest.mark.integration

ISSUE_COLUMNS = [  # issue 3, in its order: the workshop's columns, then the added ones
    "event_id", "event_timestamp", "event_name", "user_id", "user_login_state", "identity_source", "client_id",
    "session_id", "is_first_visit", "context_product_id", "context_product_name", "context_product_category",
    "context_product_brand", "context_product_price", "context_product_discount_price", "context_product_url_path",
    "client_ts", "received_at", "loaded_at", "page_url", "page_path", "page_type", "referrer", "utm_source",
    "utm_medium", "utm_campaign", "user_agent", "device_category", "is_bot", "quantity", "cart_id", "order_id",
    "value", "currency", "properties", "schema_version", "source_key",
]
TABLES = ("clickstream_events", "clickstream_rejected", "etl_load_log")


@pytest.fixture
def empty(dw, empty_warehouse):
    admin, etl_dsn, _ = dw
    empty_warehouse(admin)
    with warehouse.connect(etl_dsn) as conn:
        yield conn


@pytest.fixture
def scratch_db(dw):
    """An empty database of its own (dropped afterwards) and a copy of the migrations to change."""
    admin = dw[0]
    name = f"scratch_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(make_conninfo(admin, dbname="postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(admin, dbname=name)
    finally:
        with psycopg.connect(make_conninfo(admin, dbname="postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def one(dsn: str, query: str, params=()):
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchone()


def all_rows(dsn: str, query: str, params=()):
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()


# Migrations -----------------------------------------------------------------------------------------------------


def test_migrate_applies_each_file_once_and_records_its_checksum(scratch_db, tmp_path):
    migrations = Path(shutil.copytree(warehouse.migrations_dir(), tmp_path / "migrations"))
    files = sorted(migrations.glob("*.sql"))
    assert warehouse.migrate(scratch_db, migrations) == [path.stem for path in files]
    assert warehouse.migrate(scratch_db, migrations) == []
    recorded = all_rows(scratch_db, "SELECT version, checksum FROM schema_migrations ORDER BY version")
    assert recorded == [(path.stem, hashlib.sha256(path.read_bytes()).hexdigest()) for path in files]

    (migrations / "0099_extra.sql").write_text("CREATE TABLE IF NOT EXISTS extra (id int PRIMARY KEY);")
    assert warehouse.migrate(scratch_db, migrations) == ["0099_extra"]


def test_migrate_refuses_a_file_changed_after_it_was_applied(scratch_db, tmp_path):
    migrations = Path(shutil.copytree(warehouse.migrations_dir(), tmp_path / "migrations"))
    warehouse.migrate(scratch_db, migrations)
    first = sorted(migrations.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(warehouse.MigrationError, match=f"{first.name} was changed after it was applied"):
        warehouse.migrate(scratch_db, migrations)


def test_a_failing_migration_leaves_no_trace(scratch_db, tmp_path):
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0001_half.sql").write_text("CREATE TABLE half (id int); SELECT no_such_function();")
    with pytest.raises(errors.UndefinedFunction):
        warehouse.migrate(scratch_db, migrations)
    assert one(scratch_db, "SELECT to_regclass('half'), count(*) FROM schema_migrations") == (None, 0)


def test_misnamed_migration_file_is_refused(tmp_path):
    (tmp_path / "1_tables.sql").write_text("SELECT 1;")
    with pytest.raises(warehouse.MigrationError, match="NNNN_snake_case.sql: 1_tables.sql"):
        warehouse.migration_files(tmp_path)


# Schema -----------------------------------------------------------------------------------------------------------


def test_events_table_has_the_issue_columns_in_order_with_exact_money(dw):
    admin = dw[0]
    columns = all_rows(admin, "SELECT column_name, data_type, numeric_precision, numeric_scale, is_nullable"
                              " FROM information_schema.columns WHERE table_schema = 'public'"
                              " AND table_name = 'clickstream_events'"
                              " ORDER BY ordinal_position")
    assert [c[0] for c in columns] == ISSUE_COLUMNS
    types = {c[0]: c[1:] for c in columns}
    assert types["event_id"][0] == "uuid"
    assert types["event_timestamp"] == ("timestamp with time zone", None, None, "NO")
    for money in ("context_product_price", "context_product_discount_price", "value"):
        assert types[money][:3] == ("numeric", 12, 2)
    assert types["properties"][0] == "jsonb"
    assert one(admin, "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
                      " AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'clickstream_events'::regclass"
                      " AND i.indisprimary") == ("event_id",)


def test_copy_columns_are_the_table_columns_but_loaded_at():
    assert list(COLUMNS) == [name for name in ISSUE_COLUMNS if name != "loaded_at"]


def test_read_indexes_exist(dw):
    indexes = dict(all_rows(dw[0], "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'clickstream_events'"))
    assert "USING brin (event_timestamp)" in indexes["clickstream_events_event_timestamp_brin"]
    assert "(event_name, context_product_id)" in indexes["clickstream_events_event_name_product"]


def test_event_timestamp_rule_is_documented_in_the_database(dw):
    [comment] = one(dw[0], "SELECT col_description('clickstream_events'::regclass, 2)")
    assert "received_at - (sent_ts - client_ts)" in comment and "Never the load time" in comment


def test_roles_can_do_what_they_need_and_no_more(dw):
    _, etl_dsn, reader_dsn = dw
    with psycopg.connect(etl_dsn) as conn:
        conn.execute("CREATE TEMP TABLE t (id int)")
        conn.execute("SELECT count(*) FROM etl_load_log")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE public.not_allowed (id int)")
    with psycopg.connect(reader_dsn) as conn:
        conn.execute("SELECT count(*) FROM clickstream_events")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("DELETE FROM etl_load_log")


def test_connect_error_names_the_server_but_not_the_password(dw):
    port = stack.free_port()
    dsn = postgres.dsn("127.0.0.1", port, "clickstream_dw", "etl_writer", "s3cret-pw")
    with pytest.raises(warehouse.WarehouseError, match=f"cannot connect to the warehouse at 127.0.0.1:{port}") as info:
        warehouse.connect(dsn)
    assert "Connection refused" in str(info.value) and "s3cret-pw" not in str(info.value)


# Chunk load -------------------------------------------------------------------------------------------------------


RECEIVED = "2031-03-01T10:00:00.000Z"


def stored(event_id: uuid.UUID, **event) -> dict:
    return {
        "schema_version": "1",
        "source": "canonical",
        "event": {"event_id": str(event_id), "event_name": "page_view", "client_ts": RECEIVED,
                  "client_id": "c-1", "session_id": "s-1", **event},
        "server": {"received_at": RECEIVED, "request_id": "r", "api_request_id": None, "api_id": None,
                   "stage": None, "user_agent": None, "source_ip_prefix": None},
        "legacy": None,
    }


def object_load(key: str, *events: dict, etag: str = "etag-1") -> ObjectLoad:
    raw_object = {"schema_version": "1", "object_id": str(uuid.uuid4()), "received_at": RECEIVED, "request_id": "r",
                  "event_count": len(events), "events": list(events)}
    transformed = transform_object(raw_object, key)
    return ObjectLoad(key, etag, transformed.rows, transformed.rejects)


def test_load_chunk_inserts_each_event_once_and_logs_each_object(empty, dw):
    a, b, c = (uuid.uuid4() for _ in range(3))
    loads = [object_load("k/1", stored(a), stored(b), stored(a)),  # duplicate inside one object
             object_load("k/2", stored(b), stored(c)),  # b again, in another object of the same chunk
             object_load("k/3", stored(uuid.uuid4(), page_type="x\x00"))]
    counts = load_chunk(empty, loads)
    assert {key: (n.rows_inserted, n.duplicates, n.rejected) for key, n in counts.items()} == {
        "k/1": (2, 1, 0), "k/2": (1, 1, 0), "k/3": (0, 0, 1)}
    admin = dw[0]
    assert sorted(r[0] for r in all_rows(admin, "SELECT event_id FROM clickstream_events")) == sorted([a, b, c])
    assert all_rows(admin, "SELECT key, etag, rows_inserted, duplicates, rejected FROM etl_load_log ORDER BY key") == [
        ("k/1", "etag-1", 2, 1, 0), ("k/2", "etag-1", 1, 1, 0), ("k/3", "etag-1", 0, 0, 1)]
    assert one(admin, "SELECT source_key, event_index, reason FROM clickstream_rejected") == (
        "k/3", 0, "$.event.page_type: contains U+0000 (NUL), which the warehouse cannot store")
    assert all_rows(admin, "SELECT day FROM rollup_pending") == [(date(2031, 3, 1),)]  # for the rollup refresh

    again = load_chunk(empty, [object_load("k/4", stored(a), stored(c))])
    assert again["k/4"] == warehouse.LoadCounts(rows_inserted=0, duplicates=2, rejected=0)
    assert one(admin, "SELECT count(*) FROM clickstream_events") == (3,)


def test_within_a_chunk_the_earliest_received_copy_of_an_event_wins(empty, dw):
    event_id = uuid.uuid4()
    late = stored(event_id, page_type="retry")
    late["server"] = {**late["server"], "received_at": "2031-03-01T10:05:00.000Z"}
    counts = load_chunk(empty, [object_load("k/a", late), object_load("k/b", stored(event_id, page_type="first"))])
    assert (counts["k/a"].duplicates, counts["k/b"].rows_inserted) == (1, 1)
    assert one(dw[0], "SELECT page_type, source_key FROM clickstream_events") == ("first", "k/b")


INSERT_ONE = ("INSERT INTO clickstream_events (event_id, event_timestamp, event_name, identity_source, client_id,"
              " session_id, client_ts, received_at, is_bot, schema_version, source_key)"
              " VALUES (%s, now(), 'page_view', 'client_id', 'c', 's', now(), now(), false, '1', 'other-run')")


def test_ids_a_concurrent_run_commits_while_the_chunk_is_prepared_are_skipped_not_an_error(empty, dw, monkeypatch):
    taken, fresh = uuid.uuid4(), uuid.uuid4()
    admin = dw[0]
    original = warehouse._first_rows

    def choose_then_race(objects):
        rows = original(objects)
        with psycopg.connect(admin, autocommit=True) as other:  # another run commits `taken` meanwhile
            other.execute(INSERT_ONE, (taken,))
        return rows

    monkeypatch.setattr(warehouse, "_first_rows", choose_then_race)
    counts = load_chunk(empty, [object_load("k/1", stored(taken), stored(fresh))])
    assert counts["k/1"] == warehouse.LoadCounts(rows_inserted=1, duplicates=1, rejected=0)
    assert all_rows(admin, "SELECT event_id, source_key FROM clickstream_events ORDER BY source_key") == [
        (fresh, "k/1"), (taken, "other-run")]
    assert one(admin, "SELECT rows_inserted, duplicates FROM etl_load_log WHERE key = 'k/1'") == (1, 1)


def test_two_loads_waiting_on_each_others_ids_resolve_the_deadlock_without_an_error(empty, dw):
    """Another load holds x uncommitted; this chunk's COPY inserts y, then waits on x; the other then inserts
    y: a deadlock. PostgreSQL aborts the COPY (it waited first); the chunk goes through ON CONFLICT instead."""
    x, y = uuid.uuid4(), uuid.uuid4()
    admin = dw[0]
    with psycopg.connect(admin) as other:
        other.execute(INSERT_ONE, (x,))
        with ThreadPoolExecutor(1) as pool:
            loading = pool.submit(load_chunk, empty, [object_load("k/1", stored(y), stored(x))])
            waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND left(query, 4) = 'COPY'"
            for _ in range(200):
                if one(admin, waiting) == (1,) or loading.done():
                    break
                time.sleep(0.05)
            assert one(admin, waiting) == (1,), "the chunk's COPY never waited on x"
            other.execute(INSERT_ONE, (y,))  # closes the cycle; returns once PostgreSQL has broken it
            other.commit()
            counts = loading.result(timeout=30)
    assert counts["k/1"] == warehouse.LoadCounts(rows_inserted=0, duplicates=2, rejected=0)
    assert sorted(all_rows(admin, "SELECT event_id, source_key FROM clickstream_events")) == sorted(
        [(x, "other-run"), (y, "other-run")])
    assert one(admin, "SELECT rows_inserted, duplicates FROM etl_load_log WHERE key = 'k/1'") == (0, 2)


def test_a_failing_chunk_loads_nothing_and_marks_nothing_loaded(empty, dw):
    good = object_load("k/good", stored(uuid.uuid4()))
    bad = object_load("k/bad", stored(uuid.uuid4()))
    row = list(bad.rows[0])
    row[list(COLUMNS).index("event_timestamp")] = None
    bad = ObjectLoad(bad.key, bad.etag, [tuple(row)], [Reject("k/bad", 1, "x", None)])
    with pytest.raises(errors.NotNullViolation):
        load_chunk(empty, [good, bad])
    admin = dw[0]
    for table in TABLES:
        assert one(admin, f"SELECT count(*) FROM {table}") == (0,), table
    # the connection is usable again, and the staging table went with the rolled back transaction
    assert load_chunk(empty, [good])["k/good"].rows_inserted == 1


def test_reloading_a_changed_object_replaces_its_rejects_and_log_row(empty, dw):
    kept = uuid.uuid4()
    load_chunk(empty, [object_load("k/1", stored(kept), stored(uuid.uuid4(), value="1.005"))])
    fixed = uuid.uuid4()
    counts = load_chunk(empty, [object_load("k/1", stored(kept), stored(fixed, value="1.00"), etag="etag-2")])
    assert counts["k/1"] == warehouse.LoadCounts(rows_inserted=1, duplicates=1, rejected=0)
    admin = dw[0]
    assert one(admin, "SELECT count(*) FROM clickstream_rejected") == (0,)
    assert one(admin, "SELECT etag, rows_inserted, duplicates FROM etl_load_log") == ("etag-2", 1, 1)
    assert one(admin, "SELECT value FROM clickstream_events WHERE event_id = %s", (fixed,)) == (Decimal("1.00"),)


def test_the_same_key_twice_in_one_chunk_is_a_programming_error(empty):
    with pytest.raises(ValueError, match="the same object twice: k/1"):
        load_chunk(empty, [object_load("k/1", stored(uuid.uuid4())), object_load("k/1", stored(uuid.uuid4()))])


def test_loaded_at_is_the_commit_time_not_an_event_time(empty, dw):
    before = datetime.now(timezone.utc)
    load_chunk(empty, [object_load("k/1", stored(uuid.uuid4()))])
    loaded_at, event_timestamp = one(dw[0], "SELECT loaded_at, event_timestamp FROM clickstream_events")
    assert loaded_at >= before.replace(microsecond=0) and event_timestamp == datetime(2031, 3, 1, 10, tzinfo=timezone.utc)


# Privileges (as `clickstream up` sets them: setup_warehouse, then the migrations) ---------------------------------

TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


def test_etl_writer_reads_but_cannot_write_schema_migrations(dw):
    with psycopg.connect(dw[1]) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] >= 4
        conn.rollback()
        for statement in ("INSERT INTO schema_migrations (version, checksum) VALUES ('9999_mine', 'x')",
                          "UPDATE schema_migrations SET checksum = 'x'", "DELETE FROM schema_migrations",
                          "TRUNCATE schema_migrations"):
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(statement)
            conn.rollback()


def test_each_role_has_exactly_its_privileges_on_every_table_and_function(dw):
    """dashboard_reader: SELECT only; etl_writer: SELECT, INSERT, UPDATE, DELETE, but only SELECT on
    schema_migrations; both execute the warehouse's SQL functions."""
    admin = dw[0]
    tables = [row[0] for row in all_rows(admin, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    assert {"schema_migrations", "clickstream_events", "rollup_pending", *rollups.ROLLUP_TABLES} <= set(tables)
    granted = {}
    for role in (postgres.ETL_WRITER, postgres.DASHBOARD_READER):
        for table in tables:
            granted[role, table] = {p for p in TABLE_PRIVILEGES
                                    if one(admin, "SELECT has_table_privilege(%s, %s, %s)", (role, f"public.{table}", p))[0]}
    for table in tables:
        etl = {"SELECT"} if table == "schema_migrations" else {"SELECT", "INSERT", "UPDATE", "DELETE"}
        assert granted[postgres.ETL_WRITER, table] == etl, table
        assert granted[postgres.DASHBOARD_READER, table] == {"SELECT"}, table
    functions = all_rows(admin, "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace")
    assert functions
    for (function,) in functions:
        for role in (postgres.ETL_WRITER, postgres.DASHBOARD_READER):
            assert one(admin, "SELECT has_function_privilege(%s, %s, 'EXECUTE')", (role, function))[0], (role, function)


def test_dashboard_reader_cannot_write_any_table(dw):
    tables = [row[0] for row in all_rows(dw[0], "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    with psycopg.connect(dw[2]) as conn:
        for table in tables:
            for statement in ("DELETE FROM {}", "UPDATE {} SET {} = {}", "TRUNCATE {}", "INSERT INTO {} DEFAULT VALUES"):
                column = conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum = 1",
                                      (table,)).fetchone()[0]
                query = sql.SQL(statement).format(sql.Identifier(table), sql.Identifier(column), sql.Identifier(column))
                with pytest.raises(errors.InsufficientPrivilege):
                    conn.execute(query)
                conn.rollback()


# Deleting days (tests and notebooks that reuse their days) ----------------------------------------------------------


def received(key: str, at: str, *events: dict) -> ObjectLoad:
    """`object_load` of an object received at `at` (each event's server block too)."""
    events = tuple({**event, "server": {**event["server"], "received_at": at}} for event in events)
    raw_object = {"schema_version": "1", "object_id": str(uuid.uuid4()), "received_at": at, "request_id": "r",
                  "event_count": len(events), "events": list(events)}
    transformed = transform_object(raw_object, key)
    return ObjectLoad(key, "etag-1", transformed.rows, transformed.rejects)


def load_days(conn, admin: str) -> dict[str, uuid.UUID]:
    """Events of 2034-05-31 to 2034-06-03 in objects of 06-01 to 06-03, loaded, rollups refreshed; ids by name."""
    ids = {name: uuid.uuid4() for name in ("before midnight", "first", "second", "late", "kept")}
    load_chunk(conn, [
        received("events/2034/06/01/00/a.json", "2034-06-01T00:01:00.000Z",
                 stored(ids["before midnight"], client_ts="2034-05-31T23:59:00.000Z", sent_ts="2034-06-01T00:01:00.000Z"),
                 stored(ids["first"]), stored(uuid.uuid4(), page_type="x\x00")),
        received("events/2034/06/02/10/b.json", "2034-06-02T10:00:00.000Z", stored(ids["second"])),
        received("events/2034/06/03/00/c.json", "2034-06-03T00:30:00.000Z",
                 stored(ids["late"], client_ts="2034-06-02T23:00:00.000Z", sent_ts="2034-06-03T00:30:00.000Z"),
                 stored(ids["kept"])),
    ])
    with psycopg.connect(admin, autocommit=True) as refresh:
        rollups.refresh_pending(refresh)
    return ids


def test_delete_days_deletes_the_days_events_and_the_prefixes_rows_and_marks_the_days_to_recompute(empty, dw):
    admin = dw[0]
    ids = load_days(empty, admin)
    prefixes = raw.day_prefixes(date(2034, 6, 1), date(2034, 6, 2))
    assert prefixes == ["events/2034/06/01/", "events/2034/06/02/"]

    with psycopg.connect(admin) as conn:
        deleted = warehouse.delete_days(conn, date(2034, 6, 1), date(2034, 6, 2), prefixes)
    assert deleted == {"clickstream_events": 4, "clickstream_rejected": 1, "etl_load_log": 2}
    assert all_rows(admin, "SELECT event_id FROM clickstream_events") == [(ids["kept"],)]
    assert all_rows(admin, "SELECT key FROM etl_load_log") == [("events/2034/06/03/00/c.json",)]
    assert one(admin, "SELECT count(*) FROM clickstream_rejected") == (0,)
    assert all_rows(admin, "SELECT day, recompute FROM rollup_pending ORDER BY day") == [
        (date(2034, 5, 31), True), (date(2034, 6, 1), True), (date(2034, 6, 2), True)]
    assert one(admin, "SELECT count(*) FROM rollup_hourly_events WHERE hour < '2034-06-03'")[0] > 0  # until a refresh


def test_forget_days_empties_the_raw_zone_and_the_warehouse_of_the_days_and_refreshes_the_rollups(empty, dw,
                                                                                                  local_stack):
    admin = dw[0]
    s3, bucket = aws.client("s3", local_stack), stack.status(local_stack)["raw_bucket"]
    first_day = [f"events/2034/06/01/00/{n:04d}.json" for n in range(raw.DELETE_BATCH + 1)]  # two delete requests
    for key in [*first_day, "events/2034/06/02/10/b.json", "events/2034/06/03/00/c.json", "events/2034/06/04/x.json"]:
        s3.put_object(Bucket=bucket, Key=key, Body=b"{}")
    ids = load_days(empty, admin)
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            deleted = warehouse.forget_days(s3, bucket, conn, date(2034, 6, 1), date(2034, 6, 2))
        assert deleted == {"raw objects": len(first_day) + 1, "clickstream_events": 4, "clickstream_rejected": 1,
                           "etl_load_log": 2, "rollup days refreshed": 3}
        assert [obj["Key"] for obj in raw.list_objects(s3, bucket, "events/2034/")] == [
            "events/2034/06/03/00/c.json", "events/2034/06/04/x.json"]
        assert all_rows(admin, "SELECT event_id FROM clickstream_events") == [(ids["kept"],)]
        assert all_rows(admin, "SELECT hour, events FROM rollup_hourly_events") == [
            (datetime(2034, 6, 3, tzinfo=timezone.utc), 1)]
        assert one(admin, "SELECT count(*) FROM rollup_pending") == (0,)
    finally:
        raw.delete_prefix(s3, bucket, "events/2034/")
    assert list(raw.list_objects(s3, bucket, "events/2034/")) == []
    with pytest.raises(ValueError, match="empty the bucket"):
        raw.delete_prefix(s3, bucket, "")


def test_a_deadlock_in_the_fallback_insert_runs_the_chunk_again_and_loads_nothing_twice(empty, dw):
    """As above, then the chunk's fallback insert takes w (new, the smallest id) and waits on x; the other load
    inserts w: a second deadlock, now in the fallback. PostgreSQL aborts the chunk's transaction (it waited
    first); load_chunk runs it again, which waits on the other load and, once that commits, finds every id taken."""
    w, x, y = uuid.UUID(int=1), uuid.uuid4(), uuid.uuid4()
    admin, pid = dw[0], empty.info.backend_pid

    def wait_until_the_chunk_waits(statement: str) -> None:
        query = ("SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'"
                 " AND left(query, %s) = %s")
        for _ in range(200):
            if one(admin, query, (pid, len(statement), statement)) == (1,):
                return
            if loading.done():
                loading.result()  # raises what stopped the chunk
            time.sleep(0.05)
        raise AssertionError(f"the chunk's {statement} never waited")

    with psycopg.connect(admin) as other, ThreadPoolExecutor(1) as pool:
        other.execute(INSERT_ONE, (x,))
        loading = pool.submit(load_chunk, empty, [object_load("k/1", stored(w), stored(y), stored(x))])
        wait_until_the_chunk_waits("COPY")
        other.execute(INSERT_ONE, (y,))  # the first deadlock: the chunk goes to the fallback insert
        wait_until_the_chunk_waits("INSERT INTO clickstream_events")
        other.execute(INSERT_ONE, (w,))  # the second: returns once PostgreSQL aborted the chunk's transaction
        wait_until_the_chunk_waits("COPY")  # its second attempt, waiting on w
        other.commit()
        counts = loading.result(timeout=30)
    assert counts["k/1"] == warehouse.LoadCounts(rows_inserted=0, duplicates=3, rejected=0)
    assert sorted(all_rows(admin, "SELECT event_id, source_key FROM clickstream_events")) == sorted(
        [(w, "other-run"), (x, "other-run"), (y, "other-run")])
    assert one(admin, "SELECT rows_inserted, duplicates FROM etl_load_log WHERE key = 'k/1'") == (0, 3)
