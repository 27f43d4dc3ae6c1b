"""ETL load speed: the project's ETL against psql's \\copy (the ceiling) and a naive workshop-style loader.

Starts a private local stack on free ports (never your own) and, in one run against the same DW and the
same events, measures:
  (a) ceiling: `psql -c "\\copy bench_copy FROM 'file' WITH (FORMAT csv)"` into an empty copy of
      clickstream_events (LIKE ... INCLUDING ALL: same PK and indexes), as the superuser over the unix
      socket. The CSV holds the rows the project's own transform makes of the same raw objects; writing
      it is not timed, only the psql command is.
  (b) this ETL end to end: `etl.run_etl` over the prefix holding the N events in raw objects of 500
      (listing, GET, validate + transform, binary COPY, load log), into an empty clickstream_events, as
      etl_writer over TCP, with `--workers` processes (default: this machine's cores, as `clickstream etl`
      runs locally), and the rollup refresh the run ends with (issue 11: the deltas of the new rows folded
      in, the sessions of their visitors computed): work the ceiling does not do. Writing the objects to
      moto is not timed.
  (b1) the same with workers=1: one process, as the Lambda runs it (the template's ETL_WORKERS default).
  (c) naive, in the style of the original workshop: one S3 object per event, list the prefix, GET each
      object in turn, transform it (the project's transform, so the rows are the same), and INSERT with
      psycopg2 `executemany` in batches of 200 rows (one commit per batch; no COPY), into an empty copy of
      clickstream_events, as etl_writer. Writing one object per event to moto runs at a few hundred PUTs
      per second (1M would take about an hour before anything is measured), so (c) runs on a subset: the
      first `--naive-events` of the same events. Its events/s is a rate and the ratio b/c is a ratio of
      rates; the naive loader's cost is per object and per row, so its rate does not depend on N.

(a) and (b) run `--repeat` times in turn (a, b, a, b, ...; default 3) and the tables give each one's median run:
the speed of a shared machine drifts between runs, and (a) and (b) should meet the same drift. Every run's
seconds and the ratio b/a pair by pair are printed too.

Events: one UTC day of the simulated shop (`clickstream.shop.simulate`, seed 42: visitors with several sessions,
signed-in users, 2% bots, late events; resent requests left out), each request stored by the ingest's own
`ingest_batch` (not sent through HTTP), packed into objects of 500 (see `simulated_objects`). Checks in the
run: (a) and (b) hold N rows each and the same rows (EXCEPT both ways, loaded_at aside); (b) reports exactly
N inserted, 0 duplicates, 0 rejected; the rollups after (b) equal a full rebuild (`rollups.rebuild`); (c)
holds `--naive-events` rows.

    .venv/bin/python benchmarks/etl_load.py [--events 1000000] [--naive-events 20000] [--workers CORES]
                                            [--repeat 3] [--json out.json]

Targets: b >= 0.4 x a with the rollups in (b) (issue 11; 0.5 without them, issue 3) and b >= 10 x c.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import os
import platform
import random
import subprocess
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timezone
from pathlib import Path

import psutil
import psycopg
import psycopg2
import psycopg2.extras
from tqdm import tqdm

from clickstream import aws, contract
from clickstream.analytics import etl, rollups
from clickstream.ingestion import ingest, raw
from clickstream.shop import simulate
from clickstream.local.stack import clusters, private_stack, read_state, status, warehouse_dsn
from clickstream.analytics.transform import COLUMNS, transform_body

PSQL = "/usr/bin/psql"
OBJECT_EVENTS = 500
NAIVE_BATCH = 200
DAY = datetime(2026, 11, 24, tzinfo=timezone.utc)
ETL_PREFIX = f"{raw.RAW_PREFIX}{DAY:%Y/%m/%d}/"
NAIVE_RAW_PREFIX = "bench-naive/"
NAIVE_PREFIX = f"{NAIVE_RAW_PREFIX}{DAY:%Y/%m/%d}/"
PUT_THREADS = 8
COLUMN_NAMES = list(COLUMNS)
SEED = 42
CALIBRATION_VISITORS = 300
TARGET_B_OVER_A = 0.4
TARGET_B_OVER_C = 10.0


# --- machine ---------------------------------------------------------------------------------
def machine(admin_dsn: str) -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    with psycopg.connect(admin_dsn) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]
    return {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "postgresql": pg}


# --- data ------------------------------------------------------------------------------------
class _Captured:
    """An S3 client that keeps the last body put (ingest_batch's output) instead of storing it."""

    body: bytes = b""

    def put_object(self, Body: bytes, **_: object) -> None:
        self.body = Body


def simulated_config(events: int, day: date, seed: int) -> simulate.SimulationConfig:
    """One UTC day of the simulated shop with about 10% more stored events than `events` (from a dry run)."""
    sample = simulate.SimulationConfig(start=day, days=1, visitors=CALIBRATION_VISITORS, seed=seed)
    sent = sum(len(r.events) for requests in simulate.generate(sample) for r in requests if r.retry_of is None)
    per_visitor = sent / (sample.visitors + sample.bots)
    return simulate.SimulationConfig(start=day, days=1, visitors=math.ceil(1.1 * events / per_visitor), seed=seed)


def visitor_order(config: simulate.SimulationConfig) -> list[int]:
    """Humans with a bot after every 1 / BOT_SHARE of them, so any first part of the traffic has its bots."""
    bots = iter(range(config.visitors, config.visitors + config.bots))
    order = []
    for index in range(config.visitors):
        order.append(index)
        if (index + 1) % round(1 / simulate.BOT_SHARE) == 0:
            order.extend(itertools.islice(bots, 1))
    return order + list(bots)


def simulated_objects(events: int, day: date, seed: int, raw_prefix: str) -> Iterator[tuple[str, bytes]]:
    """(key, body) of raw objects holding exactly `events` stored events of the simulated shop's traffic on UTC
    `day` (`clickstream.shop.simulate`: visitors with several sessions, signed-in users, bots, late and malformed
    events; resent requests left out, so each event id is stored once).

    Each request goes through the ingest's own `ingest_batch` (malformed events are refused there, as on the
    API); the stored events of consecutive requests, visitor after visitor, are packed into objects of
    OBJECT_EVENTS (each stored event keeps its request's server block, user agent included)."""
    config = simulated_config(events, day, seed)
    captured, ingest_settings = _Captured(), ingest.IngestSettings(raw_bucket="bench", prefix=raw_prefix)
    packed: list = []
    envelope: dict = {}
    made = index = 0
    for requests in simulate.generate(config, visitor_order(config)):
        for request in requests:
            if request.retry_of is not None:
                continue
            context = ingest.ServerContext(request_id=request.request_id, user_agent=request.user_agent,
                                           source_ip_prefix=request.source_ip)
            result = ingest.ingest_batch(list(request.events), context, captured, ingest_settings,
                                         request.received_at, request.object_id)
            if not result.accepted:
                continue
            stored = contract.loads(captured.body)
            envelope = envelope or stored
            packed.extend(stored["events"][: events - made])
            made = min(events, made + result.accepted)
            if len(packed) >= OBJECT_EVENTS or made == events:
                yield _packed_object(envelope, packed, index, raw_prefix)
                packed, envelope, index = [], {}, index + 1
            if made == events:
                return
    raise RuntimeError(f"the simulation stored {made} events, fewer than {events}")


def _packed_object(envelope: dict, stored_events: list, index: int, raw_prefix: str) -> tuple[str, bytes]:
    object_id = uuid.UUID(int=random.Random(f"{raw_prefix}{index}").getrandbits(128), version=4)
    received_at = datetime.fromisoformat(envelope["received_at"].replace("Z", "+00:00"))
    body = {**envelope, "object_id": str(object_id), "event_count": len(stored_events), "events": stored_events}
    return ingest.object_key(received_at, object_id, raw_prefix), contract.dumps(body).encode("utf-8")


def csv_value(value: object) -> str:
    """One field for PostgreSQL CSV: NULL unquoted and empty, every other value quoted (so '' stays '')."""
    if value is None:
        return ""
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, str):
        return '"' + value.replace('"', '""') + '"'
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return '"' + contract.dumps(value).replace('"', '""') + '"'
    return str(value)  # uuid, Decimal, int


