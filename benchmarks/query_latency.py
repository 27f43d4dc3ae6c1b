"""Latency of every report query (sql/analytics/), on the raw events table and on the rollups.

Starts a private local stack on free ports (never your own), fills it with about `--events` events and
measures each question of `clickstream.analytics` (the queries behind `clickstream report` and the dashboard)
`--repeat` times per source, over the whole simulated range, as dashboard_reader on one open connection:
median and p95 in milliseconds. Every question's rollup answer is checked equal to its raw answer first.

Data: `clickstream.simulate` in history mode (the ingest code with an injected clock, raw objects in the
local S3) over `--days` days, its visitor count sized from a dry run of the same seed to give about
`--events` stored events; then the ETL (`etl.run_etl`) loads them and `rollups.refresh_days` builds the
rollups of every loaded day (both timed, not part of the latencies). Tables are VACUUM ANALYZEd before the
queries run.

    .venv/bin/python benchmarks/query_latency.py [--events 1000000] [--days 7] [--repeat 20] [--tz UTC]
                                                 [--json out.json]

Target (issue 4): every dashboard query <= 100 ms p95 at 10M events.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from datetime import date, timedelta

import psycopg
from tqdm import tqdm

from clickstream import analytics, aws, etl, raw, rollups, simulate, warehouse
from clickstream.local.postgres import DASHBOARD_READER, ETL_WRITER, WAREHOUSE_DB, dsn
from clickstream.local.stack import private_stack, status

START = date(2026, 11, 16)  # a Monday
SEED = 42
CALIBRATION_VISITORS = 300
TARGET_P95_MS = 100.0


def generate(settings, events: int, days: int) -> dict:
    """About `events` events over `days` days from START in the stack's raw bucket (history mode)."""
    sample = simulate.ground_truth(simulate.SimulationConfig(start=START, days=days, visitors=CALIBRATION_VISITORS,
                                                             seed=SEED)).as_dict()
    per_visitor = (sample["events"] + sample["bots"]["events"]) / CALIBRATION_VISITORS
    config = simulate.SimulationConfig(start=START, days=days, visitors=max(1, round(events / per_visitor)), seed=SEED)
    with tqdm(total=config.visitors + config.bots, unit="visitor", desc="simulating") as bar:
        summary = simulate.simulate(settings, config, progress=bar.update)
    return {"visitors": config.visitors, "bots": config.bots, "events_stored": summary.events_stored,
            "simulate_seconds": round(summary.seconds, 1)}


def load(settings, etl_dsn: str) -> dict:
    """The ETL over every raw object, then the rollups of every day with events."""
    s3, bucket = aws.client("s3", settings), status(settings)["raw_bucket"]
    with tqdm(unit="object", desc="loading") as bar:
        def progress(p: etl.ChunkProgress) -> None:
            bar.total = p.objects_to_load
            bar.update(p.objects_done - bar.n)

        summary = etl.run_etl(s3, bucket, etl_dsn, prefix=raw.RAW_PREFIX, progress=progress)
    started = time.perf_counter()
    with warehouse.connect(etl_dsn) as conn:
        days = [row[0] for row in conn.execute(
            "SELECT DISTINCT (event_timestamp AT TIME ZONE 'UTC')::date FROM clickstream_events").fetchall()]
        conn.commit()
        rollups.refresh_days(conn, days)
    return {"rows_inserted": summary["rows_inserted"], "etl_seconds": summary["seconds"],
            "refresh_seconds": round(time.perf_counter() - started, 2), "days_refreshed": len(days)}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def measure(reader_dsn: str, start: date, end: date, tz: str, repeat: int) -> list[dict]:
    results = []
    with analytics.read_only(reader_dsn) as conn:
        conn.autocommit = True
        for name in tqdm(analytics.QUESTIONS, desc="measuring"):
            row = {"question": name}
            answers = {}
            for source in ("raw", "rollup"):
                ask = lambda: analytics.run_question(name, conn, start, end, tz, source=source)  # noqa: E731
                answers[source] = ask().to_json()  # also warms the cache
                times = []
                for _ in range(repeat):
                    started = time.perf_counter()
                    ask()
                    times.append((time.perf_counter() - started) * 1000)
                row[f"{source}_median_ms"] = round(statistics.median(times), 2)
                row[f"{source}_p95_ms"] = round(percentile(times, 95), 2)
            if answers["raw"] != answers["rollup"]:
                raise AssertionError(f"{name}: the rollups do not give the raw table's answer")
            row["speedup"] = round(row["raw_median_ms"] / row["rollup_median_ms"], 1)
            results.append(row)
        started = time.perf_counter()
        for _ in range(repeat):
            analytics.report(conn, start, end, tz)
        report_ms = (time.perf_counter() - started) * 1000 / repeat
    results.append({"question": "report (all, auto)", "rollup_median_ms": round(report_ms, 2)})
    return results


