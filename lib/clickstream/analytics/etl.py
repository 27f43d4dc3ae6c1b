"""The ETL: raw S3 objects -> clickstream_dw, exactly once, in chunks, within a time budget.

    settings = EtlSettings.from_env(os.environ)  # what the analytics template sets on the function
    request = parse_etl_event(event, default_lookback_days=settings.lookback_days)  # {}, {"date"}, {"prefix"}
    options = EtlOptions(raw_prefix=settings.raw_prefix, remaining_ms=context.get_remaining_time_in_millis)
    summary = run_etl(s3, settings.raw_bucket, dw_dsn, request, options)

`run_etl` lists the partitions (paginated), skips the objects whose key and etag are in the load log (one
query for the whole listing), then per chunk of objects: reads them, validates and transforms them
(`clickstream.analytics.transform`) and loads them in one transaction (`clickstream.analytics.warehouse.load_chunk`). Chunks
overlap, each on a connection of its own: with `workers=1` (as on Lambda) this process GETs the next chunk
while two threads transform and load earlier ones (one is transformed while the other waits on the DW);
with `workers` processes (a machine with cores to spare) each process GETs, transforms and loads whole
chunks, one per core, with an S3 client of its own made by `s3_factory`. It stops before a chunk when the
remaining time is under max(10 s, 2 x the slowest chunk so far) and reports how many objects are left; the
next run continues with them. Last, it refreshes the rollups of the days its rows fell on
(`clickstream.analytics.rollups`), so dashboards read fresh rollups.

One bad object never stops a run: what the contract refuses is quarantined by the transform, and data the
database itself refuses quarantines the events to blame (`warehouse.load_chunk_isolating`). Only infrastructure
faults (the warehouse or S3 unreachable, wrong credentials) fail a run, and then nothing of the failed chunks
is marked loaded. Concurrent runs are safe: each event id and each reject is written once.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.context
import multiprocessing.forkserver
import os
import re
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date as Date
from datetime import datetime, timedelta, timezone
from time import monotonic
from typing import Any

from clickstream.analytics import rollups, warehouse
from clickstream.ingestion import raw
from clickstream.analytics.transform import transform_body, user_agent_parsers

logger = logging.getLogger(__name__)

DEFAULT_LOOKBACK_DAYS = 3.0
MAX_LOOKBACK_DAYS = 366
DEFAULT_CHUNK_OBJECTS = 50  # objects of up to 500 events; a few chunks (~100 MB each parsed) are in memory at once
READ_THREADS = 4
MIN_CHUNKS_PER_WORKER = 4
MIN_CHUNK_OBJECTS = 10
MIN_MARGIN_MS = 10_000
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
SCHEDULED_EVENT_KEYS = {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}
# (our key, the original workshop's key)
EVENT_KEYS = (("date", "targetUtcDate"), ("prefix", "overridePrefix"), ("lookback_days", "hoursBack"))


class EtlRequestError(ValueError):
    """The invocation event asks for something the ETL cannot do; the message says what is wrong."""


@dataclass(frozen=True)
class EtlRequest:
    """What one run loads: one UTC day, one key prefix, or (neither) the last `lookback_days` of partitions."""

    date: Date | None = None
    prefix: str | None = None
    lookback_days: float = DEFAULT_LOOKBACK_DAYS

    def __post_init__(self) -> None:
        if self.date is not None and self.prefix is not None:
            raise EtlRequestError("give a date or a prefix, not both")


@dataclass(frozen=True)
class EtlSettings:
    """RAW_BUCKET, RAW_PREFIX, DW_SECRET_ID, LOOKBACK_DAYS and ETL_WORKERS, as analytics.yaml sets them."""

    raw_bucket: str
    raw_prefix: str
    dw_secret_id: str
    lookback_days: float
    workers: int = 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "EtlSettings":
        missing = [name for name in ("RAW_BUCKET", "DW_SECRET_ID") if not environ.get(name, "").strip()]
        if missing:
            raise ValueError(f"{', '.join(missing)} not set: the analytics template sets them on the function")
        prefix = environ.get("RAW_PREFIX", raw.RAW_PREFIX)
        try:
            lookback = float(environ.get("LOOKBACK_DAYS", DEFAULT_LOOKBACK_DAYS))
        except ValueError:
            raise ValueError(f"LOOKBACK_DAYS must be a number, not {environ['LOOKBACK_DAYS']!r}") from None
        return cls(
            raw_bucket=environ["RAW_BUCKET"].strip(),
            raw_prefix=prefix if prefix.endswith("/") else prefix + "/",
            dw_secret_id=environ["DW_SECRET_ID"].strip(),
            lookback_days=lookback,
            workers=parse_workers(environ.get("ETL_WORKERS", "1")),
        )


def parse_etl_event(
    event: Mapping[str, Any] | None, default_lookback_days: float = DEFAULT_LOOKBACK_DAYS
) -> EtlRequest:
    """The request in an invocation event; raises EtlRequestError with a readable message.

    Accepted: {} or an EventBridge scheduled event (a run over the last `default_lookback_days`, the template's
    LOOKBACK_DAYS in the handler), {"date": "YYYY-MM-DD"}, {"prefix": "events/2026/11/24/"}, {"lookback_days": 2},
    and the original workshop's {"targetUtcDate": "YYYY-MM-DD"}, {"overridePrefix": "..."}, {"hoursBack": 6}.
    """
    if event is None:
        return EtlRequest(lookback_days=default_lookback_days)
    if not isinstance(event, Mapping):
        raise EtlRequestError(f"the event must be a JSON object, not {type(event).__name__}")
    if event.get("detail-type") == "Scheduled Event" and set(event) <= SCHEDULED_EVENT_KEYS:
        return EtlRequest(lookback_days=default_lookback_days)
    known = {name for pair in EVENT_KEYS for name in pair}
    unknown = sorted(set(event) - known)
    if unknown:
        raise EtlRequestError(f"unknown keys {', '.join(unknown)}; accepted: date, prefix, lookback_days "
                              "(or targetUtcDate, overridePrefix, hoursBack)")
    values = {}
    for ours, theirs in EVENT_KEYS:
        given = [name for name in (ours, theirs) if event.get(name) is not None]
        if len(given) == 2:
            raise EtlRequestError(f"give {ours} or {theirs}, not both")
        if given:
            values[ours] = (given[0], event[given[0]])
    request: dict[str, Any] = {}
    if "date" in values:
        request["date"] = _parse_date(*values["date"])
    if "prefix" in values:
        name, prefix = values["prefix"]
        if not isinstance(prefix, str) or not prefix.strip():
            raise EtlRequestError(f"{name} must be a non-empty key prefix such as events/2026/11/24/")
        request["prefix"] = prefix
    if "lookback_days" in values:
        if "date" in values or "prefix" in values:
            raise EtlRequestError("a lookback applies only without a date or a prefix")
        name, amount = values["lookback_days"]
        days = _parse_lookback(name, amount)
        request["lookback_days"] = days / 24 if name == "hoursBack" else days
    elif not request:
        request["lookback_days"] = default_lookback_days
    return EtlRequest(**request)


def explain_etl_event(event: Mapping[str, Any] | None,
                      default_lookback_days: float = DEFAULT_LOOKBACK_DAYS) -> dict[str, Any]:
    """What `parse_etl_event` makes of `event`, as one table row: the date, the prefix, the lookback of a
    default run (None otherwise) and the error (None when the event is accepted)."""
    try:
        request = parse_etl_event(event, default_lookback_days)
    except EtlRequestError as error:
        return {"date": None, "prefix": None, "lookback_days": None, "error": str(error)}
    default_run = request.date is None and request.prefix is None
    return {"date": request.date, "prefix": request.prefix,
            "lookback_days": request.lookback_days if default_run else None, "error": None}


def _parse_date(name: str, value: Any) -> Date:
    if not isinstance(value, str) or not DATE_RE.match(value):
        raise EtlRequestError(f"{name} must be a date YYYY-MM-DD, not {value!r}")
    try:
        return Date.fromisoformat(value)
    except ValueError:
        raise EtlRequestError(f"{name} {value!r} is not a calendar date") from None


def _parse_lookback(name: str, value: Any) -> float:
    unit_max = MAX_LOOKBACK_DAYS * (24 if name == "hoursBack" else 1)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= unit_max:
        raise EtlRequestError(f"{name} must be a number above 0 and at most {unit_max}, not {value!r}")
    return float(value)


def parse_workers(value: str) -> int:
    """ETL_WORKERS: a count of processes, or `auto` for this machine's cores."""
    text = value.strip().lower()
    if text == "auto":
        return os.cpu_count() or 1
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"ETL_WORKERS must be auto or a whole number from 1, not {value!r}")
    return int(text)


