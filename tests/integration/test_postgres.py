"""clickstream.local.postgres against real PostgreSQL servers (no mocks).

Every cluster a test starts is registered with a pool whose teardown stops it (pg_ctl stop, else by
pid) and removes its /tmp fallback folder, even when the test fails.
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
import time
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
from psycopg import errors

from clickstream.local.credentials import load_or_create
from clickstream.local.postgres import (
    BINDIR_ENV,
    DASHBOARD_READER,
    ETL_WRITER,
    OLTP_DB,
    OLTP_ROLES,
    POINTER_FILE,
    SBW_READER,
    SHOP_APP,
    TMP_ROOT,
    WAREHOUSE_DB,
    WAREHOUSE_ROLES,
    Cluster,
    ClusterError,
    PortInUseError,
    dsn,
    find_bindir,
    pgserver_bindir,
    setup_oltp,
    setup_warehouse,
)

pytestmark = pytest.mark.integration

DW_HINT = "--dw-port or CLICKSTREAM_DW_PORT"
IS_ROOT = os.geteuid() == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_gone(pid: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def _kill_postmaster(data_dir: Path) -> None:
    """Last resort of a teardown: fast shutdown (SIGINT) of the postmaster named in postmaster.pid."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGINT)
    except (OSError, ValueError, IndexError):
        return
    _wait_gone(pid)