def table(results: list[dict]) -> str:
    lines = [f"{'question':<22}{'raw median':>12}{'raw p95':>10}{'rollup median':>15}{'rollup p95':>12}{'speedup':>9}"]
    for r in results:
        cells = [f"{r[k]:.1f}" if k in r else "" for k in ("raw_median_ms", "raw_p95_ms", "rollup_median_ms",
                                                           "rollup_p95_ms")]
        speedup = f"{r['speedup']}x" if "speedup" in r else ""
        lines.append(f"{r['question']:<22}{cells[0]:>12}{cells[1]:>10}{cells[2]:>15}{cells[3]:>12}{speedup:>9}")
    return "\n".join(lines) + "\n(milliseconds; report = mean of one full report, every question, source auto)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="about how many events (default 1,000,000)")
    parser.add_argument("--days", type=int, default=7, help="simulated days from 2026-11-16 (default 7)")
    parser.add_argument("--repeat", type=int, default=20, help="runs of each query per source (default 20)")
    parser.add_argument("--tz", default="UTC", help="business time zone of the queries (default UTC)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    analytics.zone(args.tz)

    with private_stack() as settings:
        passwords = json.loads((settings.home / "credentials" / "dw.json").read_text())
        role_dsn = {role: dsn(settings.host, settings.dw_port, WAREHOUSE_DB, role, passwords[role])
                    for role in (ETL_WRITER, DASHBOARD_READER)}
        admin = status(settings)["dw_admin_dsn"]
        data = generate(settings, args.events, args.days)
        data.update(load(settings, role_dsn[ETL_WRITER]))
        with psycopg.connect(admin, autocommit=True) as conn:
            for name in ("clickstream_events", *rollups.ROLLUP_TABLES):
                conn.execute(f"VACUUM ANALYZE {name}")
            pg_version = conn.execute("SHOW server_version").fetchone()[0]
            sizes = dict(conn.execute(
                "SELECT relname, n_live_tup FROM pg_stat_user_tables WHERE relname = ANY(%s)",
                (["clickstream_events", *rollups.ROLLUP_TABLES],)).fetchall())
        end = START + timedelta(days=args.days - 1)
        results = measure(role_dsn[DASHBOARD_READER], START, end, args.tz, args.repeat)

    print(f"\n{data['rows_inserted']:,} events in the warehouse, {args.days} days, tz {args.tz}, "
          f"{args.repeat} runs per query; rollup rows: "
          + ", ".join(f"{name} {sizes.get(name, 0):,}" for name in rollups.ROLLUP_TABLES))
    print(f"ETL {data['etl_seconds']} s, rollup refresh of {data['days_refreshed']} days {data['refresh_seconds']} s\n")
    print(table(results))
    worst = max(r["rollup_p95_ms"] for r in results if "rollup_p95_ms" in r)
    print(f"\nslowest rollup p95: {worst:.1f} ms (target <= {TARGET_P95_MS:.0f} ms at 10M events)")
    if args.json:
        cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                   "?")
        figures = {"machine": {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
                               "postgresql": pg_version},
                   "events": args.events, "days": args.days, "repeat": args.repeat, "tz": args.tz, **data,
                   "table_rows": sizes, "queries": results, "slowest_rollup_p95_ms": worst,
                   "target_p95_ms": TARGET_P95_MS}
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