class Putter:
    """PUTs objects to moto from a few threads, at most `depth` bodies in flight (keeps memory flat)."""

    def __init__(self, s3, bucket: str, depth: int = 64):
        self.s3, self.bucket = s3, bucket
        self.pool = ThreadPoolExecutor(PUT_THREADS)
        self.pending: deque = deque()
        self.depth = depth

    def put(self, key: str, body: bytes) -> None:
        while len(self.pending) >= self.depth:
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(
            self.s3.put_object, Bucket=self.bucket, Key=key, Body=body, ContentType="application/json",
            ServerSideEncryption="AES256"))

    def close(self) -> None:
        while self.pending:
            self.pending.popleft().result()
        self.pool.shutdown()


def write_objects(s3, bucket: str, objects: Iterable[tuple[str, bytes]], csv_path: Path | None = None,
                  desc: str = "setup: objects", keep: int = 0) -> list[dict]:
    """PUT the objects; with `csv_path`, also write the CSV of their rows (the project's transform of the same
    bodies) for psql's \\copy. Returns the first `keep` stored events."""
    putter = Putter(s3, bucket)
    stored: list[dict] = []
    with open(csv_path or os.devnull, "w", encoding="utf-8", newline="") as out, \
            tqdm(desc=desc, unit="obj", leave=False) as bar:
        for key, body in objects:
            putter.put(key, body)
            if csv_path:
                transformed = transform_body(body, key)
                assert not transformed.rejects, transformed.rejects[:1]
                out.write("".join(",".join(map(csv_value, row)) + "\n" for row in transformed.rows))
            if len(stored) < keep:
                stored.extend(contract.loads(body)["events"][: keep - len(stored)])
            bar.update()
    putter.close()
    return stored


