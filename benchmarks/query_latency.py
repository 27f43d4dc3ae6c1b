"""Latency of every report query (sql/analytics/), on the raw events table and on the rollups.

Starts a private local stack on free ports (never your own), fills it with about `--events` events and
measures each question of `clickstream.analytics.questions` (the queries behind `clickstream report` and the dashboard)
over the whole simulated range, as dashboard_reader on one open connection: median and p95 in milliseconds
of `--repeat` runs per question on the rollups and `--raw-repeat` runs on the raw table (a raw funnel at 10M
events takes seconds). Every question's rollup answer is checked equal to its raw answer first. Last, the
whole report (`questions.report`, source auto: what the dashboard runs) is timed `--repeat` times.

Data: `clickstream.shop.simulate` in history mode (seed 42, `--days` days from 2026-11-16), its visitor count
sized from a dry run of the same seed to give about `--events` events. Two ways to get them into the
warehouse:

- bulk (default): the exact ingest and ETL code with only the S3 hop skipped. `--workers` processes take
  ranges of visitors (`simulate.generate(config, indexes)`) and send each request through
  `ingest.ingest_batch` as history mode does (`traffic.IngestTarget.store`), into an in-memory stand-in for the
  raw bucket (the PUT is the only step skipped); the stored bytes, under the key the ingest chose and their
  MD5 as etag (what S3 returns for a single-part PUT), go through the ETL's own `transform.transform_body`.
  The resulting `warehouse.ObjectLoad`s are spooled to a temporary folder per UTC receive hour and loaded
  by `warehouse.load_chunk` in the ETL's order (all keys sorted, as `etl.run_etl` loads them) in chunks of
  about `--chunk-rows` rows, so the table's physical order (what its BRIN index relies on) is the ETL's.
  Checked: the rows inserted are the distinct event ids of the accepted events, the transform rejects none.
  Compared once with `--via-s3` at 20k events: the same keys and etags (moto's are the MD5 too), the same
  rows, rejects and rollups; only which copy of a resent event is kept (its source_key and received_at, not
  its event_timestamp) may differ, as it depends on where chunk boundaries fall, in the ETL as well.
- `--via-s3`: `traffic.send` in history mode writes one object per request to the local S3 (moto, a few hundred PUTs
  per second on 2 cores: fine for tens of thousands of events), then `etl.run_etl` loads them.

Then `rollups.refresh_days` builds the rollups of every loaded day (the steps are timed, not part of the
latencies) and the tables are VACUUM ANALYZEd before the queries run.

    .venv/bin/python benchmarks/query_latency.py [--events 1000000] [--days 7] [--repeat 20] [--raw-repeat N]
                                                 [--tz UTC] [--via-s3] [--workers 2] [--json out.json]
    .venv/bin/python benchmarks/query_latency.py --render a.json [b.json ...] > results.md

`--keep HOME` (a new folder) builds the stack in HOME and keeps it, stopped, after the run: a CLICKSTREAM_HOME
that `.venv/bin/clickstream --home HOME up` restarts, e.g. the 10M warehouse that benchmarks/dashboard_render.py
and dashboard_queries.py (`--reader-dsn`) measure again without rebuilding it.

Target (issue 4): every dashboard query <= 100 ms p95 at 10M events.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing
import os
import pickle
import platform
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import psycopg
from tqdm import tqdm

from clickstream import aws
from clickstream.analytics import etl, questions, rollups, warehouse
from clickstream.ingestion import raw
from clickstream.shop import simulate, traffic
from clickstream.local.postgres import DASHBOARD_READER, ETL_WRITER, WAREHOUSE_DB, dsn
from clickstream.local.stack import private_stack, status
from clickstream.analytics.transform import transform_body

START = date(2026, 11, 16)  # a Monday
SEED = 42
CALIBRATION_VISITORS = 300
TARGET_P95_MS = 100.0
VISITORS_PER_TASK = 2000  # one bulk task: ~30k events
CHUNK_ROWS = 50_000
EVENT_ID = warehouse.EVENT_ID


def sized_config(events: int, days: int) -> simulate.SimulationConfig:
    """The simulation of about `events` stored events over `days` days from START (visitors from a dry run)."""
    sample = simulate.ground_truth(simulate.SimulationConfig(start=START, days=days, visitors=CALIBRATION_VISITORS,
                                                             seed=SEED)).as_dict()
    per_visitor = (sample["events"] + sample["bots"]["events"]) / CALIBRATION_VISITORS
    return simulate.SimulationConfig(start=START, days=days, visitors=max(1, round(events / per_visitor)), seed=SEED)


# --- via S3: history mode into moto, then the ETL -------------------------------------------------------------


def generate_via_s3(settings, config: simulate.SimulationConfig) -> dict:
    """The simulation in history mode into the stack's raw bucket (one S3 object per request)."""
    target = traffic.IngestTarget.from_templates(settings, aws.client("s3", settings))
    with tqdm(total=config.visitors + config.bots, unit="visitor", desc="simulating") as bar:
        summary = traffic.send(config, target, progress=bar.update)
    return {"events_stored": summary.events_stored, "generate_seconds": round(summary.seconds, 1)}


