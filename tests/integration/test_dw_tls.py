"""The warehouse over TLS, against real PostgreSQL servers (no mocks): the DW cluster serves TLS with its own CA,
etl_writer connects only over TLS (pg_hba hostssl), and the DW secret carries sslmode verify-full and the CA.

Clusters a test starts are stopped (pg_ctl stop, else by pid) in the fixture's teardown, even when it fails.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from clickstream import aws
from clickstream.analytics import secrets
from clickstream.local import stack
from clickstream.local.credentials import load_or_create
from clickstream.local.postgres import (
    BINDIR_ENV,
    DASHBOARD_READER,
    ETL_WRITER,
    WAREHOUSE_DB,
    WAREHOUSE_ROLES,
    Cluster,
    _run_as,
    ensure_certificates,
    pgserver_bindir,
    setup_warehouse,
)

pytestmark = pytest.mark.integration

IS_ROOT = os.geteuid() == 0
REFUSED = 'pg_hba.conf rejects connection for host "127.0.0.1", user "etl_writer"'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(cluster: Cluster) -> None:
    """pg_ctl stop (the postmaster by pid if that fails), and its /tmp fallback folder removed."""
    try:
        cluster.stop()
    except Exception:
        if cluster.pid:
            os.kill(cluster.pid, signal.SIGINT)
    if not cluster.dir.is_relative_to(cluster.base_dir):
        shutil.rmtree(cluster.dir.parent, ignore_errors=True)


@pytest.fixture
def clusters():
    started: list[Cluster] = []
    yield started
    for cluster in started:
        stop(cluster)


def warehouse(started: list[Cluster], base: Path, roles: tuple[str, ...] = (ETL_WRITER,)) -> tuple[Cluster, dict]:
    """A DW cluster as `clickstream up` makes it, set up with its roles; returns it and the passwords."""
    cluster = Cluster("dw", base / "pg" / "dw", free_port(), hostssl_roles=roles)
    started.append(cluster)
    cluster.ensure_started()
    passwords = load_or_create(base / "credentials" / "dw.json", WAREHOUSE_ROLES)
    setup_warehouse(cluster, passwords)
    return cluster, passwords


def connect(cluster: Cluster, user: str, password: str, **tls: str | None) -> psycopg.Connection:
    return psycopg.connect(secrets.dsn(cluster.host, cluster.port, WAREHOUSE_DB, user, password, **tls),
                           connect_timeout=10)


def encrypted(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0]


@pytest.fixture
def dw(clusters, tmp_path):
    tmp_path.chmod(0o755)  # as root, the postgres user must reach the cluster's folder
    return warehouse(clusters, tmp_path)


def test_etl_writer_connects_with_verify_full_against_the_clusters_ca(dw):
    cluster, passwords = dw
    ca = cluster.ca_pem()
    assert ca.startswith("-----BEGIN CERTIFICATE-----") and cluster.tls_warning() is None
    with connect(cluster, ETL_WRITER, passwords[ETL_WRITER], sslmode="verify-full", ca_pem=ca) as conn:
        assert encrypted(conn) is True
        assert conn.execute("SELECT current_user").fetchone()[0] == ETL_WRITER
    with cluster.connect_admin() as admin:
        assert admin.execute("SHOW ssl").fetchone()[0] == "on"
        assert admin.execute("SHOW ssl_library").fetchone()[0] == "OpenSSL"


def test_etl_writer_without_tls_is_refused_but_the_other_roles_connect_as_before(dw):
    cluster, passwords = dw
    with pytest.raises(psycopg.OperationalError, match=REFUSED):
        connect(cluster, ETL_WRITER, passwords[ETL_WRITER], sslmode="disable")
    with pytest.raises(psycopg.OperationalError, match='pg_hba.conf rejects connection for host "\\[local\\]", '
                                                       'user "etl_writer"'):
        psycopg.connect(f"host={cluster.socket_dir} port={cluster.port} dbname={WAREHOUSE_DB} user={ETL_WRITER} "
                        f"password={passwords[ETL_WRITER]}", connect_timeout=10)
    with connect(cluster, DASHBOARD_READER, passwords[DASHBOARD_READER], sslmode="disable") as conn:
        assert encrypted(conn) is False


def test_verify_full_with_another_ca_fails(dw, tmp_path):
    cluster, passwords = dw
    (tmp_path / "other").mkdir()
    ensure_certificates(tmp_path / "other", "clickstream local dw", ("127.0.0.1", "localhost"), _run_as())
    other = (tmp_path / "other" / "ca.crt").read_text()
    assert other != cluster.ca_pem()
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        connect(cluster, ETL_WRITER, passwords[ETL_WRITER], sslmode="verify-full", ca_pem=other)


def test_verify_full_checks_the_host_name(dw):
    cluster, passwords = dw
    dsn = secrets.dsn("localhost", cluster.port, WAREHOUSE_DB, ETL_WRITER, passwords[ETL_WRITER],
                      sslmode="verify-full", ca_pem=cluster.ca_pem())
    with psycopg.connect(dsn + " hostaddr=127.0.0.1", connect_timeout=10) as conn:  # a name the certificate has
        assert encrypted(conn)
    with pytest.raises(psycopg.OperationalError, match="does not match host name"):
        psycopg.connect(dsn.replace("host=localhost", "host=warehouse.invalid") + " hostaddr=127.0.0.1",
                        connect_timeout=10)


def test_tls_files_are_private_and_a_restart_keeps_the_ca(dw):
    cluster, passwords = dw
    server_uid = pwd.getpwnam("postgres").pw_uid if IS_ROOT else os.geteuid()
    assert stat.S_IMODE(cluster.tls_dir.stat().st_mode) == 0o700
    assert sorted(p.name for p in cluster.tls_dir.iterdir()) == ["ca.crt", "ca.key", "server.crt", "server.key"]
    for path in cluster.tls_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert path.stat().st_uid == server_uid, path
    ca, server = cluster.ca_pem(), (cluster.tls_dir / "server.crt").read_bytes()
    assert cluster.ensure_started() is False
    assert cluster.stop() is True and cluster.ensure_started() is True
    assert cluster.ca_pem() == ca and (cluster.tls_dir / "server.crt").read_bytes() == server
    with connect(cluster, ETL_WRITER, passwords[ETL_WRITER], sslmode="verify-full", ca_pem=ca) as conn:
        assert encrypted(conn)


def test_a_new_server_certificate_when_it_no_longer_matches_the_ca(dw):
    cluster, passwords = dw
    ca = cluster.ca_pem()
    cluster.stop()
    (cluster.tls_dir / "server.crt").unlink()
    assert cluster.ensure_started() is True
    assert cluster.ca_pem() == ca
    with connect(cluster, ETL_WRITER, passwords[ETL_WRITER], sslmode="verify-full", ca_pem=ca) as conn:
        assert encrypted(conn)


def test_a_running_cluster_made_without_tls_gets_it_at_the_next_start_call(clusters, tmp_path):
    tmp_path.chmod(0o755)
    old, passwords = warehouse(clusters, tmp_path, roles=())  # as an older `clickstream up` made it
    assert old.ca_pem() is None and not old.tls_dir.exists()
    with connect(old, ETL_WRITER, passwords[ETL_WRITER], sslmode="disable") as conn:
        assert encrypted(conn) is False
    pid = old.pid
    new = Cluster("dw", old.base_dir, old.port, hostssl_roles=(ETL_WRITER,))
    assert new.ensure_started() is False and new.pid == pid  # reloaded, not restarted
    with connect(new, ETL_WRITER, passwords[ETL_WRITER], sslmode="verify-full", ca_pem=new.ca_pem()) as conn:
        assert encrypted(conn)
    with pytest.raises(psycopg.OperationalError, match=REFUSED):
        connect(new, ETL_WRITER, passwords[ETL_WRITER], sslmode="disable")


@pytest.mark.skipif(pgserver_bindir() is None, reason="pgserver is not installed")
def test_a_postgresql_built_without_ssl_serves_plain_tcp_and_says_so(clusters, tmp_path, monkeypatch):
    monkeypatch.setenv(BINDIR_ENV, str(pgserver_bindir()))
    tmp_path.chmod(0o755)
    cluster, passwords = warehouse(clusters, tmp_path)
    assert cluster.ca_pem() is None
    assert "built without SSL" in cluster.tls_warning() and str(cluster.dir) in cluster.tls_warning()
    with cluster.connect_admin() as admin:
        assert admin.execute("SHOW ssl_library").fetchone()[0] == ""
    with connect(cluster, ETL_WRITER, passwords[ETL_WRITER], sslmode="disable") as conn:
        assert encrypted(conn) is False


NON_ROOT_SCRIPT = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    import psycopg
    from clickstream.analytics.secrets import dsn
    from clickstream.local.credentials import load_or_create
    from clickstream.local.postgres import *
    base, port = Path(sys.argv[1]), int(sys.argv[2])
    cluster = Cluster("dw", base / "pg" / "dw", port, hostssl_roles=(ETL_WRITER,))
    try:
        cluster.ensure_started()
        passwords = load_or_create(base / "credentials" / "dw.json", WAREHOUSE_ROLES)
        setup_warehouse(cluster, passwords)
        with psycopg.connect(dsn(cluster.host, port, WAREHOUSE_DB, ETL_WRITER, passwords[ETL_WRITER],
                                 sslmode="verify-full", ca_pem=cluster.ca_pem())) as conn:
            ssl = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0]
        owners = {p.name: (p.stat().st_uid, oct(p.stat().st_mode & 0o777)) for p in cluster.tls_dir.iterdir()}
    finally:
        cluster.stop()
    print(json.dumps({"uid": os.geteuid(), "ssl": ssl, "owners": owners}))
""")