def prepare(s3, bucket: str, events: int, naive_events: int, csv_path: Path) -> None:
    """Write the N simulated events as objects of 500 under ETL_PREFIX and the CSV of their rows; then the
    first `naive_events` again, one object each, under NAIVE_PREFIX."""
    stored = write_objects(s3, bucket, simulated_objects(events, DAY.date(), SEED, raw.RAW_PREFIX), csv_path,
                           "setup: objects of 500 + CSV", keep=naive_events)
    naive = (_packed_object({"schema_version": contract.SCHEMA_VERSION, **{k: event["server"][k] for k in (
        "received_at", "request_id")}}, [event], index, NAIVE_RAW_PREFIX) for index, event in enumerate(stored))
    write_objects(s3, bucket, naive, desc="setup: naive, 1 object/event")


# --- DW --------------------------------------------------------------------------------------
def admin(admin_dsn: str, *statements: str) -> list:
    """Run statements as the superuser (autocommit); the rows of each SELECT, None for the others."""
    results = []
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        for statement in statements:
            cursor = conn.execute(statement)
            results.append(cursor.fetchall() if statement.lstrip().upper().startswith("SELECT") else None)
    return results


def count(admin_dsn: str, table: str) -> int:
    return admin(admin_dsn, f"SELECT count(*) FROM {table}")[0][0][0]


def rows_differ(admin_dsn: str, left: str, right: str) -> int:
    columns = ", ".join(COLUMN_NAMES)
    return admin(admin_dsn, f"SELECT count(*) FROM (SELECT {columns} FROM {left} EXCEPT SELECT {columns} FROM {right}) d")[0][0][0]


# --- (a) ceiling -----------------------------------------------------------------------------
def run_copy(admin_dsn: str, csv_path: Path) -> float:
    admin(admin_dsn, "DROP TABLE IF EXISTS bench_copy",
          "CREATE TABLE bench_copy (LIKE clickstream_events INCLUDING ALL)", "CHECKPOINT")
    command = [PSQL, admin_dsn, "-v", "ON_ERROR_STOP=1", "-q", "-c",
               f"\\copy bench_copy ({', '.join(COLUMN_NAMES)}) FROM '{csv_path}' WITH (FORMAT csv)"]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started


