"""The ETL wired as the analytics template says, on the test stack: the DW secret in the local endpoint,
`clickstream etl` through the local Lambda runtime, and the local schedule (`up --schedule` / `down`).

Events are written into UTC days of this module's own (2029), so other tests' objects are never in its runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from clickstream import aws
from clickstream.local import scheduler
from clickstream.shop import samples, tracker
from clickstream.ingestion.ingest import IngestSettings, ServerContext, ingest_batch
from clickstream.local import stack
from clickstream.local.stack import private_stack
from clickstream.analytics.secrets import SecretError, dsn_from_secret

SUMMARY_KEYS = {"objects_listed", "loaded", "skipped", "rows_inserted", "duplicates", "rejected", "seconds", "remaining",
                "rollup_days_refreshed"}
DAY = datetime(2029, 6, 10, 12, 30, tzinfo=timezone.utc)


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clickstream.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


@pytest.fixture(scope="module")
def status(local_stack) -> dict:
    return stack.status(local_stack)


@pytest.fixture(scope="module")
def secretsmanager(local_stack):
    return aws.client("secretsmanager", local_stack)


def stored_ids(admin_dsn: str, ids: list[str]) -> dict[str, str]:
    with psycopg.connect(admin_dsn) as conn:
        rows = conn.execute("SELECT event_id::text, source_key FROM clickstream_events WHERE event_id = ANY(%s::uuid[])",
                            (ids,)).fetchall()
    return dict(rows)


def write_raw(local_stack, status, received_at: datetime, count: int, seed: int) -> tuple[str, list[str]]:
    """One raw object of `count` valid events received at `received_at`, written as the ingest Lambda does."""
    events = samples.canonical_batch(count, seed)
    result = ingest_batch(events, ServerContext(request_id=str(uuid.uuid4())), aws.client("s3", local_stack),
                          IngestSettings(raw_bucket=status["raw_bucket"]), received_at)
    assert not result.rejected
    return result.object_key, [event["event_id"] for event in events]


def test_the_dw_secret_holds_etl_writers_local_credentials(local_stack, status, secretsmanager):
    value = json.loads(secretsmanager.get_secret_value(SecretId=status["dw_secret_id"])["SecretString"])
    passwords = json.loads((local_stack.home / "credentials" / "dw.json").read_text())
    assert status["dw_secret_id"] == "clickstream/dw/etl_writer-local"
    assert value == {"username": "etl_writer", "password": passwords["etl_writer"], "host": "127.0.0.1",
                     "port": local_stack.dw_port, "dbname": "clickstream_dw", "engine": "postgres",
                     "sslmode": "verify-full", "sslrootcert_pem": stack.clusters(local_stack)["dw"].ca_pem()}
    assert passwords["etl_writer"] not in json.dumps(status), "status never shows the ETL's password"


def test_dsn_from_the_secret_connects_as_etl_writer_who_cannot_create_tables(status, secretsmanager):
    dsn = dsn_from_secret(secretsmanager, status["dw_secret_id"])
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == ("etl_writer", "clickstream_dw")
        assert conn.execute("SELECT has_table_privilege('clickstream_events', 'INSERT')").fetchone() == (True,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE not_allowed (id int)")


def test_a_missing_secret_is_a_clear_error_and_up_writes_it_again(local_stack, status, secretsmanager):
    secretsmanager.delete_secret(SecretId=status["dw_secret_id"], ForceDeleteWithoutRecovery=True)
    with pytest.raises(SecretError, match="not found: locally `clickstream up` creates it"):
        dsn_from_secret(secretsmanager, status["dw_secret_id"])
    result = cli("etl", "--json")
    assert result.returncode == 1 and "clickstream up" in result.stderr and "Traceback" not in result.stderr
    stack.up(local_stack)  # as after a moto restart, which forgets every secret
    assert "etl_writer" in dsn_from_secret(secretsmanager, status["dw_secret_id"])


def test_migrations_were_applied_by_up(status):
    with psycopg.connect(status["dw_admin_dsn"]) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions and versions[0].startswith("0001_")


def test_clickstream_etl_json_loads_a_day_exactly_once(local_stack, status):
    key, ids = write_raw(local_stack, status, DAY, 4, seed=401)
    result = cli("etl", "--date", DAY.strftime("%Y-%m-%d"), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert set(summary) == SUMMARY_KEYS
    assert (summary["objects_listed"], summary["loaded"], summary["rows_inserted"], summary["remaining"]) == (1, 1, 4, 0)
    assert stored_ids(status["dw_admin_dsn"], ids) == {event_id: key for event_id in ids}

    again = json.loads(cli("etl", "--date", DAY.strftime("%Y-%m-%d"), "--json").stdout)
    assert (again["loaded"], again["skipped"], again["rows_inserted"]) == (0, 1, 0)


def test_events_sent_through_the_api_land_in_the_warehouse_with_a_summary_table(status):
    events = samples.canonical_batch(3, 402)
    report = tracker.send_events(status["ingest_url"], events, batch_size=3)
    (key,) = report.object_keys
    result = cli("etl", "--prefix", key)
    assert result.returncode == 0, result.stderr
    assert "SBW_Lamda_ETL-local" in result.stdout
    assert [line.split() for line in result.stdout.splitlines() if "rows inserted" in line] == [["rows", "inserted", "3"]]
    assert "loading" in result.stderr, "a progress bar while chunks load"
    assert set(stored_ids(status["dw_admin_dsn"], [e["event_id"] for e in events]).values()) == {key}


def test_etl_refuses_unclear_requests_in_one_line():
    for args, message in ((("--date", "2029-13-01"), "is not a calendar date"),
                          (("--date", "2029-06-10", "--prefix", "events/"), "not both")):
        result = cli("etl", *args)
        assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_the_schedule_of_the_template_runs_the_etl_handler_with_a_scheduled_event(local_stack, status):
    # Given a day of raw objects within the lookback of a default run
    key, ids = write_raw(local_stack, status, datetime.now(timezone.utc) - timedelta(days=1), 2, seed=403)
    # When the scheduler's job for the template's rule comes due
    start = datetime.now(timezone.utc)
    (job,) = scheduler.build_jobs(local_stack, start=start)
    assert (job.rule, job.expression.text, job.function) == ("clickstream-etl-local", "rate(1 hour)", "SBW_Lamda_ETL-local")
    assert job.next_run - start.replace(microsecond=0) == timedelta(hours=1)
    clock = {"now": job.next_run}
    (ran,) = scheduler.Scheduler([job], now=lambda: clock["now"]).run_due()
    # Then the handler ran a default run (a scheduled event is {}) and loaded them
    assert ran.last_run["ok"] is True, ran.last_run
    assert set(ran.last_run["result"]) == SUMMARY_KEYS
    assert stored_ids(status["dw_admin_dsn"], ids) == {event_id: key for event_id in ids}


def test_up_schedule_starts_a_recorded_scheduler_that_status_reports_and_down_stops(tmp_path):
    with private_stack() as settings:
        env = {"CLICKSTREAM_HOME": str(settings.home), "CLICKSTREAM_TARGET": "local",
               **{var: str(getattr(settings, field)) for field, var in settings.PORT_ENV.items()}}
        result = cli("up", "--schedule", env=env)
        assert result.returncode == 0, result.stderr
        pid = stack.read_state(settings)["services"]["scheduler"]["pid"]
        assert stack.process_alive(pid, "clickstream.local.scheduler")

        reported = json.loads(cli("status", "--json", env=env).stdout)
        svc = reported["services"]["scheduler"]
        assert svc["healthy"] is True and svc["pid"] == pid and reported["healthy"] is True
        (job,) = svc["jobs"]
        assert (job["rule"], job["expression"], job["function"]) == ("clickstream-etl-local", "rate(1 hour)",
                                                                      "SBW_Lamda_ETL-local")
        assert "scheduler" in cli("status", env=env).stdout

        assert cli("up", env=env).returncode == 0, "a plain up leaves the recorded scheduler alone"
        assert stack.read_state(settings)["services"]["scheduler"]["pid"] == pid

        result = cli("down", env=env)
        assert result.returncode == 0 and f"stopped scheduler (pid {pid})" in result.stdout
        assert not stack.process_alive(pid, "clickstream.local.scheduler")
        assert "scheduler" not in stack.read_state(settings)["services"]