class Pool:
    def __init__(self) -> None:
        self.clusters: list[Cluster] = []

    def add(self, cluster: Cluster) -> Cluster:
        self.clusters.append(cluster)
        return cluster

    def close(self) -> None:
        for cluster in self.clusters:
            try:
                cluster.stop()
            except Exception:
                pass
            _kill_postmaster(cluster.data_dir)
            tmp_root = TMP_ROOT / f"clickstream-pg-{os.geteuid()}-"
            for folder in (cluster.dir, cluster.dir.parent, cluster.socket_dir, cluster.socket_dir.parent):
                if str(folder).startswith(str(tmp_root)):
                    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pool():
    p = Pool()
    try:
        yield p
    finally:
        p.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A warehouse and an OLTP cluster, as `clickstream up` would make them (home in a pytest tmp dir)."""
    home = tmp_path_factory.mktemp("home") / ".clickstream"
    p = Pool()
    try:
        dw = p.add(Cluster("dw", home / "pg" / "dw", free_port(), port_hint=DW_HINT))
        oltp = p.add(Cluster("oltp", home / "pg" / "oltp", free_port(), port_hint="--oltp-port"))
        dw_file, oltp_file = home / "credentials" / "dw.json", home / "credentials" / "oltp.json"
        dw_pw = load_or_create(dw_file, WAREHOUSE_ROLES)
        oltp_pw = load_or_create(oltp_file, OLTP_ROLES)
        assert dw.ensure_started() is True
        assert oltp.ensure_started() is True
        setup_warehouse(dw, dw_pw)
        setup_oltp(oltp, oltp_pw)
        yield SimpleNamespace(home=home, dw=dw, oltp=oltp, dw_pw=dw_pw, oltp_pw=oltp_pw, dw_file=dw_file, oltp_file=oltp_file)
    finally:
        p.close()


def connect_app(cluster: Cluster, dbname: str, user: str, password: str) -> psycopg.Connection:
    return psycopg.connect(cluster.app_dsn(dbname, user, password), connect_timeout=10)


def expect_denied(conn: psycopg.Connection, statement: str) -> None:
    with pytest.raises(errors.InsufficientPrivilege):
        conn.execute(statement)
    conn.rollback()


# ---------------------------------------------------------------------------------------- warehouse


def test_warehouse_database_and_roles_exist(stack):
    with stack.dw.connect_admin() as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (WAREHOUSE_DB,)).fetchone()
        roles = dict(conn.execute(
            "SELECT rolname, rolcanlogin AND NOT rolsuper AND NOT rolcreatedb AND NOT rolcreaterole "
            "FROM pg_roles WHERE rolname = ANY(%s)", (list(WAREHOUSE_ROLES),)).fetchall())
        assert roles == {ETL_WRITER: True, DASHBOARD_READER: True, SBW_READER: True}
        assert conn.execute("SHOW jit").fetchone()[0] == "off"
        assert conn.execute("SHOW fsync").fetchone()[0] == "off"
        assert conn.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1"


def test_etl_writer_gets_default_privileges_on_later_tables(stack):
    with stack.dw.connect_admin(WAREHOUSE_DB) as admin:  # as the migrations will, after setup
        admin.execute("DROP TABLE IF EXISTS page_views")
        admin.execute("CREATE TABLE page_views (id bigserial PRIMARY KEY, url text NOT NULL)")
    with connect_app(stack.dw, WAREHOUSE_DB, ETL_WRITER, stack.dw_pw[ETL_WRITER]) as conn:
        conn.execute("INSERT INTO page_views (url) VALUES ('/a'), ('/b')")  # uses the sequence too
        conn.execute("UPDATE page_views SET url = '/c' WHERE url = '/b'")
        conn.execute("DELETE FROM page_views WHERE url = '/a'")
        assert conn.execute("SELECT url FROM page_views").fetchall() == [("/c",)]
        conn.commit()
        conn.execute("CREATE TEMP TABLE staging (id int)")  # allowed: loads stage in temp tables
        conn.rollback()
        expect_denied(conn, "CREATE TABLE mine (id int)")
        expect_denied(conn, "CREATE SCHEMA mine")


def test_dashboard_reader_is_read_only(stack):
    with stack.dw.connect_admin(WAREHOUSE_DB) as admin:
        admin.execute("DROP TABLE IF EXISTS daily_sales")
        admin.execute("CREATE TABLE daily_sales (day date PRIMARY KEY, revenue numeric)")
        admin.execute("INSERT INTO daily_sales VALUES ('2024-01-01', 10)")
    with connect_app(stack.dw, WAREHOUSE_DB, DASHBOARD_READER, stack.dw_pw[DASHBOARD_READER]) as conn:
        assert conn.execute("SELECT revenue FROM daily_sales").fetchone()[0] == 10
        conn.rollback()
        expect_denied(conn, "INSERT INTO daily_sales VALUES ('2024-01-02', 1)")
        expect_denied(conn, "UPDATE daily_sales SET revenue = 0")
        expect_denied(conn, "DELETE FROM daily_sales")
        expect_denied(conn, "CREATE TABLE mine (id int)")
        expect_denied(conn, "CREATE TEMP TABLE mine (id int)")
    with pytest.raises(psycopg.OperationalError, match="permission denied"):  # only its own database
        psycopg.connect(dsn(stack.dw.host, stack.dw.port, "postgres", DASHBOARD_READER, stack.dw_pw[DASHBOARD_READER]))


def test_dashboard_reader_runs_without_jit_whatever_the_server_says(stack):
    with stack.dw.connect_admin(WAREHOUSE_DB) as admin:
        (settings,) = admin.execute(
            "SELECT setconfig FROM pg_db_role_setting JOIN pg_roles ON pg_roles.oid = setrole "
            "WHERE rolname = %s AND setdatabase = 0", (DASHBOARD_READER,)).fetchone()
    assert "jit=off" in settings


def test_tcp_needs_the_right_password_and_never_takes_the_superuser(stack):
    dw = stack.dw
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(dsn(dw.host, dw.port, WAREHOUSE_DB, ETL_WRITER, "wrong"), connect_timeout=10)
    for password in (None, "", "postgres"):
        with pytest.raises(psycopg.OperationalError, match="rejects connection"):
            psycopg.connect(dsn(dw.host, dw.port, "postgres", "postgres", password), connect_timeout=10)
    with dw.connect_admin() as conn:  # the unix socket
        assert conn.execute("SELECT current_user, current_setting('is_superuser')").fetchone() == ("postgres", "on")
    assert stat.S_IMODE(dw.socket_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(dw.data_dir.stat().st_mode) == 0o700


def test_second_start_is_a_no_op(stack):
    pid = stack.dw.pid
    assert pid and stack.dw.is_running()
    assert stack.dw.ensure_started() is False
    assert stack.dw.pid == pid
    again = Cluster("dw", stack.dw.base_dir, stack.dw.port)  # a later run finds the same (maybe /tmp) dir
    assert again.dir == stack.dw.dir
    assert again.ensure_started() is False and again.pid == pid
    other_port = Cluster("dw", stack.dw.base_dir, free_port())
    with pytest.raises(ClusterError, match=f"already running on port {stack.dw.port}"):
        other_port.ensure_started()


def test_stop_then_start_keeps_data(stack):
    dw = stack.dw
    with dw.connect_admin(WAREHOUSE_DB) as admin:
        admin.execute("CREATE TABLE IF NOT EXISTS survivors (name text)")
        admin.execute("INSERT INTO survivors VALUES ('row')")
    old_pid = dw.pid
    assert dw.stop() is True
    assert not dw.is_running() and dw.pid is None
    assert dw.stop() is False
    assert dw.ensure_started() is True
    assert dw.pid not in (None, old_pid)
    with connect_app(dw, WAREHOUSE_DB, DASHBOARD_READER, stack.dw_pw[DASHBOARD_READER]) as conn:
        assert ("row",) in conn.execute("SELECT name FROM survivors").fetchall()


def test_failed_start_reports_the_log_tail(stack):
    dw = stack.dw
    conf = dw.data_dir / "postgresql.conf"
    original = conf.read_text()
    dw.stop()
    try:
        with open(conf, "a") as f:
            f.write("no_such_setting_for_the_test = 1\n")
        with pytest.raises(ClusterError, match="no_such_setting_for_the_test") as failure:
            dw.ensure_started()
        assert str(dw.log_file) in str(failure.value)
        assert not dw.is_running()
    finally:
        conf.write_text(original)
        dw.ensure_started()


def test_passwords_follow_the_credentials_file(stack):
    dw, path = stack.dw, stack.dw_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create(path, WAREHOUSE_ROLES) == stack.dw_pw  # stable across calls
    assert json.loads(path.read_text()) == stack.dw_pw
    old = stack.dw_pw[ETL_WRITER]
    path.write_text(json.dumps({**stack.dw_pw, ETL_WRITER: "changed-in-the-file"}))
    os.chmod(path, 0o644)
    changed = load_or_create(path, WAREHOUSE_ROLES)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # narrowed back
    try:
        setup_warehouse(dw, changed)  # re-running setup is fine and takes the new password
        connect_app(dw, WAREHOUSE_DB, ETL_WRITER, "changed-in-the-file").close()
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            connect_app(dw, WAREHOUSE_DB, ETL_WRITER, old)
    finally:
        path.write_text(json.dumps(stack.dw_pw))
        setup_warehouse(dw, stack.dw_pw)
    connect_app(dw, WAREHOUSE_DB, ETL_WRITER, old).close()


def test_credentials_file_keeps_other_roles(tmp_path):
    path = tmp_path / "creds" / "x.json"
    first = load_or_create(path, ["a"])
    both = load_or_create(path, ["a", "b"])
    assert both["a"] == first["a"] and len(both["b"]) >= 30 and both["a"] != both["b"]
    assert load_or_create(path, ["b"]) == {"b": both["b"]}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]  # no temp files left


def test_port_in_use_names_port_and_setting(tmp_path, pool):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        cluster = pool.add(Cluster("dw", tmp_path / "pg" / "dw", port, port_hint=DW_HINT))
        with pytest.raises(PortInUseError) as failure:
            cluster.ensure_started()
    assert failure.value.port == port
    assert str(failure.value) == f"port {port} is already in use by another program; choose another with {DW_HINT}"
    assert not cluster.is_running()


# ------------------------------------------------------------------------------------------- OLTP


def test_oltp_is_a_separate_cluster(stack):
    dw, oltp = stack.dw, stack.oltp
    assert oltp.port != dw.port and oltp.dir != dw.dir
    assert set(stack.oltp_pw) == {SHOP_APP} and not set(stack.dw_pw) & set(stack.oltp_pw)
    assert stack.dw_file != stack.oltp_file
    with connect_app(oltp, OLTP_DB, SHOP_APP, stack.oltp_pw[SHOP_APP]) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS orders (id bigserial PRIMARY KEY, total numeric)")
        conn.execute("INSERT INTO orders (total) VALUES (9.99)")
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] >= 1
    for role in WAREHOUSE_ROLES:  # the analytics roles do not exist there
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            connect_app(oltp, OLTP_DB, role, stack.dw_pw[role])
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect_app(dw, WAREHOUSE_DB, SHOP_APP, stack.oltp_pw[SHOP_APP])
    setup_oltp(oltp, stack.oltp_pw)  # idempotent


# ------------------------------------------------------------------------------- layouts and binaries


def test_layout_on_disk(stack):
    dw = stack.dw
    assert {p.name for p in dw.dir.iterdir()} >= {"data", "run", "postgres.log"}
    if IS_ROOT:  # pytest's tmp dir is 0700: the postgres user cannot traverse it, so /tmp is used
        assert dw.dir.parent.parent == TMP_ROOT and dw.dir.parent.name.startswith("clickstream-pg-0-")
        assert (dw.base_dir / POINTER_FILE).read_text().strip() == str(dw.dir)
        assert pwd.getpwuid(dw.data_dir.stat().st_uid).pw_name == "postgres"
        assert pwd.getpwuid(dw.socket_dir.stat().st_uid).pw_name == "postgres"
    else:
        assert dw.dir == dw.base_dir


def test_long_paths_put_the_socket_under_tmp(pool):
    parent = Path(tempfile.mkdtemp(prefix="clickstream-test-", dir="/tmp"))
    try:
        os.chmod(parent, 0o755)  # traversable: the cluster stays in place, only the socket moves
        cluster = pool.add(Cluster("dw", parent / ("x" * 90) / "dw", free_port()))
        assert cluster.dir == cluster.base_dir
        assert str(cluster.socket_dir).startswith(str(TMP_ROOT / "clickstream-pg-"))
        assert len(str(cluster.socket_dir / f".s.PGSQL.{cluster.port}")) < 108
        assert cluster.ensure_started() is True
        with cluster.connect_admin() as conn:
            assert conn.execute("SELECT current_setting('unix_socket_directories')").fetchone()[0] == str(cluster.socket_dir)
    finally:
        pool.close()
        shutil.rmtree(parent, ignore_errors=True)


def test_system_binaries_are_preferred(monkeypatch):
    monkeypatch.delenv(BINDIR_ENV, raising=False)
    if not any(Path("/usr/lib/postgresql").glob("*/bin/initdb")) and not shutil.which("pg_config"):
        pytest.skip("no system PostgreSQL here")
    assert find_bindir() != pgserver_bindir()


@pytest.mark.skipif(pgserver_bindir() is None, reason="pgserver is not installed")
def test_pgserver_binaries(tmp_path, pool, monkeypatch):
    monkeypatch.setenv(BINDIR_ENV, str(pgserver_bindir()))
    assert find_bindir() == pgserver_bindir()
    cluster = pool.add(Cluster("dw", tmp_path / "pg" / "dw", free_port(), port_hint=DW_HINT))
    assert cluster.ensure_started() is True
    passwords = load_or_create(tmp_path / "dw.json", WAREHOUSE_ROLES)
    setup_warehouse(cluster, passwords)
    with connect_app(cluster, WAREHOUSE_DB, ETL_WRITER, passwords[ETL_WRITER]) as conn:
        assert int(conn.execute("SHOW server_version_num").fetchone()[0]) >= 160000
    assert cluster.stop() is True
    assert cluster.ensure_started() is True and cluster.ensure_started() is False


NON_ROOT_SCRIPT = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    import psycopg
    from clickstream.local.credentials import load_or_create
    from clickstream.local.postgres import *
    base, port = Path(sys.argv[1]), int(sys.argv[2])
    cluster = Cluster("dw", base / "pg" / "dw", port)
    out = {"uid": os.geteuid()}
    try:
        out["started"] = cluster.ensure_started()
        out["again"] = cluster.ensure_started()
        passwords = load_or_create(base / "credentials" / "dw.json", WAREHOUSE_ROLES)
        setup_warehouse(cluster, passwords)
        with psycopg.connect(cluster.app_dsn(WAREHOUSE_DB, DASHBOARD_READER, passwords[DASHBOARD_READER])) as conn:
            out["tcp_user"] = conn.execute("SELECT current_user").fetchone()[0]
        with psycopg.connect(cluster.admin_dsn()) as conn:
            out["socket_superuser"] = conn.execute("SELECT current_setting('is_superuser')").fetchone()[0]
        out["dir"] = str(cluster.dir)
        out["server_uid"] = cluster.data_dir.stat().st_uid
    finally:
        out["stopped"] = cluster.stop()
    print(json.dumps(out))
""")