# --- CPU accounting ----------------------------------------------------------------------------
class CpuMeter:
    """CPU seconds (user + system) that each process group spends between `start()` and `stop()`.

    Groups: this Python process (all its threads), the moto server, the DW's PostgreSQL (postmaster, its
    live backends, and the backends that exited meanwhile, through the postmaster's children times), and
    the processes under this one (psql; the ETL's fork server and worker processes). Their sum over the cores bounds the wall time from below."""

    def __init__(self, settings):
        self.settings = settings
        self.groups = {
            "python (this process)": lambda: _own_cpu(psutil.Process()),
            "moto server": lambda: _own_cpu(psutil.Process(read_state(settings)["services"]["aws"]["pid"])),
            "postgresql (DW)": lambda: _tree_cpu(psutil.Process(clusters(settings)["dw"].pid)),
            "child processes (a: psql, b: ETL workers)": lambda: _descendants_cpu(psutil.Process(), services(settings)),
        }

    def _sample(self) -> dict[str, float]:
        return {name: sample() for name, sample in self.groups.items()}

    def settle(self, timeout: float = 5.0) -> None:
        """Wait until the PostgreSQL backends started since `start()` are gone and reaped: until then the CPU
        of one that is exiting is neither a live backend's nor in the postmaster's children times."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and set(self._backends()) - self.backends_at_start:
            time.sleep(0.05)

    def _backends(self) -> list[int]:
        return [child.pid for child in psutil.Process(clusters(self.settings)["dw"].pid).children()]

    def start(self) -> None:
        self.backends_at_start = set(self._backends())
        self.started = self._sample()

    def stop(self) -> dict[str, float]:
        ended = self._sample()
        return {name: round(ended[name] - self.started[name], 2) for name in ended}


def _own_cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _children_cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.children_user + times.children_system


def services(settings) -> set[int]:
    """The pids of the stack's own processes (moto, the API server, PostgreSQL), counted in their groups."""
    return {service["pid"] for service in read_state(settings)["services"].values() if service.get("pid")}


def _descendants_cpu(process: psutil.Process, exclude: set[int]) -> float:
    """The processes under `process` but outside the stack's services, live or exited (psql; the ETL's
    fork server and its workers)."""
    total = _children_cpu(process)
    for child in process.children():
        if child.pid in exclude:
            continue
        try:
            total += _own_cpu(child) + _children_cpu(child)
            total += sum(_own_cpu(grandchild) for grandchild in child.children(recursive=True))
        except psutil.NoSuchProcess:
            pass
    return total


def _tree_cpu(process: psutil.Process) -> float:
    total = _own_cpu(process) + _children_cpu(process)
    for child in process.children():
        try:
            total += _own_cpu(child)
        except psutil.NoSuchProcess:
            pass
    return total


# --- (b) the ETL -----------------------------------------------------------------------------
def run_etl(s3, s3_factory, bucket: str, etl_dsn: str, admin_dsn: str, events: int, workers: int, meter: "CpuMeter"):
    """(b): run_etl over the N events into an empty warehouse, rollups included; returns (seconds, summary,
    CPU seconds). The summary gets `refresh_seconds`: from the last chunk's progress to the end (the refresh)."""
    admin(admin_dsn, "TRUNCATE clickstream_events, clickstream_rejected, etl_load_log, rollup_pending, "
          + ", ".join(rollups.ROLLUP_TABLES), "CHECKPOINT")
    bar = tqdm(total=events, desc=f"(b) run_etl, workers={workers}", unit="ev", leave=False)

    last_chunk = [0.0]

    def progress(p: etl.ChunkProgress) -> None:
        last_chunk[0] = time.perf_counter()
        bar.n = p.rows_inserted + p.duplicates + p.rejected
        bar.refresh()

    meter.start()
    started = time.perf_counter()
    summary = etl.run_etl(s3, bucket, etl_dsn, etl.EtlRequest(prefix=ETL_PREFIX),
                          etl.EtlOptions(progress=progress, workers=workers, s3_factory=s3_factory))
    seconds = time.perf_counter() - started
    summary["refresh_seconds"] = round(started + seconds - last_chunk[0], 2)
    meter.settle()  # the workers' connections closed as they exited
    cpu = meter.stop()
    bar.close()
    return seconds, summary, cpu


