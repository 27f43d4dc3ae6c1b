"""What an ETL run costs against what it loads (issue 11): `clickstream etl` end to end, as its own process.

Starts a private local stack on free ports (stopped at the end) and measures, with the data of
`etl_load.simulated_objects` (one UTC day of the simulated shop, objects of 500 events):
  (1) `clickstream etl --prefix P` for `--small` (20,000) new events, wall time of the whole process (start,
      listing, reads, load, rollup refresh):
      (1a) into a warehouse that holds nothing else;
      (1b) into the same day when its same hours already hold `--big` (1,000,000) rows of other visitors of
           the same shop (loaded by `clickstream etl` first, not timed, then VACUUM ANALYZE).
      Target: 1b <= 1.5 x 1a + 1 s (a run costs what its new data costs, not what the day holds).
  (2) `clickstream etl` for `--medium` (100,000) new events into an empty warehouse against the ceiling, `psql
      \\copy` of the same rows (CSV of the project's transform of the same objects) into an empty copy of
      clickstream_events (LIKE ... INCLUDING ALL). Target: >= 0.3 x the ceiling's events/s. The ceiling is also
      run into a copy without the index on (client_id, is_bot, event_timestamp) that the incremental session
      rollup reads: what that index costs a load.
Each small set is its own simulation (other seed, same day and hours) under its own prefix. Every measurement
runs `--repeat` times (default 3; the (2) pairs in turn) and the median is reported. Checks: row counts, and
the rollups at the end equal a full rebuild (`rollups.rebuild`).

    .venv/bin/python benchmarks/etl_scaling.py [--small 20000] [--big 1000000] [--medium 100000] [--repeat 3]
                                               [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tqdm import tqdm

from clickstream import aws
from clickstream.analytics import rollups
from clickstream.local.stack import private_stack, status
from etl_load import COLUMN_NAMES, DAY, PSQL, admin, count, machine, rollups_differ, simulated_objects, write_objects

CLI = Path(sys.executable).with_name("clickstream")
TABLES = "clickstream_events, clickstream_rejected, etl_load_log, rollup_pending"
TARGET_SCALING = (1.5, 1.0)  # 1b <= 1.5 x 1a + 1 s
TARGET_MEDIUM = 0.3


def prefix(name: str) -> str:
    return f"bench-{name}/{DAY:%Y/%m/%d}/"


def empty_warehouse(admin_dsn: str) -> None:
    admin(admin_dsn, f"TRUNCATE {TABLES}, " + ", ".join(rollups.ROLLUP_TABLES), "CHECKPOINT")


def cli_etl(key_prefix: str) -> tuple[float, dict]:
    """Wall seconds of `clickstream etl --prefix key_prefix --json` and its summary."""
    started = time.perf_counter()
    done = subprocess.run([str(CLI), "etl", "--prefix", key_prefix, "--json"], capture_output=True, text=True,
                          check=False)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"clickstream etl failed: {done.stderr[-2000:]}")
    return seconds, json.loads(done.stdout)


def ceiling(admin_dsn: str, csv_path: Path, client_index: bool) -> float:
    """psql \\copy of the CSV into an empty copy of clickstream_events (with or without the client index)."""
    admin(admin_dsn, "DROP TABLE IF EXISTS bench_copy", "CREATE TABLE bench_copy (LIKE clickstream_events INCLUDING ALL)",
          *(() if client_index else ("DO $$ BEGIN EXECUTE (SELECT format('DROP INDEX %I', indexname) FROM pg_indexes"
                                     " WHERE tablename = 'bench_copy' AND indexdef LIKE"
                                     " '%(client_id, is_bot, event_timestamp)%'); END $$",)),
          "CHECKPOINT")
    command = [PSQL, admin_dsn, "-v", "ON_ERROR_STOP=1", "-q", "-c",
               f"\\copy bench_copy ({', '.join(COLUMN_NAMES)}) FROM '{csv_path}' WITH (FORMAT csv)"]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=20_000, help="new events of (1) (default 20,000)")
    parser.add_argument("--big", type=int, default=1_000_000, help="rows already in the day for (1b) (default 1M)")
    parser.add_argument("--medium", type=int, default=100_000, help="new events of (2) (default 100,000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement, median reported (default 3)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if min(args.small, args.big, args.medium, args.repeat) < 1:
        parser.error("sizes and --repeat must be at least 1")

    with private_stack(apply_to_environ=True) as settings:
        info = status(settings)
        bucket, admin_dsn = info["raw_bucket"], info["dw_admin_dsn"]
        s3 = aws.client("s3", settings)
        host = machine(admin_dsn)
        csv_path = settings.home / "bench_medium.csv"
        started = time.perf_counter()
        for run in range(args.repeat):
            write_objects(s3, bucket, simulated_objects(args.small, DAY.date(), 101 + run, prefix(f"small{run}")),
                          desc=f"setup: small set {run + 1}")
        write_objects(s3, bucket, simulated_objects(args.medium, DAY.date(), 201, prefix("medium")), csv_path,
                      desc="setup: medium set + CSV")
        write_objects(s3, bucket, simulated_objects(args.big, DAY.date(), 42, prefix("big")), desc="setup: big set")
        setup_seconds = time.perf_counter() - started

        alone, with_big, medium, copies, copies_without_index = [], [], [], [], []
        for run in tqdm(range(args.repeat), desc="(1a) small sets into an empty day", leave=False):
            empty_warehouse(admin_dsn)
            seconds, summary = cli_etl(prefix(f"small{run}"))
            assert summary["rows_inserted"] == args.small, summary
            alone.append((seconds, summary["seconds"]))
        for run in tqdm(range(args.repeat), desc="(2) ceiling and medium set in turn", leave=False):
            copies.append(ceiling(admin_dsn, csv_path, client_index=True))
            assert count(admin_dsn, "bench_copy") == args.medium
            copies_without_index.append(ceiling(admin_dsn, csv_path, client_index=False))
            empty_warehouse(admin_dsn)
            seconds, summary = cli_etl(prefix("medium"))
            assert summary["rows_inserted"] == args.medium, summary
            medium.append((seconds, summary["seconds"]))
        admin(admin_dsn, "DROP TABLE bench_copy")
        empty_warehouse(admin_dsn)
        big_seconds, summary = cli_etl(prefix("big"))
        assert summary["rows_inserted"] == args.big, summary
        admin(admin_dsn, "VACUUM ANALYZE", "CHECKPOINT")
        for run in tqdm(range(args.repeat), desc="(1b) small sets into the big day", leave=False):
            seconds, summary = cli_etl(prefix(f"small{run}"))
            assert summary["rows_inserted"] == args.small, summary
            with_big.append((seconds, summary["seconds"]))
        total_rows = count(admin_dsn, "clickstream_events")
        same_hours = admin(admin_dsn, "SELECT count(DISTINCT date_trunc('hour', event_timestamp, 'UTC'))"
                                      " FROM clickstream_events")[0][0][0]
        wrong = rollups_differ(admin_dsn)

    median = lambda runs: statistics.median(run[0] for run in runs)  # noqa: E731
    a, b = median(alone), median(with_big)
    copy_s, copy_no_index_s, medium_s = statistics.median(copies), statistics.median(copies_without_index), median(medium)
    scaling_limit = TARGET_SCALING[0] * a + TARGET_SCALING[1]
    medium_ratio = copy_s / medium_s
    checks = {"rows": total_rows == args.big + args.repeat * args.small, "rollups_equal_a_rebuild": wrong == 0}
    figures = {
        "machine": host, "setup_seconds_untimed": round(setup_seconds, 1), "repeat": args.repeat,
        "small": args.small, "big": args.big, "medium": args.medium,
        "1a_seconds_each": [round(r[0], 2) for r in alone], "1a_etl_seconds_each": [r[1] for r in alone],
        "1b_seconds_each": [round(r[0], 2) for r in with_big], "1b_etl_seconds_each": [r[1] for r in with_big],
        "big_load_seconds_untimed": round(big_seconds, 1), "hours_of_the_day": same_hours,
        "1a_seconds": round(a, 2), "1b_seconds": round(b, 2), "1b_limit_seconds": round(scaling_limit, 2),
        "pass_scaling": b <= scaling_limit,
        "2_ceiling_seconds_each": [round(s, 2) for s in copies],
        "2_ceiling_without_client_index_seconds_each": [round(s, 2) for s in copies_without_index],
        "2_etl_seconds_each": [round(r[0], 2) for r in medium], "2_etl_own_seconds_each": [r[1] for r in medium],
        "2_ratio": round(medium_ratio, 3), "pass_medium": medium_ratio >= TARGET_MEDIUM, "checks": checks,
    }
    print(f"machine: {host['cores']} cores, {host['cpu']}, Python {host['python']}, PostgreSQL {host['postgresql']}")
    print(f"command: .venv/bin/python benchmarks/etl_scaling.py --small {args.small} --big {args.big} "
          f"--medium {args.medium} --repeat {args.repeat}")
    print()
    print("| run of `clickstream etl` (whole process) | new events | seconds (median) | events/s |")
    print("|---|---:|---:|---:|")
    print(f"| (1a) into an empty warehouse | {args.small:,} | {a:.2f} | {args.small / a:,.0f} |")
    print(f"| (1b) into the same day, its {same_hours} hours holding {args.big:,} rows | {args.small:,} | {b:.2f} "
          f"| {args.small / b:,.0f} |")
    print(f"| (2) into an empty warehouse | {args.medium:,} | {medium_s:.2f} | {args.medium / medium_s:,.0f} |")
    print(f"| (2) ceiling: psql \\copy of the same rows | {args.medium:,} | {copy_s:.2f} | {args.medium / copy_s:,.0f} |")
    print(f"| (2) ceiling without the client index | {args.medium:,} | {copy_no_index_s:.2f} "
          f"| {args.medium / copy_no_index_s:,.0f} |")
    print()
    print(f"(1) target 1b <= 1.5 x 1a + 1 s = {scaling_limit:.2f} s: {b:.2f} s, "
          f"{'PASS' if figures['pass_scaling'] else 'MISS'}")
    print(f"(2) target >= {TARGET_MEDIUM} x the ceiling: {medium_ratio:.2f}, {'PASS' if figures['pass_medium'] else 'MISS'}")
    print(f"seconds of each run (whole process / the ETL's own 'seconds'): 1a {figures['1a_seconds_each']} / "
          f"{figures['1a_etl_seconds_each']}; 1b {figures['1b_seconds_each']} / {figures['1b_etl_seconds_each']}; "
          f"2 {figures['2_etl_seconds_each']} / {figures['2_etl_own_seconds_each']}; ceiling "
          f"{figures['2_ceiling_seconds_each']}, without the client index "
          f"{figures['2_ceiling_without_client_index_seconds_each']}")
    print(f"loading the {args.big:,} rows of (1b) (untimed setup, same command): {big_seconds:.1f} s")
    print("checks: " + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in checks.items()))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, indent=2))
    if not all(checks.values()):
        raise SystemExit("correctness checks failed: " + ", ".join(k for k, v in checks.items() if not v))


if __name__ == "__main__":
    main()