def load_via_s3(settings, etl_dsn: str) -> dict:
    """The ETL over every raw object (rollups left pending for `refresh`)."""
    s3, bucket = aws.client("s3", settings), status(settings)["raw_bucket"]
    with tqdm(unit="object", desc="loading") as bar:
        def progress(p: etl.ChunkProgress) -> None:
            bar.total = p.objects_to_load
            bar.update(p.objects_done - bar.n)

        summary = etl.run_etl(s3, bucket, etl_dsn, etl.EtlRequest(prefix=raw.RAW_PREFIX),
                              etl.EtlOptions(progress=progress, refresh_rollups=False))
    return {"rows_inserted": summary["rows_inserted"], "duplicates": summary["duplicates"],
            "rejected": summary["rejected"], "load_seconds": summary["seconds"]}


# --- bulk: the same ingest and ETL code without the S3 hop ----------------------------------------------------


class CapturedBucket:
    """Stands in for the S3 client of `ingest_batch`: keeps each PUT's key and bytes instead of sending them."""

    def __init__(self) -> None:
        self.objects: list[tuple[str, bytes]] = []

    def put_object(self, *, Key: str, Body: bytes, **_: object) -> dict:
        self.objects.append((Key, Body))
        return {"ETag": f'"{hashlib.md5(Body).hexdigest()}"'}


def _hour_of(key: str, prefix: str) -> str:
    """`2026-11-16-09` of `<prefix>2026/11/16/09/<id>.json`: the spool folder, sorting as the keys do."""
    return key[len(prefix):len(prefix) + 13].replace("/", "-")


def ingest_and_transform(task: tuple) -> Counter:
    """One bulk task (in a worker process): the requests of a range of visitors through the ingest, their
    objects through the ETL's transform, spooled as ObjectLoads per receive hour; returns the counts."""
    config, target, indexes, spool = task
    bucket = CapturedBucket()
    target = replace(target, s3=bucket)
    counts: Counter = Counter()
    for requests in simulate.generate(config, indexes):
        for request in requests:
            counts["requests"] += 1
            counts["events_sent"] += len(request.events)
            counts["events_stored"] += target.store(request).events  # history mode's step
    by_hour: dict[str, list[warehouse.ObjectLoad]] = {}
    event_ids = set()
    for key, body in bucket.objects:
        transformed = transform_body(body, key)
        by_hour.setdefault(_hour_of(key, target.ingest_settings.prefix), []).append(
            warehouse.ObjectLoad(key, hashlib.md5(body).hexdigest(), transformed.rows, transformed.rejects))
        counts["rows"] += len(transformed.rows)
        counts["transform_rejects"] += len(transformed.rejects)
        event_ids.update(row[EVENT_ID] for row in transformed.rows)
    for hour, objects in by_hour.items():
        folder = Path(spool, hour)
        folder.mkdir(exist_ok=True)
        with open(folder / f"{indexes.start:09d}.pickle", "wb") as f:
            pickle.dump(objects, f, protocol=pickle.HIGHEST_PROTOCOL)
    counts.update(visitors=len(indexes), objects=len(bucket.objects), distinct_events=len(event_ids))
    return counts