@pytest.mark.skipif(not IS_ROOT or not shutil.which("setpriv"), reason="needs root to become another user")
def test_as_a_normal_user_the_cluster_serves_tls_too():
    nobody = pwd.getpwnam("nobody")
    as_nobody = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups", "--"]
    if subprocess.run([*as_nobody, "test", "-r", secrets.__file__], cwd="/").returncode:
        pytest.skip(f"`nobody` cannot read {secrets.__file__} (a checkout or venv in a folder only root enters)")
    base = Path(tempfile.mkdtemp(prefix="clickstream-test-", dir="/tmp"))
    os.chown(base, nobody.pw_uid, nobody.pw_gid)
    try:
        result = subprocess.run([*as_nobody, sys.executable, "-c", NON_ROOT_SCRIPT, str(base), str(free_port())],
                                capture_output=True, text=True, timeout=120, cwd=base,
                                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(base)})
        assert result.returncode == 0, result.stderr[-3000:]
        out = json.loads(result.stdout.strip().splitlines()[-1])
        assert out["uid"] == nobody.pw_uid and out["ssl"] is True
        assert out["owners"] == {name: [nobody.pw_uid, "0o600"] for name in ("ca.crt", "ca.key", "server.crt", "server.key")}
    finally:
        stop(Cluster("dw", base / "pg" / "dw", 1))
        shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------------------- the stack and its secret


