"""Latency of the dashboards' queries (clickstream.analytics.dashboard, sql/analytics/dashboard/) under every filter.

Data: the query benchmark's (benchmarks/query_latency.py: the simulated shop, seed 42, `--days` days from
2026-11-16, about `--events` events, loaded by the ETL's own code into a private local stack on free ports, the
rollups refreshed, VACUUM ANALYZEd), or with `--reader-dsn` a warehouse that already holds them (read as it is,
nothing written), or with `--home HOME` the warehouse of a kept stack folder (`query_latency.py --keep HOME`),
started on free ports if it is not running and stopped again.

Each function runs over the whole simulated range as dashboard_reader on one open connection, for every
combination of login state, device and bots (and each breakdown and grain) in UTC, and in each other time zone
of `--tz` (whole-hour offsets from -11 to +14 by default) with no filter and with all three: `--repeat` runs
of each, after one warm-up. Printed per function: median and
p95 in milliseconds over all its runs, and the worst combination's p95; then the same for Asia/Kolkata (not a
whole number of hours from UTC: the events table answers) with `--raw-repeat` runs of the default filters.

    .venv/bin/python benchmarks/dashboard_queries.py [--events 1000000] [--days 7] [--repeat 3] [--raw-repeat 3]
                                                     [--reader-dsn DSN | --home HOME] [--json out.json]

Target (issue 14): each query <= 200 ms p95 at 10M events, for every filter and whole-hour time zone.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import query_latency  # noqa: E402  (the query benchmark's data)

from clickstream.analytics import dashboard, questions, rollups  # noqa: E402
from clickstream.analytics.dashboard import Filters  # noqa: E402
from clickstream.local import stack  # noqa: E402
from clickstream.settings import Settings  # noqa: E402

TARGET_P95_MS = 200.0
ZONES = ("UTC", "Pacific/Pago_Pago", "America/New_York", "Europe/Paris", "Asia/Ho_Chi_Minh", "Pacific/Kiritimati")
RAW_ZONE = "Asia/Kolkata"


def calls(product_id: str) -> dict[str, Callable[[psycopg.Connection, Filters], object]]:
    """One call per panel query; the funnel per breakdown and the trend per grain."""
    out: dict[str, Callable] = {"kpis": dashboard.kpis}
    for breakdown in dashboard.BREAKDOWNS:
        out[f"funnel ({breakdown})"] = lambda conn, f, b=breakdown: dashboard.funnel(conn, f, b)
    out["products"] = dashboard.products
    out["categories"] = dashboard.categories
    out["product_trend"] = lambda conn, f: dashboard.product_trend(conn, f, product_id)
    for grain in dashboard.GRAINS:
        out[f"trend ({grain})"] = lambda conn, f, g=grain: dashboard.trend(conn, f, g)
    out["heatmap"] = dashboard.heatmap
    out["data_range"] = lambda conn, f: dashboard.data_range(conn, f.tz)
    return out


def filters(start: date, end: date, zones: tuple[str, ...]) -> Iterator[Filters]:
    """Every combination of login state, device and bots in the first zone; in each other zone, no filter and
    all three."""
    for login, device, bots in itertools.product(dashboard.LOGIN_STATES, dashboard.DEVICES, (False, True)):
        yield Filters(start, end, tz=zones[0], login_state=login, device=device, include_bots=bots)
    for tz in zones[1:]:
        yield Filters(start, end, tz=tz)
        yield Filters(start, end, tz=tz, login_state="signed_in", device="mobile", include_bots=True)


def timed(ask: Callable[[], object], repeat: int) -> list[float]:
    ask()  # warm-up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        ask()
        times.append((time.perf_counter() - started) * 1000)
    return times


def measure(reader_dsn: str, start: date, end: date, zones: tuple[str, ...], repeat: int, raw_repeat: int) -> dict:
    with questions.read_only(reader_dsn) as conn:
        conn.autocommit = True
        if dashboard.source(conn, Filters(start, end)) != "rollup":
            raise RuntimeError("the rollups are not fresh for this range: refresh them first")
        top = dashboard.products(conn, Filters(start, end))
        product_id = top["product_id"].iloc[0]
        results = []
        for name, call in calls(product_id).items():
            per_case = [timed(lambda f=f: call(conn, f), repeat) for f in filters(start, end, zones)]
            every = [t for times in per_case for t in times]
            raw = timed(lambda: call(conn, Filters(start, end, tz=RAW_ZONE)), raw_repeat)
            results.append({"query": name, "median_ms": round(statistics.median(every), 1),
                            "p95_ms": round(query_latency.percentile(every, 95), 1),
                            "worst_case_p95_ms": round(max(query_latency.percentile(t, 95) for t in per_case), 1),
                            "cases": len(per_case), "raw_kolkata_median_ms": round(statistics.median(raw), 1)})
            print(f"{name}: {results[-1]}", flush=True)
    return {"queries": results, "slowest_p95_ms": max(r["worst_case_p95_ms"] for r in results if r["query"]
                                                      != "data_range"), "target_p95_ms": TARGET_P95_MS}


def table(results: list[dict]) -> str:
    lines = ["| query | median ms | p95 ms | worst filter p95 ms | filter cases | Asia/Kolkata (raw) median ms |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['query']} | {r['median_ms']} | {r['p95_ms']} | {r['worst_case_p95_ms']} | {r['cases']} | "
              f"{r['raw_kolkata_median_ms']} |" for r in results]
    return "\n".join(lines)


@contextmanager
def kept_stack(home: Path) -> Iterator[Settings]:
    """The stack of `home`, started on free ports when it is not running and then stopped again."""
    env = {"CLICKSTREAM_HOME": str(home.resolve()), "CLICKSTREAM_TARGET": "local"}
    settings = Settings.from_env(env)
    if stack.read_state(settings).get("services"):
        yield settings
        return
    settings = Settings.from_env({**env, **{var: str(stack.free_port()) for var in Settings.PORT_ENV.values()}})
    try:
        stack.up(settings)
        yield settings
    finally:
        stack.down(settings)


@contextmanager
def loaded_stack(events: int, days: int, workers: int) -> Iterator[tuple[Settings, str, dict]]:
    """A private stack holding the query benchmark's data, rollups refreshed: (its settings, reader DSN, figures)."""
    config = query_latency.sized_config(events, days)
    with query_latency.private_stack() as settings:
        passwords = json.loads((settings.home / "credentials" / "dw.json").read_text())
        role_dsn = {role: query_latency.dsn(settings.host, settings.dw_port, query_latency.WAREHOUSE_DB, role,
                                            passwords[role])
                    for role in (query_latency.ETL_WRITER, query_latency.DASHBOARD_READER)}
        figures = query_latency.generate_bulk(settings, role_dsn[query_latency.ETL_WRITER], config, workers,
                                              query_latency.CHUNK_ROWS)
        figures.update(query_latency.refresh(role_dsn[query_latency.ETL_WRITER]))
        admin = query_latency.status(settings)["dw_admin_dsn"]
        with psycopg.connect(admin, autocommit=True) as conn:
            for name in ("clickstream_events", *rollups.ROLLUP_TABLES):
                conn.execute(f"VACUUM ANALYZE {name}")
            figures["table_rows"] = {name: conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
                                     for name in ("clickstream_events", *rollups.ROLLUP_TABLES)}
        yield settings, role_dsn[query_latency.DASHBOARD_READER], figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="about how many events (default 1,000,000)")
    parser.add_argument("--days", type=int, default=7, help="simulated days from 2026-11-16 (default 7)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per query and filter case (default 3)")
    parser.add_argument("--raw-repeat", type=int, default=3, help="runs of each Asia/Kolkata query (default 3)")
    parser.add_argument("--tz", nargs="+", default=list(ZONES), help="time zones (whole-hour offsets)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="bulk load processes")
    parser.add_argument("--reader-dsn", help="measure this warehouse as it is (dashboard_reader) instead")
    parser.add_argument("--home", type=Path, help="or the warehouse of this stack folder (query_latency.py --keep "
                                                  "HOME), started if it is not running and stopped again")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    start, end = query_latency.START, query_latency.START + timedelta(days=args.days - 1)
    if args.reader_dsn:
        figures = {"reader_dsn_given": True}
        figures.update(measure(args.reader_dsn, start, end, tuple(args.tz), args.repeat, args.raw_repeat))
    elif args.home:
        with kept_stack(args.home) as settings:
            figures = {"home": str(args.home)}
            figures.update(measure(stack.warehouse_dsn(settings, "dashboard_reader"), start, end, tuple(args.tz),
                                   args.repeat, args.raw_repeat))
    else:
        with loaded_stack(args.events, args.days, args.workers) as (_, reader, figures):
            print(f"data: {figures}", flush=True)
            figures.update(measure(reader, start, end, tuple(args.tz), args.repeat, args.raw_repeat))
    print()
    print(table(figures["queries"]))
    print(f"\nslowest query (worst filter case) p95: {figures['slowest_p95_ms']} ms "
          f"(target {TARGET_P95_MS:.0f} ms at 10M events)")
    if args.json:
        Path(args.json).write_text(json.dumps({"events": args.events, "days": args.days, "repeat": args.repeat,
                                               "tz": args.tz, **figures}, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