def _spooled(spool: str) -> Iterator[warehouse.ObjectLoad]:
    """Every spooled object in key order (hour by hour, each hour sorted), deleting each hour once read."""
    for hour in sorted(os.listdir(spool)):
        folder = Path(spool, hour)
        objects: list[warehouse.ObjectLoad] = []
        for path in sorted(folder.iterdir()):
            with open(path, "rb") as f:
                objects.extend(pickle.load(f))
        shutil.rmtree(folder)
        objects.sort(key=lambda obj: obj.key)
        yield from objects


def generate_bulk(settings, etl_dsn: str, config: simulate.SimulationConfig, workers: int,
                  chunk_rows: int) -> dict:
    """The simulation through the ingest and the ETL's transform in `workers` processes, then load_chunk."""
    target = traffic.IngestTarget.from_templates(settings, s3=None)  # each worker puts in its CapturedBucket
    total = config.visitors + config.bots
    counts: Counter = Counter()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="query_latency_spool_") as spool:
        tasks = [(config, target, range(lo, min(lo + VISITORS_PER_TASK, total)), spool)
                 for lo in range(0, total, VISITORS_PER_TASK)]
        with multiprocessing.get_context("fork").Pool(workers) as pool, \
                tqdm(total=total, unit="visitor", desc="simulate + ingest + transform") as bar:
            for done in pool.imap_unordered(ingest_and_transform, tasks):
                counts.update(done)
                bar.update(done["visitors"])
        generated = time.perf_counter()
        loaded: Counter = Counter()
        with warehouse.connect(etl_dsn) as conn, tqdm(total=counts["rows"], unit="row", desc="load_chunk") as bar:
            chunk: list[warehouse.ObjectLoad] = []
            rows = 0

            def flush() -> None:
                for result in warehouse.load_chunk(conn, chunk).values():
                    loaded.update(rows_inserted=result.rows_inserted, duplicates=result.duplicates,
                                  rejected=result.rejected)
                bar.update(sum(len(obj.rows) for obj in chunk))
                chunk.clear()

            for obj in _spooled(spool):
                chunk.append(obj)
                rows += len(obj.rows)
                if rows >= chunk_rows:
                    flush()
                    rows = 0
            if chunk:
                flush()
    if counts["transform_rejects"] or loaded["rows_inserted"] != counts["distinct_events"]:
        raise RuntimeError(f"the load inserted {loaded['rows_inserted']} rows for {counts['distinct_events']} "
                           f"distinct accepted events ({counts['transform_rejects']} transform rejects)")
    return {"requests": counts["requests"], "objects": counts["objects"], "events_sent": counts["events_sent"],
            "events_stored": counts["events_stored"], "rows_inserted": loaded["rows_inserted"],
            "duplicates": loaded["duplicates"], "rejected": loaded["rejected"],
            "generate_seconds": round(generated - started, 1),
            "load_seconds": round(time.perf_counter() - generated, 1)}


# --- after the load --------------------------------------------------------------------------------------------


def refresh(etl_dsn: str) -> dict:
    """The rollups of every day with events."""
    started = time.perf_counter()
    with warehouse.connect(etl_dsn) as conn:
        days = [row[0] for row in conn.execute(
            "SELECT DISTINCT (event_timestamp AT TIME ZONE 'UTC')::date FROM clickstream_events").fetchall()]
        conn.commit()
        rollups.refresh_days(conn, days)
    return {"refresh_seconds": round(time.perf_counter() - started, 1), "days_refreshed": len(days)}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _timed(ask, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        ask()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 2), round(percentile(times, 95), 2)


def measure(reader_dsn: str, start: date, end: date, tz: str, repeat: int, raw_repeat: int) -> list[dict]:
    results = []
    with questions.read_only(reader_dsn) as conn:
        conn.autocommit = True
        for name in tqdm(questions.QUESTIONS, desc="measuring"):
            row = {"question": name}
            answers = {}
            for source, runs in (("raw", raw_repeat), ("rollup", repeat)):
                ask = lambda: questions.run_question(name, conn, start, end, tz, source=source)  # noqa: E731
                answers[source] = ask().to_json()  # also warms the cache
                row[f"{source}_median_ms"], row[f"{source}_p95_ms"] = _timed(ask, runs)
            if answers["raw"] != answers["rollup"]:
                raise AssertionError(f"{name}: the rollups do not give the raw table's answer")
            row["speedup"] = round(row["raw_median_ms"] / row["rollup_median_ms"], 1)
            results.append(row)
        sources = questions.report(conn, start, end, tz)["sources"]
        if set(sources.values()) != {"rollup"}:
            raise AssertionError(f"the report (source auto) did not read only rollups: {sources}")
        median, p95 = _timed(lambda: questions.report(conn, start, end, tz), repeat)
    results.append({"question": "report (all, auto)", "rollup_median_ms": median, "rollup_p95_ms": p95})
    return results