@pytest.mark.skipif(not IS_ROOT or not shutil.which("setpriv"), reason="needs root to become another user")
def test_as_a_normal_user():
    """The non-root path: the same code run as `nobody` starts the server directly, as that user."""
    nobody = pwd.getpwnam("nobody")
    for module in (psycopg, sys.modules["clickstream.local.postgres"]):
        if subprocess.run(["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups", "--",
                           "test", "-r", module.__file__], cwd="/").returncode:
            pytest.skip(f"`nobody` cannot read {module.__file__} (a checkout or venv in a folder only root enters)")
    base = Path(tempfile.mkdtemp(prefix="clickstream-test-", dir="/tmp"))
    os.chown(base, nobody.pw_uid, nobody.pw_gid)
    data_dir = base / "pg" / "dw" / "data"
    try:
        result = subprocess.run(
            ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups", "--",
             sys.executable, "-c", NON_ROOT_SCRIPT, str(base), str(free_port())],
            capture_output=True, text=True, timeout=60, cwd=base,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(base)},
        )
        assert result.returncode == 0, result.stderr[-3000:]
        out = json.loads(result.stdout.strip().splitlines()[-1])
        assert out == {"uid": nobody.pw_uid, "started": True, "again": False, "tcp_user": DASHBOARD_READER,
                       "socket_superuser": "on", "dir": str(base / "pg" / "dw"), "server_uid": nobody.pw_uid,
                       "stopped": True}
    finally:
        _kill_postmaster(data_dir)
        shutil.rmtree(base, ignore_errors=True)


