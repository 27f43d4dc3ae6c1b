"""lambdas/etl/handler.py as the Lambda runtime loads it: settings from the template's environment, the DW
connection from Secrets Manager, the event turned into a run of `clickstream.analytics.etl.run_etl`."""

from __future__ import annotations

import json
import os
import pickle
import sys
import types
from datetime import date
from pathlib import Path

import pytest
from moto import mock_aws

from clickstream.analytics import etl
from clickstream.local.lambda_runtime import load_module
from clickstream.analytics.secrets import SecretError, dw_etl_writer_value
from event_samples import load_sample

HANDLER_PATH = Path(__file__).resolve().parents[2] / "lambdas" / "etl" / "handler.py"
SECRET = "clickstream/dw/etl_writer-unit"
TEMPLATE_ENV = {"RAW_BUCKET": "clickstream-s3-ingest-unit", "RAW_PREFIX": "events/", "DW_SECRET_ID": SECRET,
                "LOOKBACK_DAYS": "5"}


def load_handler_module():
    return load_module(HANDLER_PATH, "etl_handler_under_test")


@pytest.fixture
def handler_module(monkeypatch, aws_credentials):
    for name in [*TEMPLATE_ENV, "ETL_WORKERS"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLICKSTREAM_TARGET", "aws")
    return load_handler_module()


@pytest.fixture
def runs(handler_module, monkeypatch):
    """The template's environment, the DW secret in a moto mock, and run_etl replaced by a recorder."""
    for name, value in TEMPLATE_ENV.items():
        monkeypatch.setenv(name, value)
    calls = []

    def fake_run_etl(s3, bucket, dw_dsn, request, options):
        calls.append({"bucket": bucket, "dsn": dw_dsn, "request": request, "options": options})
        return {"objects_listed": 0, "loaded": 0}

    monkeypatch.setattr(etl, "run_etl", fake_run_etl)
    with mock_aws():
        handler_module.secrets_client().create_secret(
            Name=SECRET, SecretString=json.dumps(dw_etl_writer_value("s3cret", "10.0.2.15", 5432, None)))
        yield calls


def test_import_needs_no_settings_or_credentials(handler_module):
    assert handler_module.settings.cache_info().currsize == 0
    assert handler_module.s3_client.cache_info().currsize == 0
    assert handler_module.secrets_client.cache_info().currsize == 0


def test_a_scheduled_event_is_a_default_run_over_the_templates_lookback(handler_module, runs, lambda_context):
    result = handler_module.handler(load_sample("eventbridge_scheduled.json"), lambda_context)
    assert result == {"objects_listed": 0, "loaded": 0}
    (call,) = runs
    options = call["options"]
    assert call["bucket"] == "clickstream-s3-ingest-unit" and options.raw_prefix == "events/"
    assert call["request"] == etl.EtlRequest(lookback_days=5.0)
    assert "password=s3cret" in call["dsn"] and "host=10.0.2.15" in call["dsn"] and "user=etl_writer" in call["dsn"]
    assert options.remaining_ms == lambda_context.get_remaining_time_in_millis
    assert options.progress is None
    assert options.workers == 1, "one process unless ETL_WORKERS says otherwise"
    worker_s3 = pickle.loads(pickle.dumps(options.s3_factory))()  # what a worker process gets, and makes
    assert worker_s3.meta.service_model.service_name == "s3"
    assert worker_s3.meta.region_name == handler_module.s3_client().meta.region_name


@pytest.mark.parametrize(("value", "workers"), [("1", 1), ("3", 3), (" auto ", None), ("AUTO", None)])
def test_etl_workers_sets_the_processes(handler_module, runs, lambda_context, monkeypatch, value, workers):
    monkeypatch.setenv("ETL_WORKERS", value)
    handler_module.handler({}, lambda_context)
    assert runs[0]["options"].workers == (workers or os.cpu_count())


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", ""])
def test_a_bad_etl_workers_is_refused_with_its_value(handler_module, runs, lambda_context, monkeypatch, value):
    monkeypatch.setenv("ETL_WORKERS", value)
    with pytest.raises(ValueError, match=f"ETL_WORKERS must be auto or a whole number from 1, not {value!r}"):
        handler_module.handler({}, lambda_context)
    assert runs == []


@pytest.mark.parametrize(("event", "expected"), [
    ({}, etl.EtlRequest(lookback_days=5.0)),
    (None, etl.EtlRequest(lookback_days=5.0)),
    ({"date": "2026-11-24"}, etl.EtlRequest(date=date(2026, 11, 24))),
    ({"prefix": "events/2026/11/24/09/"}, etl.EtlRequest(prefix="events/2026/11/24/09/")),
    ({"lookback_days": 1}, etl.EtlRequest(lookback_days=1.0)),
    ({"hoursBack": 6}, etl.EtlRequest(lookback_days=0.25)),
])
def test_the_event_chooses_the_run(handler_module, runs, lambda_context, event, expected):
    handler_module.handler(event, lambda_context)
    (call,) = runs
    assert call["request"] == expected


def test_a_bad_event_is_refused_before_anything_runs(handler_module, runs, lambda_context):
    with pytest.raises(etl.EtlRequestError, match="unknown keys day"):
        handler_module.handler({"day": "2026-11-24"}, lambda_context)
    assert runs == []


def test_a_progress_callback_given_to_the_handler_reaches_the_etl(handler_module, runs, lambda_context):
    seen = []
    handler_module.handler({}, lambda_context, progress=seen.append)
    assert runs[0]["options"].progress == seen.append


def test_without_the_secret_nothing_runs_and_the_error_says_why(handler_module, monkeypatch, lambda_context):
    for name, value in TEMPLATE_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(etl, "run_etl", lambda *a, **k: pytest.fail("run_etl must not be called"))
    with mock_aws(), pytest.raises(SecretError, match=f"secret {SECRET} not found"):
        handler_module.handler({}, lambda_context)


def test_missing_settings_are_loud(handler_module, lambda_context):
    with pytest.raises(ValueError, match="RAW_BUCKET, DW_SECRET_ID not set"):
        handler_module.handler({}, lambda_context)


def test_settings_end_the_raw_prefix_with_a_slash_and_default_what_the_template_may_leave_out():
    settings = etl.EtlSettings.from_env({"RAW_BUCKET": " raw ", "DW_SECRET_ID": "dw", "RAW_PREFIX": "landing",
                                         "LOOKBACK_DAYS": "0.5", "ETL_WORKERS": "2"})
    assert settings == etl.EtlSettings(raw_bucket="raw", raw_prefix="landing/", dw_secret_id="dw", lookback_days=0.5,
                                       workers=2)
    defaults = etl.EtlSettings.from_env({"RAW_BUCKET": "raw", "DW_SECRET_ID": "dw"})
    assert (defaults.raw_prefix, defaults.lookback_days, defaults.workers) == ("events/", etl.DEFAULT_LOOKBACK_DAYS, 1)


def test_a_lookback_that_is_not_a_number_is_refused_with_its_value():
    with pytest.raises(ValueError, match="LOOKBACK_DAYS must be a number, not 'three'"):
        etl.EtlSettings.from_env({"RAW_BUCKET": "raw", "DW_SECRET_ID": "dw", "LOOKBACK_DAYS": "three"})


def test_the_fork_server_preloads_the_package_and_an_importable_main_script(monkeypatch, tmp_path):
    script = tmp_path / "bench_script.py"
    script.write_text("")
    monkeypatch.setitem(sys.modules, "__main__", types.SimpleNamespace(__file__=str(script)))
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    preload = etl._forkserver_preload()
    assert {"clickstream.analytics.etl", "clickstream.aws", "bench_script", "boto3"} <= set(preload)
    monkeypatch.setattr(sys, "path", [entry for entry in sys.path if entry != str(tmp_path)])
    assert "bench_script" not in etl._forkserver_preload(), "a script that cannot be imported by name stays out"


@pytest.mark.parametrize(("objects", "chunk_objects", "workers", "size"), [
    (2000, 50, 2, 50),   # a big run keeps its chunks
    (200, 50, 2, 25),    # four chunks per worker, so the workers end together
    (40, 50, 2, 50),     # one chunk: no worker process is started for it
    (60, 50, 2, 10),     # never below 10 objects
    (4, 1, 2, 1),        # nor above what the caller asked for
    (200, 50, 1, 50),    # one process: chunk size as asked
])
def test_chunk_size_keeps_every_worker_busy_to_the_end(objects, chunk_objects, workers, size):
    from clickstream.analytics.etl import _chunk_size

    assert _chunk_size(objects, chunk_objects, workers) == size