def partition_prefixes(now: datetime, lookback_days: float, raw_prefix: str = raw.RAW_PREFIX) -> list[str]:
    """The partitions covering [now - lookback, now]: whole days when lookback is whole days, else hours."""
    start = now.astimezone(timezone.utc) - timedelta(days=lookback_days)
    end = now.astimezone(timezone.utc)
    if float(lookback_days).is_integer():
        step, moment, fmt = timedelta(days=1), start.replace(hour=0, minute=0, second=0, microsecond=0), "%Y/%m/%d/"
    else:
        step, moment, fmt = timedelta(hours=1), start.replace(minute=0, second=0, microsecond=0), "%Y/%m/%d/%H/"
    prefixes = []
    while moment <= end:
        prefixes.append(raw_prefix + moment.strftime(fmt))
        moment += step
    return prefixes


@dataclass(frozen=True)
class ChunkProgress:
    """Reported after each committed chunk (cumulative over the run)."""

    objects_done: int
    objects_to_load: int
    rows_inserted: int
    duplicates: int
    rejected: int
    chunk_seconds: float


@dataclass(frozen=True)
class EtlOptions:
    """How a run loads; the defaults suit a local run of one process.

    `raw_prefix`: where the raw partitions start (a date or a lookback lists partitions under it).
    `now`: the end of the lookback (default: the time of the run).
    `remaining_ms`: the time left, as Lambda's context.get_remaining_time_in_millis (default: no limit).
    `chunk_objects`: objects per chunk, each chunk one transaction.
    `progress`: called after each committed chunk with a ChunkProgress.
    `refresh_rollups`: with False, the days of the new rows stay pending for a later refresh.
    `workers` > 1 reads, transforms and loads up to that many chunks at once in worker processes, each with
    the S3 client `s3_factory()` makes (a picklable function, such as functools.partial(aws.client, "s3",
    settings)); each chunk is still one transaction, and an event id two chunks in flight both hold is
    inserted once.
    """

    raw_prefix: str = raw.RAW_PREFIX
    now: datetime | None = None
    remaining_ms: Callable[[], int] | None = None
    chunk_objects: int = DEFAULT_CHUNK_OBJECTS
    progress: Callable[[ChunkProgress], None] | None = None
    refresh_rollups: bool = True
    workers: int = 1
    s3_factory: Callable[[], Any] | None = None

    def __post_init__(self) -> None:
        if self.chunk_objects < 1:
            raise ValueError("chunk_objects must be at least 1")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.workers > 1 and self.s3_factory is None:
            raise ValueError("workers > 1 needs s3_factory: each worker process reads S3 with a client of its own")