def test_after_the_migrations_etl_writer_cannot_write_schema_migrations_but_writes_later_tables(stack):
    """As `clickstream up` does: setup_warehouse, migrate, protect_migration_log; then a table a later migration
    creates is written by etl_writer and read by dashboard_reader; a second setup_warehouse keeps the log closed."""
    from clickstream.analytics import warehouse
    from clickstream.local.postgres import protect_migration_log

    dw = stack.dw
    warehouse.migrate(dw.admin_dsn(WAREHOUSE_DB))
    protect_migration_log(dw)
    with dw.connect_admin(WAREHOUSE_DB) as admin:
        admin.execute("DROP TABLE IF EXISTS rollup_later")
        admin.execute("CREATE TABLE rollup_later (day date PRIMARY KEY, n bigint NOT NULL)")
    for round_ in ("after migrate", "after a second setup_warehouse"):
        with connect_app(dw, WAREHOUSE_DB, ETL_WRITER, stack.dw_pw[ETL_WRITER]) as conn:
            assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] >= 4, round_
            conn.rollback()
            expect_denied(conn, "INSERT INTO schema_migrations (version, checksum) VALUES ('9999_x', 'x')")
            expect_denied(conn, "UPDATE schema_migrations SET checksum = 'x'")
            expect_denied(conn, "DELETE FROM schema_migrations")
            conn.execute("INSERT INTO rollup_later VALUES ('2024-01-01', 1), ('2024-01-02', 2)")
            conn.execute("UPDATE rollup_later SET n = 3 WHERE day = '2024-01-02'")
            conn.execute("DELETE FROM rollup_later WHERE day = '2024-01-01'")
            conn.execute("LOCK TABLE rollup_later IN EXCLUSIVE MODE")
            conn.commit()
        with connect_app(dw, WAREHOUSE_DB, DASHBOARD_READER, stack.dw_pw[DASHBOARD_READER]) as conn:
            assert conn.execute("SELECT n FROM rollup_later").fetchall() == [(3,)], round_
            conn.rollback()
            expect_denied(conn, "INSERT INTO rollup_later VALUES ('2024-01-05', 1)")
            expect_denied(conn, "DELETE FROM schema_migrations")
            expect_denied(conn, "DELETE FROM clickstream_events")
        with dw.connect_admin(WAREHOUSE_DB) as admin:
            admin.execute("DELETE FROM rollup_later")
        setup_warehouse(dw, stack.dw_pw)