def table(results: list[dict]) -> str:
    lines = [f"{'question':<22}{'raw median':>12}{'raw p95':>10}{'rollup median':>15}{'rollup p95':>12}{'speedup':>9}"]
    for r in results:
        cells = [f"{r[k]:.1f}" if k in r else "" for k in ("raw_median_ms", "raw_p95_ms", "rollup_median_ms",
                                                           "rollup_p95_ms")]
        speedup = f"{r['speedup']}x" if "speedup" in r else ""
        lines.append(f"{r['question']:<22}{cells[0]:>12}{cells[1]:>10}{cells[2]:>15}{cells[3]:>12}{speedup:>9}")
    return "\n".join(lines) + "\n(milliseconds; report = one full report, every question, source auto)"


def describe_data(figures: dict) -> str:
    if figures["data_path"] == "bulk":
        return ("bulk path = the ingest (ingest_batch) and the ETL (transform_body, load_chunk in key order) "
                f"with only the S3 hop skipped, {figures['workers']} worker processes")
    return "via S3 = history mode into the local S3 (moto), then etl.run_etl"


def render(paths: list[str]) -> str:
    """Markdown of `--json` files: a table per run, with its machine and command."""
    out = []
    for path in paths:
        f = json.loads(Path(path).read_text(encoding="utf-8"))
        m = f["machine"]
        out.append(f"## {f['rows_inserted']:,} events ({f['days']} days, tz {f['tz']})\n")
        out.append(f"Machine: {m['cores']} cores, {m['cpu']}, Python {m['python']}, PostgreSQL {m['postgresql']}.  ")
        out.append(f"Command: `{f['command']}`  ")
        out.append(f"Data: {describe_data(f)}: {f['generate_seconds']} s simulate + ingest + transform, "
                   f"{f['load_seconds']} s load, {f['refresh_seconds']} s rollup refresh of {f['days_refreshed']} "
                   f"days. Rows: " + ", ".join(f"{name} {n:,}" for name, n in f["table_rows"].items()) + ".\n")
        out.append(f"Medians and p95 in ms over {f['raw_repeat']} raw and {f['repeat']} rollup runs; every rollup "
                   "answer equals the raw answer.\n")
        out.append("| question | raw median | raw p95 | rollup median | rollup p95 | speedup |")
        out.append("|---|---:|---:|---:|---:|---:|")
        for r in f["queries"]:
            cells = [f"{r[k]:,.1f}" if k in r else "" for k in ("raw_median_ms", "raw_p95_ms", "rollup_median_ms",
                                                                 "rollup_p95_ms")]
            speedup = f"{r['speedup']:,}x" if "speedup" in r else ""
            out.append(f"| {r['question']} | " + " | ".join(cells) + f" | {speedup} |")
        verdict = "met" if f["slowest_rollup_p95_ms"] <= f["target_p95_ms"] else "missed"
        out.append(f"\nSlowest dashboard query p95: {f['slowest_rollup_p95_ms']:.1f} ms (target at 10M events <= "
                   f"{f['target_p95_ms']:.0f} ms: {verdict}); the whole report (every question, source auto) "
                   f"p95: {f['queries'][-1]['rollup_p95_ms']:.1f} ms.\n")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="about how many events (default 1,000,000)")
    parser.add_argument("--days", type=int, default=7, help="simulated days from 2026-11-16 (default 7)")
    parser.add_argument("--repeat", type=int, default=20, help="runs of each rollup query (default 20)")
    parser.add_argument("--raw-repeat", type=int, help="runs of each raw-table query (default --repeat)")
    parser.add_argument("--tz", default="UTC", help="business time zone of the queries (default UTC)")
    parser.add_argument("--via-s3", action="store_true",
                        help="history mode through the local S3 and etl.run_etl (slow: small sizes only)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="bulk: processes for simulate + ingest + transform (default: the cores)")
    parser.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS,
                        help="bulk: rows per load_chunk (default 50,000)")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--keep", type=Path, metavar="HOME",
                        help="build the stack in this new folder, kept (stopped) for `clickstream --home HOME up`")
    parser.add_argument("--render", nargs="+", metavar="JSON", help="print the markdown tables of --json files")
    args = parser.parse_args()
    if args.render:
        print(render(args.render))
        return
    questions.zone(args.tz)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `kill` stops the private stack too, as Ctrl-C does
    raw_repeat = args.raw_repeat or args.repeat
    config = sized_config(args.events, args.days)
    data = {"data_path": "via-s3" if args.via_s3 else "bulk", "visitors": config.visitors, "bots": config.bots}
    if not args.via_s3:
        data["workers"] = args.workers
    print("data: " + describe_data(data) + f"; {config.visitors:,} visitors + {config.bots:,} bots for about "
          f"{args.events:,} events", flush=True)

    if args.keep and args.keep.exists():
        parser.error(f"--keep {args.keep}: the folder exists; give a new one")
    with private_stack(keep=args.keep) as settings:
        passwords = json.loads((settings.home / "credentials" / "dw.json").read_text())
        role_dsn = {role: dsn(settings.host, settings.dw_port, WAREHOUSE_DB, role, passwords[role])
                    for role in (ETL_WRITER, DASHBOARD_READER)}
        admin = status(settings)["dw_admin_dsn"]
        if args.via_s3:
            data.update(generate_via_s3(settings, config))
            data.update(load_via_s3(settings, role_dsn[ETL_WRITER]))
        else:
            data.update(generate_bulk(settings, role_dsn[ETL_WRITER], config, args.workers, args.chunk_rows))
        data.update(refresh(role_dsn[ETL_WRITER]))
        with psycopg.connect(admin, autocommit=True) as conn:
            for name in ("clickstream_events", *rollups.ROLLUP_TABLES):
                conn.execute(f"VACUUM ANALYZE {name}")
            pg_version = conn.execute("SHOW server_version").fetchone()[0]
            sizes = {name: conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
                     for name in ("clickstream_events", *rollups.ROLLUP_TABLES)}
            stored = sizes["clickstream_events"]
        if stored != data["rows_inserted"]:
            raise RuntimeError(f"clickstream_events holds {stored} rows, the load inserted {data['rows_inserted']}")
        end = START + timedelta(days=args.days - 1)
        results = measure(role_dsn[DASHBOARD_READER], START, end, args.tz, args.repeat, raw_repeat)

    print(f"\n{stored:,} events in clickstream_events, {args.days} days, tz {args.tz}; "
          f"{raw_repeat} raw and {args.repeat} rollup runs per query; rows: "
          + ", ".join(f"{name} {n:,}" for name, n in sizes.items()))
    print(f"data: {describe_data(data)}: {data['generate_seconds']} s simulate + ingest + transform, "
          f"{data['load_seconds']} s load, rollup refresh of {data['days_refreshed']} days "
          f"{data['refresh_seconds']} s\n")
    print(table(results))
    worst = max(r["rollup_p95_ms"] for r in results if "speedup" in r)
    print(f"\nslowest dashboard query p95: {worst:.1f} ms, whole report p95: {results[-1]['rollup_p95_ms']:.1f} ms "
          f"(target: every dashboard query <= {TARGET_P95_MS:.0f} ms p95 at 10M events)")
    if args.json:
        cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                   "?")
        figures = {"machine": {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
                               "postgresql": pg_version},
                   "command": shlex.join([".venv/bin/python", *sys.argv]),
                   "events": args.events, "days": args.days, "repeat": args.repeat, "raw_repeat": raw_repeat,
                   "tz": args.tz, **data, "table_rows": sizes, "queries": results, "slowest_rollup_p95_ms": worst,
                   "target_p95_ms": TARGET_P95_MS}
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