def test_the_dw_secret_carries_verify_full_and_the_ca_and_its_dsn_connects_over_tls(local_stack):
    status = stack.status(local_stack)
    value = secrets.read_secret(aws.client("secretsmanager", local_stack), status["dw_secret_id"])
    dw = stack.clusters(local_stack)["dw"]
    assert value["sslmode"] == "verify-full" and value["sslrootcert_pem"] == dw.ca_pem()
    dsn = secrets.dsn_from_secret(aws.client("secretsmanager", local_stack), status["dw_secret_id"])
    assert "sslmode=verify-full" in dsn
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        assert encrypted(conn) and conn.execute("SELECT current_user").fetchone()[0] == ETL_WRITER


def test_the_stacks_etl_writer_dsn_verifies_the_server_as_the_secret_does(local_stack):
    """`rollups rebuild`, the tests and the benchmarks reach the warehouse as etl_writer through stack.warehouse_dsn:
    verify-full against the local CA too, not libpq's default (TLS without checking who answers)."""
    params = conninfo_to_dict(stack.warehouse_dsn(local_stack, ETL_WRITER))
    assert params["sslmode"] == "verify-full"
    assert Path(params["sslrootcert"]).read_text(encoding="ascii") == stack.clusters(local_stack)["dw"].ca_pem()
    with psycopg.connect(stack.warehouse_dsn(local_stack, ETL_WRITER), connect_timeout=10) as conn:
        assert encrypted(conn) and conn.execute("SELECT current_user").fetchone()[0] == ETL_WRITER
    assert "sslmode" not in conninfo_to_dict(stack.warehouse_dsn(local_stack, "dashboard_reader"))


def test_a_second_up_keeps_the_ca_and_the_secret(local_stack):
    client = aws.client("secretsmanager", local_stack)
    secret_id = stack.status(local_stack)["dw_secret_id"]
    before = secrets.read_secret(client, secret_id)
    stack.up(local_stack)
    assert secrets.read_secret(client, secret_id) == before
    assert stack.clusters(local_stack)["dw"].ca_pem() == before["sslrootcert_pem"]