def run_etl(
    s3: Any, bucket: str, dw_dsn: str, request: EtlRequest = EtlRequest(), options: EtlOptions = EtlOptions()
) -> dict[str, Any]:
    """Load the raw objects of `request` not loaded yet, in chunks of `options.chunk_objects` objects.

    Returns {objects_listed, loaded, skipped (already loaded, same etag), rows_inserted, duplicates,
    rejected, seconds, remaining (objects left for the next run when time ran short), rollup_days_refreshed
    (the UTC days whose rollups were recomputed after the loads: those of the new rows, and any left
    pending by an earlier run; with `refresh_rollups=False` they stay pending for a later refresh)}.

    Raises warehouse.WarehouseError when the DW cannot be reached (nothing is read or marked loaded) and
    lets S3 errors propagate; chunks committed before an error stay loaded and are skipped next time.
    """
    started = monotonic()
    if request.prefix is not None:
        prefixes = [request.prefix]
    elif request.date is not None:
        prefixes = [raw.day_prefix(request.date, options.raw_prefix)]
    else:
        prefixes = partition_prefixes(options.now or datetime.now(timezone.utc), request.lookback_days,
                                      options.raw_prefix)
    progress, workers, remaining_ms = options.progress, options.workers, options.remaining_ms
    totals = {"rows_inserted": 0, "duplicates": 0, "rejected": 0}
    with _cycle_collector_paused(), warehouse.connect(dw_dsn) as conn:
        listed = _list(s3, bucket, prefixes)
        already = warehouse.loaded_etags(conn, list(listed))
        todo = sorted(key for key, etag in listed.items() if already.get(key) != etag)
        loaded, slowest_ms = 0, 0.0
        chunks = list(_chunks(todo, _chunk_size(len(todo), options.chunk_objects, workers)))
        processes = min(workers, len(chunks))  # a run of one chunk starts no worker process
        slots = processes + 1 if processes > 1 else 2  # with processes, one chunk waits ready for a free worker
        with ThreadPoolExecutor(READ_THREADS) as readers, _chunk_executor(processes, options.s3_factory) as loaders:
            try:
                reads = _start_reads(readers, s3, bucket, chunks[0]) if chunks and processes <= 1 else []
                in_flight: deque[tuple[Future, int, float]] = deque()  # (the chunk's load, objects, submitted at)
                for index, chunk in enumerate(chunks):
                    while len(in_flight) >= slots:
                        size, seconds = _finish_load(in_flight.popleft(), totals, progress, loaded, len(todo))
                        loaded, slowest_ms = loaded + size, max(slowest_ms, seconds * 1000)
                    if remaining_ms is not None and remaining_ms() < max(MIN_MARGIN_MS, 2 * slowest_ms):
                        break
                    submitted = monotonic()
                    if processes > 1:
                        loading = loaders.submit(read_and_load_objects, dw_dsn, bucket, chunk)
                    else:
                        bodies = [read.result() for read in reads]
                        reads = _start_reads(readers, s3, bucket, chunks[index + 1]) if index + 1 < len(chunks) else []
                        loading = loaders.submit(load_objects, dw_dsn, chunk, bodies)
                    in_flight.append((loading, len(chunk), submitted))
                while in_flight:
                    loaded += _finish_load(in_flight.popleft(), totals, progress, loaded, len(todo))[0]
            finally:
                readers.shutdown(cancel_futures=True)
        refreshed = rollups.refresh_pending(conn) if options.refresh_rollups else []
    summary = {
        "objects_listed": len(listed),
        "loaded": loaded,
        "skipped": len(listed) - len(todo),
        **totals,
        "seconds": round(monotonic() - started, 3),
        "remaining": len(todo) - loaded,
        "rollup_days_refreshed": len(refreshed),
    }
    logger.info("ETL over %s: %s", ", ".join(prefixes[:2]) + (" ..." if len(prefixes) > 2 else ""), summary)
    return summary


