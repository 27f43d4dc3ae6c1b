"""The PostgreSQL warehouse: versioned migrations and the exactly-once chunk load.

- `migrate(admin_dsn)` applies the `sql/migrations/NNNN_*.sql` files not applied yet, each in its own
  transaction with its row in `schema_migrations` (version, applied_at, checksum); an applied file that
  was edited afterwards is an error, not silently skipped.
- `load_chunk(conn, objects)` loads the rows of several raw objects in one transaction: the first row of
  each event id by binary COPY straight into the table (when some ids are there already, a staging table
  and `INSERT ... ON CONFLICT (event_id) DO NOTHING` instead), the rejects, one `etl_load_log` row per
  object, the UTC days of its rows in `rollup_pending` and what the rows it inserted add to the rollups
  (`clickstream.analytics.rollups.mark_load` and `add_rows`: deltas the next refresh folds in).
  A failure before the commit leaves nothing loaded and nothing marked loaded.
- `delete_days(conn, first, last, key_prefixes)` and `forget_days(s3, bucket, conn_or_dsn, first, last)`: for tests
  and notebooks that reuse their days, delete days of data (and their raw objects) and recompute their rollups.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb, JsonbBinaryDumper
from psycopg.types.numeric import DecimalBinaryDumper
from psycopg.types.uuid import UUIDBinaryDumper

from clickstream import contract
from clickstream.analytics import rollups
from clickstream.ingestion import raw
from clickstream.settings import project_root
from clickstream.analytics.transform import COLUMNS, Reject, Row, storable

logger = logging.getLogger(__name__)

MIGRATION_FILE_RE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
MIGRATION_LOCK_ID = 0x636C6963  # pg_advisory_lock key: one migrate at a time
STAGE_TABLE = "stage_clickstream_events"
CONNECT_TIMEOUT_S = 10


class WarehouseError(RuntimeError):
    """The warehouse cannot be reached or its schema is not what this code expects."""


class MigrationError(WarehouseError):
    """A migration file is missing, misnamed or was changed after it was applied."""


def migrations_dir() -> Path:
    return project_root() / "sql" / "migrations"


def migration_files(directory: Path | None = None) -> list[Path]:
    """The migration files in version order; any other `.sql` file there is an error."""
    directory = directory or migrations_dir()
    files = sorted(directory.glob("*.sql"))
    if not files:
        raise MigrationError(f"no migrations in {directory}")
    misnamed = [path.name for path in files if not MIGRATION_FILE_RE.match(path.name)]
    if misnamed:
        raise MigrationError(f"migration files must be named NNNN_snake_case.sql: {', '.join(misnamed)}")
    return files


def migrate(admin_dsn: str, directory: Path | None = None) -> list[str]:
    """Apply pending migrations as the superuser; returns the versions applied now (file stems)."""
    files = migration_files(directory)
    with connect(admin_dsn) as conn:
        conn.autocommit = True
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now(), checksum text NOT NULL)"
        )
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_ID,))
        try:
            applied = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
            done: list[str] = []
            for path in files:
                text = path.read_text(encoding="utf-8")
                checksum = hashlib.sha256(text.encode("utf-8")).hexdigest()
                version = path.stem
                if version in applied:
                    if applied[version] != checksum:
                        raise MigrationError(
                            f"{path.name} was changed after it was applied; add a new migration instead"
                        )
                    continue
                with conn.transaction():
                    conn.execute(text)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, checksum) VALUES (%s, %s)", (version, checksum)
                    )
                done.append(version)
            return done
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_ID,))


def connect(dsn: str) -> psycopg.Connection:
    """A connection, or a WarehouseError that names host and port (never the password)."""
    try:
        return psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.OperationalError as error:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
        where = f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"
        detail = " ".join(str(error).split()) or type(error).__name__
        raise WarehouseError(f"cannot connect to the warehouse at {where} as {info.get('user')}: {detail}") from None


@dataclass(frozen=True)
class ObjectLoad:
    """One raw object ready to load: its key and etag, the rows of its valid events and its rejects."""

    key: str
    etag: str
    rows: Sequence[Row]
    rejects: Sequence[Reject]


@dataclass(frozen=True)
class LoadCounts:
    """What loading one object did: rows inserted, valid events already present, events rejected."""

    rows_inserted: int
    duplicates: int
    rejected: int


def loaded_etags(conn: psycopg.Connection, keys: Sequence[str]) -> dict[str, str]:
    """{key: etag} of the given keys that are in the load log (one query for the whole listing)."""
    rows = conn.execute("SELECT key, etag FROM etl_load_log WHERE key = ANY(%s)", (list(keys),)).fetchall()
    conn.commit()
    return dict(rows)


_COLUMN_LIST = sql.SQL(", ").join(sql.Identifier(name) for name in COLUMNS)
_STAGE = sql.Identifier(STAGE_TABLE)
_CREATE_STAGE = sql.SQL(
    "CREATE TEMP TABLE {stage} ON COMMIT DROP AS SELECT {columns} FROM clickstream_events WITH NO DATA"
).format(stage=_STAGE, columns=_COLUMN_LIST)
_COPY_STAGE = sql.SQL("COPY {stage} ({columns}) FROM STDIN (FORMAT BINARY)").format(stage=_STAGE, columns=_COLUMN_LIST)
_COPY_EVENTS = sql.SQL("COPY clickstream_events ({columns}) FROM STDIN (FORMAT BINARY)").format(columns=_COLUMN_LIST)
# When some of the chunk's ids are in the table already: ON CONFLICT skips them and RETURNING tells which
# rows went in. In id order, so two such inserts take their ids' locks in the same order.
DEADLOCK_ATTEMPTS = 3
_INSERT_FROM_STAGE = sql.SQL(
    "INSERT INTO clickstream_events ({columns}) SELECT {columns} FROM {stage}"
    " ORDER BY event_id ON CONFLICT (event_id) DO NOTHING RETURNING event_id::text"
).format(stage=_STAGE, columns=_COLUMN_LIST)
EVENT_ID, RECEIVED_AT, SOURCE_KEY = (
    list(COLUMNS).index(name) for name in ("event_id", "received_at", "source_key")
)


def load_chunk(conn: psycopg.Connection, objects: Sequence[ObjectLoad]) -> dict[str, LoadCounts]:
    """Load `objects` in one transaction (rows, rejects, load log); returns the counts per key.

    Each event id is inserted once: within the chunk the earliest received row wins (then the smallest
    key), and ids already in the table are skipped. The rows go straight into clickstream_events by binary
    COPY, which fails on the first id already there (loaded by an earlier run, or by a concurrent load; or
    the two loads wait on each other's ids: a deadlock). Then the COPY is rolled back to a savepoint and the
    rows go through a staging table and INSERT ... ON CONFLICT DO NOTHING instead, in event id order. New events,
    the common case, cost one COPY and no lookup; a resend that crosses runs costs the staging pass. Should the
    transaction still deadlock with a concurrent load (whose COPY takes its ids in another order), all of it is
    rolled back and run again, up to DEADLOCK_ATTEMPTS times: nothing is loaded twice."""
    keys = [obj.key for obj in objects]
    repeated = [key for key, n in Counter(keys).items() if n > 1]
    if repeated:
        raise ValueError(f"a chunk lists the same object twice: {repeated[0]}")
    rows = _first_rows(objects)
    attempt = 1
    while True:
        try:
            return _load_rows(conn, objects, keys, rows)
        except psycopg.errors.DeadlockDetected:
            if attempt == DEADLOCK_ATTEMPTS:
                raise
            attempt += 1
            logger.warning("a chunk of %d objects deadlocked with a concurrent load; running it again (%d of %d)",
                           len(objects), attempt, DEADLOCK_ATTEMPTS)


def _load_rows(conn: psycopg.Connection, objects: Sequence[ObjectLoad], keys: list[str],
               rows: list[Row]) -> dict[str, LoadCounts]:
    """One attempt of `load_chunk`: its two transactions."""
    with conn.transaction():  # committed at once, so loads of the same new day do not wait on each other
        rollups.mark_load(conn, rows)
    with conn.transaction():
        with conn.cursor() as cur:
            rollups.mark_load(cur, rows)  # again, in case a refresh cleared them: no refresh until this commits
            try:
                with conn.transaction():
                    _copy(cur, _COPY_EVENTS, rows)
                new_rows = rows
            except (psycopg.errors.UniqueViolation, psycopg.errors.DeadlockDetected):
                cur.execute(_CREATE_STAGE)
                _copy(cur, _COPY_STAGE, rows)
                ids = {event_id for (event_id,) in cur.execute(_INSERT_FROM_STAGE)}
                new_rows = [row for row in rows if str(row[EVENT_ID]).lower() in ids]
            inserted = Counter(row[SOURCE_KEY] for row in new_rows)
            rollups.add_rows(cur, new_rows)
            cur.execute("DELETE FROM clickstream_rejected WHERE source_key = ANY(%s)", (keys,))
            cur.executemany(  # ON CONFLICT: a concurrent run may quarantine the same object
                "INSERT INTO clickstream_rejected (source_key, event_index, reason, payload) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT ON CONSTRAINT clickstream_rejected_key DO UPDATE SET reason = excluded.reason,"
                " payload = excluded.payload, rejected_at = now()",
                [
                    (reject.source_key, reject.event_index, reject.reason, _jsonb(reject.payload))
                    for obj in objects
                    for reject in obj.rejects
                ],
            )
            counts = {
                obj.key: LoadCounts(
                    rows_inserted=inserted[obj.key],
                    duplicates=len(obj.rows) - inserted[obj.key],
                    rejected=len(obj.rejects),
                )
                for obj in objects
            }
            cur.executemany(
                "INSERT INTO etl_load_log AS log (key, etag, rows_inserted, duplicates, rejected)"
                " VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (key) DO UPDATE SET etag = excluded.etag, rows_inserted = excluded.rows_inserted,"
                " duplicates = excluded.duplicates, rejected = excluded.rejected, loaded_at = now()",
                [(obj.key, obj.etag, *_as_tuple(counts[obj.key])) for obj in objects],
            )
    return counts


# What the database (or psycopg, encoding a value) raises for data it cannot store: a value out of range or not
# text (class 22), a constraint (class 23; the event ids load_chunk handles itself), a size limit. Anything else,
# such as a lost connection, is an infrastructure fault.
DATA_ERRORS = (psycopg.errors.DataError, psycopg.errors.IntegrityError, psycopg.errors.ProgramLimitExceeded,
               ValueError, TypeError, OverflowError)
_PROBE = sql.Identifier("probe_clickstream_events")
_CREATE_PROBE = sql.SQL(
    "CREATE TEMP TABLE {probe} (LIKE clickstream_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS) ON COMMIT DROP"
).format(probe=_PROBE)
_COPY_PROBE = sql.SQL("COPY {probe} ({columns}) FROM STDIN (FORMAT BINARY)").format(probe=_PROBE, columns=_COLUMN_LIST)


def load_chunk_isolating(conn: psycopg.Connection, objects: Sequence[ObjectLoad]) -> dict[str, LoadCounts]:
    """`load_chunk`, except that data the database refuses never stops the load: the chunk is then loaded object
    by object, and an object that fails alone is loaded with its refused events quarantined (the database's
    message is the reason), or quarantined whole when no single event is to blame. Other errors propagate."""
    try:
        return load_chunk(conn, objects)
    except psycopg.errors.UniqueViolation:
        raise  # not data: load_chunk handles the event ids, and every other key is upserted
    except DATA_ERRORS as error:
        logger.warning("the warehouse refused data of a chunk of %d objects (%s); loading them one by one",
                       len(objects), _database_message(error))
    counts: dict[str, LoadCounts] = {}
    for obj in objects:
        try:
            counts.update(load_chunk(conn, [obj]))
        except psycopg.errors.UniqueViolation:
            raise
        except DATA_ERRORS as error:
            counts.update(load_chunk(conn, [_without_refused_rows(conn, obj, error)]))
    return counts


def _without_refused_rows(conn: psycopg.Connection, obj: ObjectLoad, error: Exception) -> ObjectLoad:
    """`obj` with the rows the database refuses, alone, moved to its rejects; with no row to blame, all of it."""
    refused = _refused_rows(conn, obj.rows)
    if not refused:
        reason = f"the warehouse refused the object: {_database_message(error)}"
        return ObjectLoad(obj.key, obj.etag, [], [Reject(obj.key, None, reason, None)])
    rejected_indexes = {reject.event_index for reject in obj.rejects}
    row_indexes = [index for index in range(len(obj.rows) + len(obj.rejects)) if index not in rejected_indexes]
    rejects = [*obj.rejects, *(
        Reject(obj.key, row_indexes[position], f"the warehouse refused it: {message}", _row_payload(obj.rows[position]))
        for position, message in refused.items())]
    rows = [row for position, row in enumerate(obj.rows) if position not in refused]
    return ObjectLoad(obj.key, obj.etag, rows, sorted(rejects, key=lambda reject: reject.event_index))


def _refused_rows(conn: psycopg.Connection, rows: Sequence[Row]) -> dict[int, str]:
    """{position: the database's message} of the rows it refuses one by one, in a table like clickstream_events
    without its primary key (nothing is kept)."""
    refused: dict[int, str] = {}
    with conn.transaction(force_rollback=True), conn.cursor() as cur:
        cur.execute(_CREATE_PROBE)
        for position, row in enumerate(rows):
            try:
                with conn.transaction():
                    _copy(cur, _COPY_PROBE, [row])
            except DATA_ERRORS as error:
                refused[position] = _database_message(error)
    return refused


def _database_message(error: Exception) -> str:
    diag = getattr(error, "diag", None)
    message = (diag.message_primary if diag else None) or str(error) or type(error).__name__
    return " ".join(message.split())[:500]


def _row_payload(row: Row) -> str:
    """A refused row as JSON text (a jsonb string: the value the database refused may not fit a jsonb number)."""
    values = {name: value if value is None or isinstance(value, (str, bool, int, dict, list)) else str(value)
              for name, value in zip(COLUMNS, row)}
    return storable(contract.dumps(values))


def _first_rows(objects: Sequence[ObjectLoad]) -> list[Row]:
    """One row per event id of the chunk: the earliest received (then smallest key)."""
    first: dict[Any, Row] = {}
    for obj in objects:
        for row in obj.rows:
            kept = first.get(row[EVENT_ID])
            if kept is None or (row[RECEIVED_AT], row[SOURCE_KEY]) < (kept[RECEIVED_AT], kept[SOURCE_KEY]):
                first[row[EVENT_ID]] = row
    return list(first.values())


class _LoadedJsonbDumper(JsonbBinaryDumper):
    """jsonb in a binary COPY of rows: their jsonb values are what `contract.loads` parsed (numbers as Decimal)."""

    def dump(self, obj: Any) -> bytes:
        return b"\x01" + contract.dumps_loaded(obj)


class _UuidTextDumper(UUIDBinaryDumper):
    """uuid in a binary COPY of rows: their ids are UUID text (the contract's pattern: 32 hex digits, 4 dashes)."""

    def dump(self, obj: str) -> bytes:
        return bytes.fromhex(obj.replace("-", ""))


class _AmountDumper(DecimalBinaryDumper):
    """numeric in a binary COPY of rows: their amounts repeat (prices), so each is encoded once per COPY. Equal
    amounts may differ in trailing zeros (1.5, 1.50): the money columns store both as 1.50."""

    def __init__(self, cls: type, context: Any = None):
        super().__init__(cls, context)
        self._encode = psycopg.adapters.get_dumper_by_oid(self.oid, self.format)(cls, context).dump
        self._encoded: dict[Decimal, Any] = {}

    def dump(self, obj: Decimal) -> Any:
        encoded = self._encoded.get(obj)
        if encoded is None:
            encoded = self._encoded[obj] = self._encode(obj)
        return encoded


def _copy(cur: psycopg.Cursor, statement: sql.Composed, rows: Sequence[Row]) -> None:
    for dumper in (_LoadedJsonbDumper, _UuidTextDumper, _AmountDumper):
        cur.adapters.register_dumper(None, dumper)  # found by oid: set_types names the columns' types
    with cur.copy(statement) as copy:
        copy.set_types(list(COLUMNS.values()))
        for row in rows:
            copy.write_row(row)


def _jsonb(value: object) -> Jsonb | None:
    return None if value is None else Jsonb(value, dumps=contract.dumps)


def _as_tuple(counts: LoadCounts) -> tuple[int, int, int]:
    return counts.rows_inserted, counts.duplicates, counts.rejected


_DELETE_EVENTS = (
    "WITH gone AS (DELETE FROM clickstream_events WHERE (event_timestamp >= %s AND event_timestamp < %s)"
    " OR source_key ^@ ANY(%s::text[]) RETURNING event_timestamp)"
    " SELECT (event_timestamp AT TIME ZONE 'UTC')::date, count(*) FROM gone GROUP BY 1"
)


def delete_days(conn: psycopg.Connection, first: date, last: date, key_prefixes: Sequence[str] = ()) -> dict[str, int]:
    """Delete the events that happened on the UTC days `first` to `last`, and the events, rejects and load-log rows
    of the raw objects under `key_prefixes`, in one transaction that marks the days of every deleted event (and
    `first` to `last`) for the rollups to recompute (`rollups.mark_pending`). Returns the rows deleted per table.

    Needs a role that may delete: the superuser locally, or etl_writer (on AWS no superuser is reachable); the
    rollups change at the next refresh."""
    lo = datetime.combine(first, time.min, timezone.utc)
    hi = datetime.combine(last, time.min, timezone.utc) + timedelta(days=1)
    prefixes = list(key_prefixes)
    with conn.transaction(), conn.cursor() as cur:
        days = dict(cur.execute(_DELETE_EVENTS, (lo, hi, prefixes)).fetchall())
        deleted = {"clickstream_events": sum(days.values())}
        for table, column in (("clickstream_rejected", "source_key"), ("etl_load_log", "key")):
            cur.execute(f"DELETE FROM {table} WHERE {column} ^@ ANY(%s::text[])", (prefixes,))
            deleted[table] = cur.rowcount
        rollups.mark_pending(cur, [*days, *(first + timedelta(days=n) for n in range((last - first).days + 1))])
    return deleted


def forget_days(s3: Any, bucket: str, conn: psycopg.Connection | str, first: date, last: date | None = None,
                raw_prefix: str = raw.RAW_PREFIX) -> dict[str, int]:
    """Delete the UTC days `first` to `last` (default: `first` alone) everywhere: their raw objects
    (`raw.delete_prefix` of each day prefix), then their warehouse rows (`delete_days`), then refresh the rollups.
    For tests and notebooks that reuse days; the platform itself never deletes data. `conn` is a connection
    outside a transaction or a DSN of a role that may delete (`dw_admin_dsn` locally, etl_writer's on AWS,
    `Workshop.dw_dsn`). Returns what was deleted: raw objects, rows per table, and the rollup days refreshed."""
    if isinstance(conn, str):
        with psycopg.connect(conn, autocommit=True) as own:
            return forget_days(s3, bucket, own, first, last, raw_prefix)
    last = first if last is None else last
    prefixes = raw.day_prefixes(first, last, raw_prefix)
    objects = sum(raw.delete_prefix(s3, bucket, prefix) for prefix in prefixes)
    deleted = delete_days(conn, first, last, prefixes)
    return {"raw objects": objects, **deleted, "rollup days refreshed": len(rollups.refresh_pending(conn))}
