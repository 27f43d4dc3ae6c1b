"""`clickstream up/status/down` on the real local stack: moto server, two PostgreSQL clusters, the HTTP API."""

import json
import os
import socket
import subprocess
import sys

import psutil
import psycopg
import pytest

from clickstream import aws
from clickstream.local import stack
from clickstream.local.stack import free_port
from clickstream.local.postgres import PortInUseError
from clickstream.settings import Settings


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clickstream.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_status_json_reports_endpoints_dsns_and_health(local_stack):
    result = cli("status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["healthy"] is True
    healthy = {name for name, svc in status["services"].items() if svc["healthy"]}
    assert healthy == {"aws", "api", "dw", "oltp", "storefront", "dashboard"}
    assert status["api_url"] == f"http://127.0.0.1:{local_stack.api_port}"
    assert status["aws_endpoint_url"] == f"http://127.0.0.1:{local_stack.aws_port}"
    assert status["raw_bucket"] == "clickstream-s3-ingest-local"
    with psycopg.connect(status["dw_dsn"]) as conn:
        assert conn.execute("select current_user, current_database()").fetchone() == ("dashboard_reader", "clickstream_dw")
    with psycopg.connect(status["dw_admin_dsn"]) as conn:
        assert conn.execute("select rolsuper from pg_roles where rolname = current_user").fetchone() == (True,)
    assert "postgres" not in status["dw_dsn"].split("@")[0], "the dashboard DSN must not be the superuser"


def test_the_raw_bucket_from_the_template_exists_encrypted(local_stack):
    s3 = aws.client("s3", local_stack)
    rules = s3.get_bucket_encryption(Bucket="clickstream-s3-ingest-local")["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_second_up_is_a_no_op(local_stack):
    before = {n: s["pid"] for n, s in stack.status(local_stack)["services"].items()}
    after = {n: s["pid"] for n, s in stack.up(local_stack)["services"].items()}
    assert before == after and all(before.values())


def test_oltp_credentials_are_not_in_status_and_dw_roles_cannot_reach_oltp(local_stack):
    status = stack.status(local_stack)
    oltp_passwords = json.loads((local_stack.home / "credentials" / "oltp.json").read_text())
    assert not any(pw in json.dumps(status) for pw in oltp_passwords.values())
    reader_pw = json.loads((local_stack.home / "credentials" / "dw.json").read_text())["dashboard_reader"]
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host="127.0.0.1", port=local_stack.oltp_port, dbname="shop_oltp",
                        user="dashboard_reader", password=reader_pw, connect_timeout=5)


def test_credentials_files_are_private(local_stack):
    for name in ("dw", "oltp"):
        assert oct((local_stack.home / "credentials" / f"{name}.json").stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("service", ["api", "storefront"])
def test_a_port_taken_by_another_program_is_named_with_its_setting(tmp_path, service):
    tmp_path.chmod(0o755)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = {f"{name}_port": free_port() for name in ("aws", "api", "storefront", "dw", "oltp")}
        ports[f"{service}_port"] = taken
        settings = Settings.from_env({"CLICKSTREAM_HOME": str(tmp_path)}, **ports)
        with pytest.raises(PortInUseError, match=rf"{taken}.*(--{service}-port|CLICKSTREAM_{service.upper()}_PORT)"):
            stack.up(settings)
        assert stack.read_state(settings).get("services", {}) == {}, "nothing may be started before the check"
        result = cli("--home", str(tmp_path), "up", *(part for name, port in ports.items()
                                                     for part in (f"--{name.replace('_', '-')}", str(port))))
        assert result.returncode != 0 and str(taken) in result.stderr and "Traceback" not in result.stderr


def test_etl_names_the_services_it_needs_when_they_are_down(tmp_path):
    tmp_path.chmod(0o755)
    ports = {var: str(free_port()) for var in Settings.PORT_ENV.values()}
    result = cli("--home", str(tmp_path), "etl", env={**ports, "CLICKSTREAM_TARGET": "local"})
    assert result.returncode == 1
    assert "aws and dw not running: start the local stack with `clickstream up`" in result.stderr
    assert "Traceback" not in result.stderr


def test_service_health_asks_only_the_named_services(local_stack):
    health = stack.service_health(local_stack, ("dw", "aws"))
    assert list(health) == ["dw", "aws"]
    assert all(service["healthy"] and service["pid"] for service in health.values())
    assert health["dw"]["port"] == local_stack.dw_port and health["aws"]["port"] == local_stack.aws_port


def test_two_ups_at_once_start_one_stack(tmp_path):
    tmp_path.chmod(0o755)
    env = {"CLICKSTREAM_HOME": str(tmp_path), "CLICKSTREAM_TARGET": "local",
           **{var: str(free_port()) for var in Settings.PORT_ENV.values()}}
    settings = Settings.from_env(env)
    try:
        ups = [subprocess.Popen([sys.executable, "-m", "clickstream.cli", "up", "--json"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env={**os.environ, **env}) for _ in range(2)]
        results = [(up.communicate(timeout=300), up.returncode) for up in ups]
        assert [code for _, code in results] == [0, 0], [err[-2000:] for (_, err), _ in results]
        first, second = (json.loads(out)["services"] for (out, _), _ in results)
        assert {n: s["pid"] for n, s in first.items()} == {n: s["pid"] for n, s in second.items()}
        for name in ("aws", "api", "storefront", "dashboard"):
            port = str(getattr(settings, f"{name}_port"))
            running = [p.pid for p in psutil.process_iter(["cmdline"])
                       if p.info["cmdline"] and "--port" in p.info["cmdline"] and port in p.info["cmdline"]]
            assert running == [first[name]["pid"]], f"{name}: {running}"
    finally:
        stack.down(settings)
