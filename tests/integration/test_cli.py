"""The `clickstream` console script as a learner runs it, against the test stack."""

import json
import os
import re
import subprocess
import sys


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clickstream.cli", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=300)


def test_help_lists_every_command():
    result = cli("--help")
    assert result.returncode == 0
    for command in ("up", "down", "status", "psql", "send", "raw", "demo", "deploy", "destroy"):
        assert re.search(rf"^\s+{command}\s", result.stdout, re.M), command


def test_demo_simulates_loads_reports_draws_and_matches_the_truth(local_stack, tmp_path):
    out = tmp_path / "demo"
    args = ("demo", "--days", "2", "--visitors", "60", "--seed", "5", "--start", "2023-01-02", "--out", str(out))
    result = cli(*args)
    assert result.returncode == 0, result.stderr
    assert "every count, the funnel, each product's figures and revenue, and the sessions match exactly" in result.stdout
    assert f"Output folder: {out.resolve()}" in result.stdout
    loaded = [int(n) for n in re.findall(r"^\s+2023-01-0[23]: +\d+ objects loaded, +\d+ already loaded, +(\d+) rows",
                                           result.stdout, re.M)]
    truth = json.loads((out / "truth.json").read_text())
    report = json.loads((out / "report.json").read_text())
    assert len(loaded) == 2 and sum(loaded) == truth["events"] + truth["bots"]["events"]
    assert sum(report["event_counts"].values()) == truth["events"]
    assert sorted(path.name for path in out.glob("*.png")) == sorted(
        ["funnel.png", "top_products.png", "activity_heatmap.png", "daily_events.png"])
    assert all(path.stat().st_size > 5000 for path in out.glob("*.png"))

    again = cli(*args)  # the same traffic again: nothing new to load, the same answers
    assert again.returncode == 0, again.stderr
    assert re.findall(r"(\d+) rows inserted", again.stdout) == ["0", "0"]
    assert json.loads((out / "report.json").read_text()) == report


def test_send_and_raw_json(local_stack):
    sent = json.loads(cli("send", "--events", "30", "--batch-size", "10", "--seed", "99", "--json").stdout)
    assert sent["accepted"] == 30 and sent["requests"] == 3 and len(sent["object_keys"]) == 3
    listed = {o["key"] for o in json.loads(cli("raw", "--json").stdout)}
    assert set(sent["object_keys"]) <= listed


def test_bad_settings_and_the_unbuilt_aws_target_give_one_clear_line():
    for env, expected in (({"CLICKSTREAM_API_PORT": "abc"}, "CLICKSTREAM_API_PORT must be a port number"),
                          ({"CLICKSTREAM_TARGET": "gcp"}, "target must be one of"),
                          ({"CLICKSTREAM_TARGET": "aws"}, "clickstream deploy")):
        result = subprocess.run([sys.executable, "-m", "clickstream.cli", "status"], capture_output=True, text=True,
                                env={**os.environ, **env}, timeout=60)
        assert result.returncode == 1 and expected in result.stderr and "Traceback" not in result.stderr, env


def test_report_on_dates_past_the_calendar_is_one_line_not_a_traceback(local_stack):
    for args in (("--to", "9999-12-31"), ("--from", "0001-01-01", "--to", "0001-01-07", "--tz", "Asia/Tokyo"),
                 ("--from", "9999-12-30")):
        result = cli("report", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr and "beyond" in result.stderr, (args, result.stderr)


def test_report_on_the_first_representable_day_answers(local_stack):
    result = cli("report", "--from", "0001-01-01", "--to", "0001-01-01", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["start"] == "0001-01-01T00:00:00+00:00"