@pytest.mark.skipif(not IS_ROOT, reason="only as root does the server run as another user (`postgres`), "
                                        "who may not reach the binaries")
@pytest.mark.skipif(pgserver_bindir() is None, reason="pgserver is not installed")
def test_as_root_binaries_in_a_folder_only_root_enters_are_served_from_a_copy(tmp_path, pool, monkeypatch):
    """A venv in /root or in a `mktemp -d` folder: the cluster runs from a copy under /tmp; the folder stays 0700."""
    from clickstream.local.postgres import _run_as, _server_can_traverse

    private = Path(tempfile.mkdtemp(prefix="clickstream-private-"))  # 0700
    site = pgserver_bindir().parents[2]  # the wheel's binaries load its bundled libraries from site/pgserver.libs
    install = private / "site-packages" / "pgserver" / "pginstall"
    shutil.copytree(site / "pgserver" / "pginstall", install, symlinks=True, ignore=shutil.ignore_patterns("include"))
    if (site / "pgserver.libs").is_dir():
        shutil.copytree(site / "pgserver.libs", private / "site-packages" / "pgserver.libs")
    assert not _server_can_traverse(_run_as(), install / "bin")
    monkeypatch.setenv(BINDIR_ENV, str(install / "bin"))
    copy = None
    try:
        cluster = pool.add(Cluster("dw", tmp_path / "pg" / "dw", free_port(), port_hint=DW_HINT))
        assert cluster.ensure_started() is True
        exe = Path(os.readlink(f"/proc/{cluster.pid}/exe"))
        assert exe.is_relative_to(TMP_ROOT) and not exe.is_relative_to(private), exe
        copy = TMP_ROOT / exe.relative_to(TMP_ROOT).parts[0]
        passwords = load_or_create(tmp_path / "dw.json", WAREHOUSE_ROLES)
        setup_warehouse(cluster, passwords)
        with connect_app(cluster, WAREHOUSE_DB, ETL_WRITER, passwords[ETL_WRITER]) as conn:
            assert int(conn.execute("SHOW server_version_num").fetchone()[0]) >= 160000
            conn.execute("DO $$ BEGIN PERFORM 1; END $$")  # plpgsql, from the copy's lib folder
        assert cluster.stop() is True
        assert cluster.ensure_started() is True and cluster.stop() is True  # the copy is reused
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
    finally:
        pool.close()
        shutil.rmtree(private, ignore_errors=True)
        if copy is not None and copy.name.startswith(f"clickstream-pg-{os.geteuid()}-install-"):
            shutil.rmtree(copy, ignore_errors=True)