def rollups_differ(admin_dsn: str) -> int:
    """Rows that differ (both ways) between the rollups as the ETL left them and a full rebuild."""
    admin(admin_dsn, *(f"DROP TABLE IF EXISTS snap_{t}; CREATE TABLE snap_{t} AS TABLE {t}" for t in rollups.ROLLUP_TABLES))
    with psycopg.connect(admin_dsn) as conn:
        rollups.rebuild(conn)
    return sum(admin(admin_dsn, f"SELECT count(*) FROM ((TABLE {t} EXCEPT ALL TABLE snap_{t}) UNION ALL "
                                f"(TABLE snap_{t} EXCEPT ALL TABLE {t})) d")[0][0][0] for t in rollups.ROLLUP_TABLES)


# --- (c) naive -------------------------------------------------------------------------------
NAIVE_INSERT = (f"INSERT INTO bench_naive ({', '.join(COLUMN_NAMES)}) "
                f"VALUES ({', '.join(['%s'] * len(COLUMN_NAMES))})")
JSONB_INDEXES = [i for i, t in enumerate(COLUMNS.values()) if t == "jsonb"]


def run_naive(s3, bucket: str, etl_dsn: str, admin_dsn: str, naive_events: int) -> float:
    admin(admin_dsn, "DROP TABLE IF EXISTS bench_naive",
          "CREATE TABLE bench_naive (LIKE clickstream_events INCLUDING ALL)", "CHECKPOINT")
    psycopg2.extras.register_uuid()
    bar = tqdm(total=naive_events, desc="(c) naive", unit="ev", leave=False)
    started = time.perf_counter()
    conn = psycopg2.connect(etl_dsn)
    try:
        cur = conn.cursor()
        batch: list[tuple] = []

        def flush() -> None:
            cur.executemany(NAIVE_INSERT, batch)
            conn.commit()
            bar.update(len(batch))
            batch.clear()

        for obj in raw.list_objects(s3, bucket, NAIVE_PREFIX):
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            for row in transform_body(body, obj["Key"]).rows:
                row = list(row)
                for i in JSONB_INDEXES:
                    row[i] = psycopg2.extras.Json(row[i], dumps=contract.dumps)
                batch.append(tuple(row))
                if len(batch) >= NAIVE_BATCH:
                    flush()
        if batch:
            flush()
    finally:
        conn.close()
    seconds = time.perf_counter() - started
    bar.close()
    return seconds