@contextmanager
def _cycle_collector_paused() -> Iterator[None]:
    """Pause Python's cycle collector: parsed events hold no cycles (reference counting frees them), and a
    full collection would otherwise walk every parsed event in flight, again and again."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _start_reads(pool: ThreadPoolExecutor, s3: Any, bucket: str, keys: Sequence[str]) -> list[Future]:
    return [pool.submit(_read, s3, bucket, key) for key in keys]


def _finish_load(
    loading: tuple[Future, int, float],
    totals: dict[str, int],
    progress: Callable[[ChunkProgress], None] | None,
    loaded_before: int,
    objects_to_load: int,
) -> tuple[int, float]:
    """Wait for a chunk's load to commit, add its counts to `totals`, report progress; returns its size and
    its seconds from submission to commit."""
    future, size, submitted = loading
    for count in future.result().values():
        totals["rows_inserted"] += count.rows_inserted
        totals["duplicates"] += count.duplicates
        totals["rejected"] += count.rejected
    seconds = monotonic() - submitted
    if progress is not None:
        progress(ChunkProgress(objects_done=loaded_before + size, objects_to_load=objects_to_load,
                               chunk_seconds=seconds, **totals))
    return size, seconds


def _list(s3: Any, bucket: str, prefixes: Iterable[str]) -> dict[str, str]:
    """{key: etag without quotes} of every object under the prefixes (paginated)."""
    return {obj["Key"]: obj["ETag"].strip('"') for prefix in prefixes for obj in raw.list_objects(s3, bucket, prefix)}


def _read(s3: Any, bucket: str, key: str) -> tuple[str, bytes]:
    """(etag, body) of one object: the etag of the bytes read, which the load log records."""
    response = s3.get_object(Bucket=bucket, Key=key)
    return response["ETag"].strip('"'), response["Body"].read()


def load_objects(
    dw_dsn: str, keys: Sequence[str], reads: Iterable[tuple[str, bytes]], conn: Any = None
) -> dict[str, warehouse.LoadCounts]:
    """Transform the objects read ((etag, body) per key) and load them in one transaction, on `conn` or on a
    connection of its own; runs in a loader thread or worker process."""
    objects = []
    for key, (etag, body) in zip(keys, reads):
        transformed = transform_body(body, key)
        objects.append(warehouse.ObjectLoad(key, etag, transformed.rows, transformed.rejects))
    if conn is not None:
        return warehouse.load_chunk_isolating(conn, objects)
    with warehouse.connect(dw_dsn) as own:
        return warehouse.load_chunk_isolating(own, objects)


_worker: dict[str, Any] = {}  # in a worker process: "s3_factory"; made at its first chunk: "s3", "dw"


def read_and_load_objects(dw_dsn: str, bucket: str, keys: Sequence[str]) -> dict[str, warehouse.LoadCounts]:
    """In a worker process: GET the objects (READ_THREADS at a time, each transformed as soon as it and those
    before it are read) and load them like `load_objects`, on the worker's connection (one for all its
    chunks; a new one if it broke)."""
    if "s3" not in _worker:
        _worker["s3"] = _worker["s3_factory"]()  # here, not at start: its errors reach run_etl's caller
    if _worker.get("dw") is None or _worker["dw"].closed:
        _worker["dw"] = warehouse.connect(dw_dsn)
    s3 = _worker["s3"]
    with ThreadPoolExecutor(READ_THREADS, thread_name_prefix="etl-read") as readers:
        return load_objects(dw_dsn, keys, readers.map(lambda key: _read(s3, bucket, key), keys), _worker["dw"])


def _chunk_executor(workers: int, s3_factory: Callable[[], Any] | None) -> Executor:
    """Where chunks are transformed and loaded: `workers` processes, or (1) two threads of this process, so
    one chunk is transformed while the other waits on the DW."""
    if workers <= 1:
        return ThreadPoolExecutor(2, thread_name_prefix="etl-load")
    return ProcessPoolExecutor(workers, mp_context=worker_context(), initializer=_worker_started,
                               initargs=(s3_factory,))


def worker_context() -> multiprocessing.context.BaseContext:
    """Where the worker processes come from: copies of this process (fork) when it runs no other thread, else
    a fork server (a copy would hold for ever any lock another thread held at the fork).

    A copy starts at once: it has imported all a worker needs (the user-agent parsers are imported here,
    once) and its boto3 session has loaded the S3 model. From the fork server each worker waits for its
    imports (about half a CPU-second, on the run's critical path), runs the main script again and loads
    the S3 model."""
    if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods():
        user_agent_parsers()
        return multiprocessing.get_context("fork")
    return start_worker_server()


def start_worker_server() -> multiprocessing.context.ForkServerContext:
    """Start the fork server the worker processes come from, if it is not running yet, and return its context
    (worker_context's way when the process runs threads, where forking is not safe)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_forkserver_preload())
    multiprocessing.forkserver.ensure_running()
    return context


def _forkserver_preload() -> list[str]:
    """The modules the fork server imports for every worker: the ETL and its S3 client's modules, boto3, the
    user-agent parsers (imported lazily by the transform), plus
    the main script when it can be imported by name (a benchmark). multiprocessing runs the main script again
    in each worker (its own preload of "__main__" does nothing on Python 3.11: it asks for a key the
    preparation data does not have); with what the script imports already there, that costs milliseconds
    instead of half a CPU-second per worker (measured for `clickstream etl` and the benchmark)."""
    modules = [__name__, "clickstream.aws", "clickstream.settings"]
    main_file = getattr(sys.modules["__main__"], "__file__", None)
    if main_file and main_file.endswith(".py"):
        folder = os.path.dirname(os.path.abspath(main_file))
        if folder in {os.path.abspath(entry or os.curdir) for entry in sys.path}:
            modules.append(os.path.basename(main_file)[:-3])
    return [*modules, "boto3", "user_agents", "crawlerdetect"]


def _worker_started(s3_factory: Callable[[], Any]) -> None:
    """In a worker process: how to make its S3 client, no cycle collections (see `_cycle_collector_paused`), and
    exit when the process that started the run dies (a killed `clickstream etl` must not leave workers waiting
    for work forever)."""
    _worker["s3_factory"] = s3_factory
    gc.disable()
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True, name="etl-parent-watch").start()


def _exit_with(parent_sentinel: int) -> None:
    multiprocessing.connection.wait([parent_sentinel])
    os._exit(1)


def _chunk_size(objects: int, chunk_objects: int, workers: int) -> int:
    """`chunk_objects`, or fewer when a run of several chunks has too few for its workers to end together (the
    last chunk of one worker would keep the other cores idle): at least MIN_CHUNKS_PER_WORKER each."""
    if workers <= 1 or objects <= chunk_objects:
        return chunk_objects
    return min(chunk_objects, max(MIN_CHUNK_OBJECTS, -(-objects // (workers * MIN_CHUNKS_PER_WORKER))))


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
