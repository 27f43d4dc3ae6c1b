"""The dashboard as a service of the local stack: `clickstream up` starts shiny/app.py on 127.0.0.1 as
dashboard_reader, `status --json` shows dashboard_url, `down` stops it by pid; `clickstream dashboard` and its --r."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from clickstream.local import stack
from clickstream.local.dashboard import DSN_ENV, R_PACKAGES
from clickstream.local.stack import free_port, stop_process, wait_until

pytestmark = pytest.mark.integration


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clickstream.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def process_environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


def test_up_starts_it_status_shows_its_url_and_down_stops_it():
    with stack.private_stack() as settings:
        env = {"CLICKSTREAM_HOME": str(settings.home),
               **{var: str(getattr(settings, field)) for field, var in settings.PORT_ENV.items()}}
        status = json.loads(cli("status", "--json", env=env).stdout)
        assert status["dashboard_url"] == f"http://127.0.0.1:{settings.dashboard_port}"
        assert status["services"]["dashboard"]["healthy"] is True
        page = httpx.get(status["dashboard_url"], timeout=10)
        assert page.status_code == 200 and 'id="kpi_events"' in page.text and 'id="date_range"' in page.text
        svc = stack.read_state(settings)["services"]["dashboard"]
        assert svc["cmdline"][1:3] == ["-m", "clickstream.local.dashboard"]
        assert process_environ(svc["pid"])[DSN_ENV] == stack.warehouse_dsn(settings, "dashboard_reader")

        result = cli("down", env=env)
        assert result.returncode == 0 and f"stopped dashboard (pid {svc['pid']})" in result.stdout
        assert not stack.owns(settings, "dashboard", svc) and not stack.http_ok(status["dashboard_url"])
        assert "dashboard" not in stack.read_state(settings)["services"]


def test_only_the_reader_role_is_in_the_dashboards_environment(local_stack):
    pid = stack.read_state(local_stack)["services"]["dashboard"]["pid"]
    environ = "\n".join(process_environ(pid).values())
    passwords = json.loads((local_stack.home / "credentials" / "dw.json").read_text())
    assert passwords["dashboard_reader"] in environ
    assert passwords["etl_writer"] not in environ and passwords["sbw_reader"] not in environ


def test_the_dashboard_command_says_where_the_running_one_is(local_stack):
    result = cli("dashboard")
    assert result.returncode == 0, result.stderr
    assert f"the dashboard runs at http://127.0.0.1:{local_stack.dashboard_port}" in result.stdout


def test_the_dashboard_command_runs_the_app_in_the_foreground_on_another_port(local_stack, tmp_path):
    port = free_port()
    log_file = tmp_path / "dashboard.log"
    with open(log_file, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "clickstream.cli", "dashboard", "--port", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until(lambda: stack.http_ok(url), "clickstream dashboard", log_file, process)
        assert httpx.get(url, timeout=10).status_code == 200
        assert f"Python dashboard: http://127.0.0.1:{port}" in log_file.read_text()
    finally:
        stop_process(process.pid, timeout=10)
    assert not stack.http_ok(url)


def test_the_r_dashboard_without_rscript_says_how_to_install_r(local_stack, tmp_path):
    result = cli("dashboard", "--r", env={"PATH": str(tmp_path)})
    assert result.returncode == 1
    assert "Rscript is not on PATH" in result.stderr
    assert f"apt-get install -y --no-install-recommends {' '.join(R_PACKAGES)}" in result.stderr


def test_a_taken_port_is_refused_with_the_option_to_change(local_stack):
    result = cli("dashboard", "--port", str(local_stack.api_port))
    assert result.returncode == 1 and f"port {local_stack.api_port}" in result.stderr and "--port" in result.stderr


def test_a_killed_dashboard_shows_unhealthy_and_up_starts_it_again(local_stack):
    before = stack.read_state(local_stack)["services"]["dashboard"]
    others = {name: svc["pid"] for name, svc in stack.status(local_stack)["services"].items() if name != "dashboard"}
    os.kill(before["pid"], signal.SIGKILL)
    stop_process(before["pid"], timeout=10)  # reaps it if it is our child
    health = stack.service_health(local_stack, ("dashboard",))["dashboard"]
    assert health == {"healthy": False, "port": local_stack.dashboard_port, "pid": None}

    after = stack.up(local_stack)["services"]["dashboard"]
    assert after["healthy"] and after["pid"] != before["pid"]
    page = httpx.get(local_stack.dashboard_url, timeout=10)
    assert page.status_code == 200 and 'id="kpi_events"' in page.text
    still = {name: svc["pid"] for name, svc in stack.status(local_stack)["services"].items() if name != "dashboard"}
    assert still == others and all(others.values()), "up starts only what is down"