# --- report ----------------------------------------------------------------------------------
def median_run(runs: list[tuple]) -> tuple:
    """The run (seconds first) with the median seconds; of an even number, the faster of the middle two."""
    return sorted(runs, key=lambda run: run[0])[(len(runs) - 1) // 2]


def cpu_table(runs: dict[str, tuple[float, dict]], cores: int) -> str:
    """Where the CPU went in each run; the total over the cores is a lower bound of the wall time."""
    names = list(runs)
    lines = ["| CPU seconds | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    groups = list(next(iter(runs.values()))[1])
    lines += [f"| {group} | " + " | ".join(f"{runs[name][1][group]:.1f}" for name in names) + " |" for group in groups]
    totals = {name: sum(cpu.values()) for name, (_, cpu) in runs.items()}
    lines.append("| total | " + " | ".join(f"{totals[name]:.1f}" for name in names) + " |")
    lines.append(f"| total / {cores} cores (lower bound of wall) | "
                 + " | ".join(f"{totals[name] / cores:.1f}" for name in names) + " |")
    lines.append("| wall | " + " | ".join(f"{runs[name][0]:.1f}" for name in names) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="events for (a) and (b) (default 1,000,000)")
    parser.add_argument("--naive-events", type=int, default=20_000,
                        help="events for (c), one S3 object each: a subset of the same events (default 20,000)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(),
                        help="ETL worker processes for (b) (default: this machine's cores); (b1) always runs 1")
    parser.add_argument("--repeat", type=int, default=3,
                        help="run (a) and (b) this many times in turn and report each one's median run (default 3): "
                             "a shared machine's speed drifts between runs")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if args.events < 1 or not 1 <= args.naive_events <= args.events or args.workers < 1 or args.repeat < 1:
        parser.error("need --events >= 1, 1 <= --naive-events <= --events, --workers >= 1 and --repeat >= 1")

    with private_stack() as settings:
        info = status(settings)
        bucket, admin_dsn = info["raw_bucket"], info["dw_admin_dsn"]
        etl_dsn = warehouse_dsn(settings, "etl_writer")
        s3 = aws.client("s3", settings)
        s3_factory = functools.partial(aws.client, "s3", settings)  # the worker processes' S3 clients
        host = machine(admin_dsn)
        csv_path = settings.home / "bench_rows.csv"

        setup_started = time.perf_counter()
        prepare(s3, bucket, args.events, args.naive_events, csv_path)
        setup_seconds = time.perf_counter() - setup_started

        meter = CpuMeter(settings)
        runs_a, runs_b = [], []
        for _ in tqdm(range(args.repeat), desc="(a) and (b) in turn", unit="pair", leave=False):
            meter.start()
            seconds = run_copy(admin_dsn, csv_path)
            meter.settle()
            runs_a.append((seconds, meter.stop(), count(admin_dsn, "bench_copy")))
            seconds, summary, cpu = run_etl(s3, s3_factory, bucket, etl_dsn, admin_dsn, args.events, args.workers,
                                            meter)
            runs_b.append((seconds, cpu, count(admin_dsn, "clickstream_events"), summary))
        seconds_a, cpu_a, _ = median_run(runs_a)
        seconds_b, cpu_b, _, summary = median_run(runs_b)
        rollups_wrong = rollups_differ(admin_dsn)
        differ = rows_differ(admin_dsn, "bench_copy", "clickstream_events") + \
            rows_differ(admin_dsn, "clickstream_events", "bench_copy")
        seconds_b1, summary_b1, cpu_b1 = run_etl(s3, s3_factory, bucket, etl_dsn, admin_dsn, args.events, 1, meter)
        rows_b1 = count(admin_dsn, "clickstream_events")
        seconds_c = run_naive(s3, bucket, etl_dsn, admin_dsn, args.naive_events)
        rows_c = count(admin_dsn, "bench_naive")

    def inserted_exactly_n(run_summary: dict) -> bool:
        return (run_summary["rows_inserted"] == args.events and run_summary["duplicates"] == 0
                and run_summary["rejected"] == 0 and run_summary["remaining"] == 0)

    checks = {
        "a_rows_equal_n": all(rows == args.events for _, _, rows in runs_a),
        "b_rows_equal_n": all(rows == args.events for _, _, rows, _ in runs_b),
        "b_inserted_exactly_n": all(inserted_exactly_n(run[3]) for run in runs_b),
        "a_and_b_same_rows": differ == 0,
        "b1_rows_equal_n": rows_b1 == args.events and inserted_exactly_n(summary_b1),
        "c_rows_equal_subset": rows_c == args.naive_events,
        "b_rollups_equal_a_rebuild": rollups_wrong == 0,
    }
    rate_a, rate_b, rate_c = args.events / seconds_a, args.events / seconds_b, args.naive_events / seconds_c
    pair_ratios = [a[0] / b[0] for a, b in zip(runs_a, runs_b)]  # b/a of rates, pair by pair
    rate_b1 = args.events / seconds_b1
    b_over_a, b_over_c = rate_b / rate_a, rate_b / rate_c
    figures = {
        "machine": host,
        "events": args.events,
        "naive_events": args.naive_events,
        "object_events": OBJECT_EVENTS,
        "objects_b": summary["objects_listed"],
        "workers_b": args.workers,
        "setup_seconds_untimed": round(setup_seconds, 1),
        "repeat": args.repeat,
        "a_seconds": round(seconds_a, 3), "a_events_per_s": round(rate_a),
        "b_seconds": round(seconds_b, 3), "b_events_per_s": round(rate_b),
        "a_seconds_each": [round(run[0], 3) for run in runs_a], "b_seconds_each": [round(run[0], 3) for run in runs_b],
        "b_over_a_each_pair": [round(ratio, 3) for ratio in pair_ratios],
        "b1_seconds": round(seconds_b1, 3), "b1_events_per_s": round(rate_b1),
        "c_seconds": round(seconds_c, 3), "c_events_per_s": round(rate_c),
        "b_over_a": round(b_over_a, 3), "b_over_c": round(b_over_c, 1), "b1_over_a": round(rate_b1 / rate_a, 3),
        "target_b_over_a": TARGET_B_OVER_A, "target_b_over_c": TARGET_B_OVER_C,
        "pass_b_over_a": b_over_a >= TARGET_B_OVER_A, "pass_b_over_c": b_over_c >= TARGET_B_OVER_C,
        "b_summary": summary,
        "cpu_seconds": {"a": cpu_a, "b": cpu_b, "b1": cpu_b1},
        "checks": checks,
    }
    m = host
    print(f"machine: {m['cores']} cores, {m['cpu']}, Python {m['python']}, PostgreSQL {m['postgresql']}")
    print(f"command: .venv/bin/python benchmarks/etl_load.py --events {args.events} --naive-events {args.naive_events}"
          f" --workers {args.workers} --repeat {args.repeat}")
    print()
    print("| loader | events | seconds | events/s |")
    print("|---|---:|---:|---:|")
    print(f"| (a) ceiling: psql \\copy CSV into an empty copy of the table | {args.events:,} | {seconds_a:.1f} "
          f"| {rate_a:,.0f} |")
    print(f"| (b) this ETL, run_etl from local S3, objects of {OBJECT_EVENTS}, {args.workers} worker processes "
          f"| {args.events:,} | {seconds_b:.1f} | {rate_b:,.0f} |")
    print(f"| (b1) the same with workers=1 (one process, as on Lambda) | {args.events:,} | {seconds_b1:.1f} "
          f"| {rate_b1:,.0f} |")
    print(f"| (c) naive: 1 S3 object per event, INSERT batches of {NAIVE_BATCH} (subset\\*) | {args.naive_events:,} "
          f"| {seconds_c:.1f} | {rate_c:,.0f} |")
    print()
    print("| ratio (of rates) | value | target | result |")
    print("|---|---:|---:|---|")
    print(f"| b / a | {b_over_a:.2f} | ≥ {TARGET_B_OVER_A} | {'PASS' if figures['pass_b_over_a'] else 'MISS'} |")
    print(f"| b / c | {b_over_c:.1f} | ≥ {TARGET_B_OVER_C:g} | {'PASS' if figures['pass_b_over_c'] else 'MISS'} |")
    print(f"| b1 / a | {rate_b1 / rate_a:.2f} | | |")
    print()
    print(f"(a) and (b) ran {args.repeat} times in turn; the table has each one's median run. Seconds of each run: "
          f"(a) {', '.join(f'{run[0]:.1f}' for run in runs_a)}; (b) {', '.join(f'{run[0]:.1f}' for run in runs_b)}; "
          f"b / a pair by pair: {', '.join(f'{ratio:.2f}' for ratio in pair_ratios)}.")
    print(f"\\* (c) ran on the first {args.naive_events:,} of the same events, one object each: writing one object "
          f"per event to moto runs at a few hundred PUTs/s (~300/s here: {args.events:,} would take "
          f"~{args.events / 300 / 60:.0f} min to write before anything is measured); its cost is per object and "
          "per row, so its rate does not depend on N.")
    print(f"(b) run_etl summary: {summary}")
    print(f"the rollup refresh at the end of (b): {summary['refresh_seconds']} s of its {seconds_b:.1f} s; of each "
          f"run: {', '.join(str(run[3]['refresh_seconds']) for run in runs_b)}; of (b1): {summary_b1['refresh_seconds']} s")
    print()
    print(cpu_table({"(a) ceiling": (seconds_a, cpu_a), f"(b) {args.workers} workers": (seconds_b, cpu_b),
                     "(b1) 1 process": (seconds_b1, cpu_b1)}, m["cores"]))
    print("checks: " + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in checks.items()))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as out:
            json.dump(figures, out, indent=2)
    if not all(checks.values()):
        raise SystemExit("correctness checks failed: " + ", ".join(k for k, v in checks.items() if not v))


if __name__ == "__main__":
    main()
