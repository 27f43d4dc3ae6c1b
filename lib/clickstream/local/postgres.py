"""Private PostgreSQL clusters for the local stack: the analytics warehouse and the shop's OLTP database.

Each cluster is a throwaway, project-local data dir served on 127.0.0.1:<port>:

    dw = Cluster("dw", home / "pg" / "dw", port=15432, port_hint="--dw-port or CLICKSTREAM_DW_PORT")
    dw.ensure_started()                      # initdb on first use, start if not running
    setup_warehouse(dw, load_or_create(home / "credentials" / "dw.json", WAREHOUSE_ROLES))
    dw.stop()                                # pg_ctl stop -m fast, data kept

Binaries: $CLICKSTREAM_PG_BINDIR, else the system PostgreSQL (`pg_config --bindir`, the highest
/usr/lib/postgresql/*/bin, `initdb` on PATH), else the binaries inside the `pgserver` wheel (only its
binaries: its Python API has side effects as root).

Users: initdb/postgres refuse to run as root. As root every server command runs as the `postgres`
system user (setpriv, else runuser); if that user does not exist we stop with a message telling how
to create it (we do not create system users ourselves). As a normal user they run directly. When that user
cannot reach the binaries (a venv under /root or a 0700 folder), it runs a copy of them under /tmp (server_bindir).

Layout of the real cluster dir (the requested base dir, or its /tmp fallback, see `Cluster.dir`):
    data/            PGDATA (0700, owned by the server user); data/clickstream.conf is rewritten at each start
    run/             unix socket dir (0700): only the server user (and root) can reach the socket
    postgres.log     server log (pg_ctl -l)
    tls/             (a cluster with hostssl_roles) its private CA and the server's certificate: ca.crt, ca.key,
                     server.crt, server.key, all 0600, the server user's; the CA is made once and kept

Auth: superuser `postgres` only over the unix socket (trust; the 0700 socket dir keeps others out);
TCP on 127.0.0.1 needs a scram-sha-256 password and refuses `postgres`. Applications use login roles
created by setup_warehouse / setup_oltp. Passwords go to the server as SCRAM verifiers computed here,
so the plain text never reaches the server (or its log).

TLS: a cluster with `hostssl_roles` (the warehouse: etl_writer) serves TLS with a certificate for 127.0.0.1 and
localhost signed by its own CA (`ca_pem()`, for sslmode verify-full), and those roles connect only over TLS
(pg_hba hostssl; without TLS, or over the socket, they are refused); the other roles as before. A PostgreSQL
built without SSL (the pgserver wheel's: `SHOW ssl_library` is empty) serves none: `tls_warning()` says so.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import importlib.util
import ipaddress
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from clickstream.analytics.secrets import dsn
from clickstream.local.locks import folder_lock

BINDIR_ENV = "CLICKSTREAM_PG_BINDIR"
SERVER_USER = "postgres"  # OS user running the server when we are root
SUPERUSER = "postgres"  # database superuser (initdb -U)

WAREHOUSE_DB = "clickstream_dw"
ETL_WRITER = "etl_writer"
DASHBOARD_READER = "dashboard_reader"
SBW_READER = "sbw_reader"  # the original workshop's dashboard: reads only the compatibility schema
SBW_SCHEMA = "sbw"  # sql/migrations/0006_sbw.sql
WAREHOUSE_ROLES = (ETL_WRITER, DASHBOARD_READER, SBW_READER)
MIGRATION_LOG = "schema_migrations"  # clickstream.analytics.warehouse.migrate's table: only the superuser writes it

OLTP_DB = "shop_oltp"
SHOP_APP = "shop_app"
OLTP_ROLES = (SHOP_APP,)

POINTER_FILE = "location"  # in the requested base dir when the cluster lives in the /tmp fallback
CONF_FILE = "clickstream.conf"  # included from postgresql.conf, rewritten at every start
TMP_ROOT = Path("/tmp")  # not $TMPDIR: macOS's is too long for a unix socket path
SOCKET_PATH_MAX = 107  # sun_path is 108 bytes including the trailing NUL
START_TIMEOUT = 60
LOG_TAIL_LINES = 25
TLS_DIR = "tls"  # in the cluster dir
TLS_DAYS = 3650  # a local CA and certificate; re-issued within TLS_RENEW_DAYS of the end
TLS_RENEW_DAYS = 30
TLS_NAMES = ("127.0.0.1", "localhost")  # the server certificate's subject alternative names, plus the cluster's host


class ClusterError(RuntimeError):
    """initdb / start / stop failed, or the cluster cannot be set up here; the message says what to do."""


class PortInUseError(ClusterError):
    """The port is taken by a program other than this cluster."""

    def __init__(self, port: int, setting_hint: str = ""):
        super().__init__(port, setting_hint)
        self.port = port
        self.setting_hint = setting_hint

    def __str__(self) -> str:
        message = f"port {self.port} is already in use by another program"
        return f"{message}; choose another with {self.setting_hint}" if self.setting_hint else message


# ----------------------------------------------------------------------------------------- binaries


def find_bindir() -> Path:
    """The folder holding initdb, pg_ctl and postgres (see the module docstring for the search order)."""
    if env := os.environ.get(BINDIR_ENV):
        if not _has_server(Path(env)):
            raise ClusterError(f"{BINDIR_ENV}={env} does not contain initdb, pg_ctl and postgres")
        return Path(env)
    for candidate in _system_bindirs():
        if _has_server(candidate):
            return candidate
    if (wheel := pgserver_bindir()) is not None and _has_server(wheel):
        return wheel
    raise ClusterError(
        "no PostgreSQL server binaries found: install PostgreSQL (e.g. `apt-get install postgresql`), "
        f"or `pip install pgserver`, or point {BINDIR_ENV} at a folder with initdb, pg_ctl and postgres"
    )


def pgserver_bindir() -> Path | None:
    """pgserver._commands.POSTGRES_BIN_PATH, found without importing pgserver (its import has side effects)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"


def _system_bindirs() -> Iterator[Path]:
    if pg_config := shutil.which("pg_config"):
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                yield Path(out.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    versions = []
    for path in Path("/usr/lib/postgresql").glob("*/bin"):
        try:
            versions.append((tuple(int(x) for x in path.parent.name.split(".")), path))
        except ValueError:
            continue
    yield from (path for _, path in sorted(versions, reverse=True))
    if initdb := shutil.which("initdb"):
        yield Path(initdb).resolve().parent


def _has_server(bindir: Path) -> bool:
    return all(os.access(bindir / exe, os.X_OK) for exe in ("initdb", "pg_ctl", "postgres"))


def _major_version(bindir: Path) -> int:
    out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True, timeout=30)
    match = re.search(r"\)\s*(\d+)", out.stdout)
    if out.returncode != 0 or not match:
        raise ClusterError(f"cannot run {bindir / 'postgres'} --version: {(out.stderr or out.stdout).strip()}")
    return int(match.group(1))


# ----------------------------------------------------------------------------- users and processes


@dataclass(frozen=True)
class _RunAs:
    uid: int
    gid: int
    prefix: tuple[str, ...]  # () when we run the server commands ourselves


def _run_as() -> _RunAs:
    if os.geteuid() != 0:
        return _RunAs(os.geteuid(), os.getegid(), ())
    try:
        pw = pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise ClusterError(
            f"running as root, PostgreSQL must run as another user but there is no `{SERVER_USER}` system user. "
            f"Create one (`useradd --system --user-group --home-dir /var/lib/postgresql --shell /usr/sbin/nologin "
            f"{SERVER_USER}`) or run as a normal user."
        ) from None
    if shutil.which("setpriv"):
        prefix = ("setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups", "--")
    elif shutil.which("runuser"):
        prefix = ("runuser", "-u", SERVER_USER, "--")
    else:
        raise ClusterError(f"running as root, but neither setpriv nor runuser is installed to run PostgreSQL as `{SERVER_USER}`")
    return _RunAs(pw.pw_uid, pw.pw_gid, prefix)


def _clean_env() -> dict[str, str]:
    """Our environment minus libpq/server variables (PGPORT, PGDATA, ...) that would override our options."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _server_can_traverse(run_as: _RunAs, directory: Path) -> bool:
    """Can the server user reach `directory` (search permission on it and on all its parents)?"""
    if not run_as.prefix:
        return True
    result = subprocess.run([*run_as.prefix, "test", "-x", str(directory)], env=_clean_env(), cwd="/",
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
    return result.returncode == 0


def server_bindir(run_as: _RunAs, bindir: Path) -> Path:
    """`bindir`, or when the server user cannot reach it (as root, binaries in a venv under /root or another
    0700 folder) the bin folder of a copy of its installation in /tmp/clickstream-pg-<uid>-install-<hash>, made
    once per installation: bin, lib and share, and the libraries they load from folders that user cannot reach
    (a wheel's bundled `<name>.libs`), at the same places relative to each other. Files all may read are hard
    links where possible. The user's own folders keep their permissions."""
    if not run_as.prefix or _server_can_traverse(run_as, bindir):
        return bindir
    bindir = bindir.resolve()
    prefix = bindir.parent
    if bindir.name != "bin" or not (prefix / "share").is_dir():
        raise ClusterError(f"the `{SERVER_USER}` user cannot reach {bindir}, which is not the bin folder of a "
                           f"PostgreSQL installation to copy; install PostgreSQL system-wide or put the binaries "
                           f"in a folder others can read")
    st = (bindir / "postgres").stat()  # a new build of the same folder gets a new copy
    key = _short_hash(Path(f"{prefix}:{st.st_size}:{st.st_mtime_ns}"))
    target = TMP_ROOT / f"clickstream-pg-{os.geteuid()}-install-{key}"
    libraries = [lib for lib in _loaded_libraries([*bindir.iterdir(), *prefix.glob("lib/**/*.so*")])
                 if not lib.is_relative_to(prefix)]
    unreachable = {folder for folder in {lib.parent for lib in libraries} if not _server_can_traverse(run_as, folder)}
    root = Path(os.path.commonpath([prefix, *unreachable]))  # keeps $ORIGIN-relative library paths valid
    needed = [prefix.relative_to(root) / "bin" / exe for exe in ("initdb", "pg_ctl", "postgres")]
    needed += [lib.relative_to(root) for lib in libraries if lib.parent in unreachable]
    if not _is_private_install(target, needed):
        staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=TMP_ROOT))
        try:
            for part in ("bin", "lib", "share"):
                if (prefix / part).is_dir():
                    shutil.copytree(prefix / part, staging / prefix.relative_to(root) / part, symlinks=True,
                                    copy_function=_link_or_copy, ignore=shutil.ignore_patterns("*.a", "pkgconfig"))
            for lib in libraries:
                if lib.parent in unreachable:
                    (staging / lib.parent.relative_to(root)).mkdir(parents=True, exist_ok=True)
                    _link_or_copy(str(lib), str(staging / lib.relative_to(root)))
            for folder, _, _ in os.walk(staging):
                os.chmod(folder, 0o755)
            try:
                os.rename(staging, target)
            except OSError:  # made meanwhile by another process, or someone else's folder: checked below
                pass
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if not _is_private_install(target, needed):
            raise ClusterError(f"{target} exists but is not a copy of PostgreSQL made by this user; remove it")
    copied = target / prefix.relative_to(root) / "bin"
    if not _server_can_traverse(run_as, copied):
        raise ClusterError(f"the `{SERVER_USER}` user cannot reach {copied} either")
    return copied


def _loaded_libraries(files: list[Path]) -> list[Path]:
    """The shared libraries `files` load, as ldd resolves them (none where ldd is missing)."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return []
    try:
        out = subprocess.run([ldd, *map(str, files)], capture_output=True, text=True, timeout=60, env=_clean_env())
    except (OSError, subprocess.SubprocessError):
        return []
    paths = {Path(path) for path in re.findall(r"=>\s+(/\S+)", out.stdout)}  # may hold "..": resolve the folders
    return sorted({path.parent.resolve() / path.name for path in paths})


def _is_private_install(folder: Path, needed: list[Path]) -> bool:
    """A folder of ours that only we can change, holding the `needed` files."""
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return False
    ours = stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022
    return ours and all((folder / path).is_file() for path in needed)


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link a file others may already read (and run, if it is a program); copy the others, readable."""
    mode = os.stat(src).st_mode
    if mode & 0o004 and (mode & 0o001 or not mode & 0o100):
        try:
            os.link(src, dst)
            return
        except OSError:  # another file system, or links not allowed
            pass
    shutil.copy2(src, dst)
    os.chmod(dst, stat.S_IMODE(mode) | 0o444 | (0o111 if mode & 0o100 else 0))


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, someone else's
    comm = Path(f"/proc/{pid}/comm")
    if comm.exists():  # Linux: a stale postmaster.pid whose pid was reused by another program
        try:
            return comm.read_text().strip() in ("postgres", "postmaster")
        except OSError:
            return True
    return True


def port_is_free(host: str, port: int) -> bool:
    """True if nothing listens on host:port (a socket in TIME_WAIT is no conflict)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as postgres does: TIME_WAIT is no conflict
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _short_hash(path: Path) -> str:
    return hashlib.sha256(str(path).encode()).hexdigest()[:10]


def _conf_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _make_dirs(path: Path, mode: int = 0o755) -> None:
    """mkdir -p with an explicit mode on each folder we create (a 077 umask must not lock the server user out)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        os.chmod(folder, mode)


# ------------------------------------------------------------------------------------------ cluster


@dataclass
class Cluster:
    """One private PostgreSQL cluster ("dw" or "oltp") served on host:port."""

    name: str
    base_dir: Path  # requested dir; the real one may be the /tmp fallback (see .dir)
    port: int
    host: str = "127.0.0.1"
    port_hint: str = ""  # how the caller's user changes the port, e.g. "--dw-port or CLICKSTREAM_DW_PORT"
    bindir: Path | None = None  # None: find_bindir()
    hostssl_roles: tuple[str, ...] = ()  # roles that connect over TLS only; the cluster then serves TLS
    _dir: Path | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.base_dir = Path(self.base_dir).expanduser().absolute()
        self.port = int(self.port)
        if self.bindir is not None:
            self.bindir = Path(self.bindir)

    # ---- where things are

    @property
    def dir(self) -> Path:
        """The real cluster dir: base_dir, or /tmp/clickstream-pg-<uid>-<hash of base_dir>/<name> when, as root,
        the `postgres` user cannot traverse base_dir's parents. The fallback is recorded in base_dir/location."""
        if self._dir is None:
            self._dir = self._locate()
        return self._dir

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def log_file(self) -> Path:
        return self.dir / "postgres.log"

    @property
    def tls_dir(self) -> Path:
        return self.dir / TLS_DIR

    @property
    def socket_dir(self) -> Path:
        run = self.dir / "run"
        if len(os.fsencode(run / f".s.PGSQL.{self.port}")) <= SOCKET_PATH_MAX:
            return run
        return self._tmp_root() / f"{self.name}-run"

    def _tmp_root(self) -> Path:
        return TMP_ROOT / f"clickstream-pg-{os.geteuid()}-{_short_hash(self.base_dir.resolve())}"

    def _locate(self) -> Path:
        pointer = self.base_dir / POINTER_FILE
        if pointer.is_file():
            target = Path(pointer.read_text().strip() or ".")
            if target.is_absolute() and target.parent.is_dir():  # else /tmp was cleaned: decide again
                return target
        if (self.base_dir / "data").exists():
            return self.base_dir
        try:
            run_as = _run_as()
        except ClusterError:
            return self.base_dir  # ensure_started will raise the same error; nothing can be running
        # base_dir itself will belong to the server user; it must traverse the parents. Folders we create
        # get 0755, so the nearest existing parent decides.
        probe = self.base_dir.parent
        while not probe.exists():
            probe = probe.parent
        if not _server_can_traverse(run_as, probe):
            return self._tmp_root() / self.name
        return self.base_dir

    # ---- state

    def _pidfile_lines(self) -> list[str]:
        try:
            return (self.data_dir / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, NotADirectoryError):
            return []
        except PermissionError as exc:
            raise ClusterError(f"cannot read {exc.filename}: the cluster was created by another user") from None

    @property
    def pid(self) -> int | None:
        """The postmaster's pid (first line of data/postmaster.pid), or None when not running."""
        lines = self._pidfile_lines()
        try:
            pid = int(lines[0])
        except (IndexError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def is_running(self) -> bool:
        return self.pid is not None

    def _running_port(self) -> int | None:
        lines = self._pidfile_lines()
        try:
            return int(lines[3])
        except (IndexError, ValueError):
            return None

    # ---- start / stop

    def ensure_started(self) -> bool:
        """initdb if needed and start if not running. True if this call started the server, False if it was running.

        A running cluster made before it served TLS gets its certificates and settings, and reloads them."""
        if self._check_running() and not self._tls_to_set_up():
            return False
        run_as = _run_as()
        bindir = self.bindir or find_bindir()
        if not self.is_running() and not port_is_free(self.host, self.port):
            raise PortInUseError(self.port, self.port_hint)
        self._prepare_dirs(run_as)
        with folder_lock(self.dir):
            running = self._check_running()  # another process may have started it while we waited for the lock
            if running and not self._tls_to_set_up():
                return False
            bindir = server_bindir(run_as, bindir)
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb(run_as, bindir)
            self._check_version(bindir)
            self._write_config(run_as, bindir)
            if running:
                self._pg_ctl(run_as, bindir, "reload")
                return False
            self._pg_ctl_start(run_as, bindir)
        return True

    def ca_pem(self) -> str | None:
        """The certificate (PEM) of the CA that signed the server's, for sslmode verify-full; None when the
        cluster serves no TLS."""
        if not self.hostssl_roles or "\nssl = on\n" not in self._conf_text():
            return None
        return (self.tls_dir / "ca.crt").read_text(encoding="ascii")

    def tls_warning(self) -> str | None:
        """Why a cluster that should serve TLS does not (its PostgreSQL was built without SSL), and what to do."""
        if not self.hostssl_roles or self.ca_pem() is not None:
            return None
        return (f"the {self.name} cluster serves no TLS: its PostgreSQL was built without SSL (`SHOW ssl_library` is "
                f"empty, as with the pgserver wheel), so {', '.join(self.hostssl_roles)} connect without TLS "
                f"(sslmode disable) unlike on AWS. For TLS, install a PostgreSQL with SSL (e.g. `apt-get install "
                f"postgresql`, or {BINDIR_ENV}) and delete {self.dir} to make the cluster again (its data is lost)")

    def _conf_text(self) -> str:
        try:
            return (self.data_dir / CONF_FILE).read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""

    def _tls_to_set_up(self) -> bool:
        """A cluster that should serve TLS whose settings do not say yet whether it can (made by an older version)."""
        try:
            return bool(self.hostssl_roles) and not re.search(r"^ssl = (on|off)$", self._conf_text(), re.M)
        except PermissionError:
            return False  # another user's cluster: _check_running and ensure_started report it

    def _check_running(self) -> bool:
        if not self.is_running():
            return False
        running = self._running_port()
        if running is not None and running != self.port:
            raise ClusterError(f"the {self.name} cluster in {self.dir} is already running on port {running}, "
                               f"not {self.port}; stop it first")
        return True

    def stop(self) -> bool:
        """pg_ctl stop -m fast (data is kept). True if it stopped a running server, False if none was running."""
        if not self.is_running():
            return False
        run_as = _run_as()
        self._pg_ctl(run_as, server_bindir(run_as, self.bindir or find_bindir()), "stop", "-m", "fast", "-w",
                     "-t", str(START_TIMEOUT))
        return True

    def _pg_ctl(self, run_as: _RunAs, bindir: Path, action: str, *options: str) -> None:
        """pg_ctl stop or reload on the running cluster."""
        result = self._run(run_as, [str(bindir / "pg_ctl"), action, "-D", str(self.data_dir), *options])
        if result.returncode != 0 and self.is_running():
            raise ClusterError(f"could not {action} the {self.name} cluster:\n{result.stdout.strip()}\n"
                               f"--- last lines of {self.log_file}:\n{_tail(self.log_file)}")

    def _run(self, run_as: _RunAs, cmd: list[str], timeout: float = START_TIMEOUT + 30) -> subprocess.CompletedProcess:
        # Output into a file, not a pipe: a server forked by pg_ctl must not hold our pipe open.
        with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as out:
            result = subprocess.run([*run_as.prefix, *cmd], stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=_clean_env(), cwd=str(self.dir), timeout=timeout)
            out.seek(0)
            return subprocess.CompletedProcess(result.args, result.returncode, out.read(), None)

    def _prepare_dirs(self, run_as: _RunAs) -> None:
        real = self.dir
        _make_dirs(self.base_dir.parent)
        self.base_dir.mkdir(exist_ok=True)
        if self._tmp_root() in (real.parent, self.socket_dir.parent):
            self._make_tmp_root(run_as)
        if real != self.base_dir:
            pointer = self.base_dir / POINTER_FILE
            if not pointer.is_file() or pointer.read_text().strip() != str(real):
                pointer.write_text(f"{real}\n")
        self._own_dir(real, run_as)
        self._own_dir(self.socket_dir, run_as)

    def _make_tmp_root(self, run_as: _RunAs) -> None:
        """/tmp is shared: refuse a folder that someone else created to catch our files."""
        root = self._tmp_root()
        try:
            root.mkdir(mode=0o700)
            os.chmod(root, 0o711 if run_as.prefix else 0o700)  # the server user needs to traverse it
        except FileExistsError:
            st = os.lstat(root)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
                raise ClusterError(f"{root} exists but is not a private folder of this user; remove it") from None

    @staticmethod
    def _own_dir(folder: Path, run_as: _RunAs) -> None:
        """Create `folder` 0700 owned by the server user, or check an existing one is (as root: hand it over)."""
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            pass
        st = os.lstat(folder)
        if not stat.S_ISDIR(st.st_mode):
            raise ClusterError(f"{folder} is not a folder")
        if st.st_uid != run_as.uid:
            if not (run_as.prefix and st.st_uid == 0):
                raise ClusterError(f"{folder} belongs to {_user_name(st.st_uid)} but the server runs as "
                                   f"{_user_name(run_as.uid)}: it was made by another user (or as root); "
                                   f"run as that user, or delete it")
            os.chown(folder, run_as.uid, run_as.gid)
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.chmod(folder, 0o700)

    def _initdb(self, run_as: _RunAs, bindir: Path) -> None:
        staging = self.dir / "data.initdb"  # renamed to data/ once complete: a half-made cluster is never used
        if staging.exists():
            shutil.rmtree(staging)
        result = None
        for locale in ("C.UTF-8", "C"):  # C.UTF-8 is missing on some systems (older macOS)
            result = self._run(run_as, [str(bindir / "initdb"), "-D", str(staging), "-U", SUPERUSER, "--auth=trust",
                                        "-E", "UTF8", f"--locale={locale}"])
            if result.returncode == 0:
                break
            if staging.exists():
                shutil.rmtree(staging)
        if result.returncode != 0:
            tail = "\n".join(result.stdout.strip().splitlines()[-LOG_TAIL_LINES:])
            raise ClusterError(f"initdb of the {self.name} cluster in {staging} failed:\n{tail}")
        with open(staging / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(f"\n# Settings of the clickstream local stack, rewritten at every start.\n"
                       f"include_if_exists = '{CONF_FILE}'\n")
        staging.rename(self.data_dir)

    def _check_version(self, bindir: Path) -> None:
        data_version = (self.data_dir / "PG_VERSION").read_text().strip()
        server_version = _major_version(bindir)
        if data_version != str(server_version):
            raise ClusterError(
                f"the {self.name} cluster in {self.data_dir} was made by PostgreSQL {data_version}, but the binaries "
                f"in {bindir} are PostgreSQL {server_version}; set {BINDIR_ENV} to a PostgreSQL {data_version} bin "
                f"folder, or delete {self.dir} to start from scratch (its data is lost)")

    def _write_config(self, run_as: _RunAs, bindir: Path) -> None:
        tls = self._ensure_tls(run_as, bindir) if self.hostssl_roles else None
        conf = f"""\
# Written by clickstream.local.postgres at every start: change the code or the port setting, not this file.
listen_addresses = {_conf_quote(self.host)}
port = {self.port}
unix_socket_directories = {_conf_quote(str(self.socket_dir))}
password_encryption = 'scram-sha-256'
# jit compiles each plan: it adds ~10 ms to the short dashboard queries and rarely pays back here.
jit = off
# DEV-ONLY speed settings: this is a throwaway local cluster whose data can be rebuilt. A crash of the
# machine may corrupt it. Never use these for a database whose data matters.
fsync = off
synchronous_commit = off
full_page_writes = off
"""
        if tls is False:
            conf += "# This PostgreSQL was built without SSL: no TLS (tls_warning says what to do).\nssl = off\n"
        elif tls:
            conf += (f"# TLS with the cluster's own CA (tls/): {', '.join(self.hostssl_roles)} connect over TLS only.\n"
                     f"ssl = on\nssl_cert_file = {_conf_quote(str(tls / 'server.crt'))}\n"
                     f"ssl_key_file = {_conf_quote(str(tls / 'server.key'))}\n")
        hba = """\
# Written by clickstream.local.postgres at every start.
# TYPE  DATABASE  USER      ADDRESS        METHOD
# The superuser: unix socket only (its folder is 0700, so only the server's OS user and root reach it).
local   all       postgres                 trust
host    all       postgres  0.0.0.0/0      reject
host    all       postgres  ::/0           reject
"""
        if tls:
            hba += "# Roles that connect over TLS only (hostssl, SCRAM); without TLS, or over the socket, refused.\n"
            for role in self.hostssl_roles:
                hba += (f"local   all       {role}                 reject\n"
                        f"hostssl all       {role}  127.0.0.1/32   scram-sha-256\n"
                        f"hostssl all       {role}  ::1/128        scram-sha-256\n"
                        f"host    all       {role}  all            reject\n")
        hba += """\
# Application roles: password (SCRAM) over TCP on the loopback.
local   all       all                      scram-sha-256
host    all       all       127.0.0.1/32   scram-sha-256
host    all       all       ::1/128        scram-sha-256
"""
        self._write_data_file(CONF_FILE, conf, run_as)
        self._write_data_file("pg_hba.conf", hba, run_as)

    def _write_data_file(self, name: str, text: str, run_as: _RunAs) -> None:
        _write_private(self.data_dir / name, text.encode(), run_as)

    def _ensure_tls(self, run_as: _RunAs, bindir: Path) -> Path | bool:
        """The tls/ folder with the CA and a valid server certificate for TLS_NAMES and the host, or False when
        this PostgreSQL was built without SSL."""
        result = subprocess.run([*run_as.prefix, str(bindir / "postgres"), "-D", str(self.data_dir), "-C", "ssl_library"],
                                capture_output=True, text=True, env=_clean_env(), cwd=str(self.dir), timeout=60)
        if result.returncode != 0:
            raise ClusterError(f"cannot ask {bindir / 'postgres'} for its ssl_library:\n{result.stderr.strip()}")
        if not result.stdout.strip():
            return False
        self._own_dir(self.tls_dir, run_as)
        ensure_certificates(self.tls_dir, f"clickstream local {self.name}", (*TLS_NAMES, self.host), run_as)
        return self.tls_dir

    def _pg_ctl_start(self, run_as: _RunAs, bindir: Path) -> None:
        log_size = self.log_file.stat().st_size if self.log_file.exists() else 0
        result = self._run(run_as, [str(bindir / "pg_ctl"), "start", "-D", str(self.data_dir), "-l", str(self.log_file),
                                    "-w", "-t", str(START_TIMEOUT)])
        if result.returncode == 0 and self.is_running():
            return
        new_log = _tail(self.log_file, 400)
        try:
            with open(self.log_file, "rb") as f:
                f.seek(log_size)
                new_log = f.read().decode("utf-8", "replace")
        except OSError:
            pass
        self._kill_leftover()
        if "Address already in use" in new_log or "could not create any TCP/IP sockets" in new_log:
            raise PortInUseError(self.port, self.port_hint)
        tail = "\n".join(new_log.strip().splitlines()[-LOG_TAIL_LINES:]) or _tail(self.log_file)
        raise ClusterError(f"the {self.name} cluster did not start (pg_ctl: {result.stdout.strip()})\n"
                           f"--- last lines of {self.log_file}:\n{tail}")

    def _kill_leftover(self) -> None:
        """After a failed or timed-out start, do not leave a half-started postmaster behind."""
        pid = self.pid
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGINT)  # fast shutdown
        except OSError:
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _pid_alive(pid):
            time.sleep(0.05)

    # ---- SQL

    def admin_dsn(self, dbname: str = "postgres") -> str:
        """The superuser over the unix socket (the only way it can log in)."""
        return make_conninfo("", host=str(self.socket_dir), port=self.port, user=SUPERUSER, dbname=dbname)

    def app_dsn(self, dbname: str, user: str, password: str) -> str:
        """An application role over TCP (contains the password: do not log it)."""
        return dsn(self.host, self.port, dbname, user, password)

    def connect_admin(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(self.admin_dsn(dbname), autocommit=True, connect_timeout=10)

    def ensure_database(self, dbname: str, owner: str | None = None) -> None:
        with self.connect_admin() as conn:
            row = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
            if row is None:
                query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname))
                if owner:
                    query += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
                conn.execute(query)
            elif owner and row[0] != owner:
                conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(dbname), sql.Identifier(owner)))

    def ensure_login_role(self, role: str, password: str) -> None:
        """Create the role, or reset its password and attributes: an application role, never privileged."""
        if not password:
            raise ValueError(f"empty password for role {role}")
        # A SCRAM verifier computed here, so the plain text never reaches the server (nor its log on error).
        secret = _scram_verifier(password) if password.isascii() else password  # non-ASCII needs SASLprep
        attrs = sql.SQL("LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT PASSWORD {}").format(
            sql.Literal(secret))
        with self.connect_admin() as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            verb = sql.SQL("ALTER ROLE") if exists else sql.SQL("CREATE ROLE")
            conn.execute(sql.SQL("{} {} {}").format(verb, sql.Identifier(role), attrs))


def _write_private(path: Path, data: bytes, run_as: _RunAs) -> None:
    """Write `path` atomically, 0600, owned by the server user."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    if run_as.prefix:
        os.chown(tmp, run_as.uid, run_as.gid)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------- TLS


def ensure_certificates(folder: Path, label: str, names: tuple[str, ...], run_as: _RunAs) -> None:
    """ca.crt/ca.key, a private CA made once (later calls keep it), and server.crt/server.key, a certificate it
    signs for `names` (IP addresses or host names), issued again when missing, not signed by that CA, not naming
    exactly these, or within TLS_RENEW_DAYS of its end. ECDSA P-256 keys; every file 0600."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def new_key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    def issue(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
              issuer_key: ec.EllipticCurvePrivateKey, extensions: list[tuple[x509.ExtensionType, bool]]) -> bytes:
        now = datetime.datetime.now(datetime.timezone.utc)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer.subject if issuer else name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=TLS_DAYS))
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    wanted = {x509.IPAddress(ipaddress.ip_address(n)) if _is_ip(n) else x509.DNSName(n) for n in names}
    if not ((folder / "ca.crt").exists() and (folder / "ca.key").exists()):
        ca_key = new_key()
        usage = dict.fromkeys(("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                               "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"), False)
        _write_private(folder / "ca.key", key_pem(ca_key), run_as)
        _write_private(folder / "ca.crt", issue(f"{label} CA", ca_key, None, ca_key, [
            (x509.BasicConstraints(ca=True, path_length=0), True),
            (x509.KeyUsage(**{**usage, "key_cert_sign": True, "crl_sign": True}), True)]), run_as)
        (folder / "server.crt").unlink(missing_ok=True)
    ca = x509.load_pem_x509_certificate((folder / "ca.crt").read_bytes())
    if _server_certificate_valid(folder, ca, wanted):
        return
    ca_key = serialization.load_pem_private_key((folder / "ca.key").read_bytes(), None)
    key = new_key()
    _write_private(folder / "server.key", key_pem(key), run_as)
    _write_private(folder / "server.crt", issue(label, key, ca, ca_key, [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        (x509.SubjectAlternativeName(sorted(wanted, key=str)), False),
        (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False)]), run_as)


def _server_certificate_valid(folder: Path, ca: "x509.Certificate", wanted: set) -> bool:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization

    try:
        cert = x509.load_pem_x509_certificate((folder / "server.crt").read_bytes())
        key = serialization.load_pem_private_key((folder / "server.key").read_bytes(), None)
        cert.verify_directly_issued_by(ca)
        names = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except (OSError, ValueError, TypeError, x509.ExtensionNotFound, InvalidSignature):
        return False
    renew = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=TLS_RENEW_DAYS)
    return names == wanted and cert.not_valid_after_utc > renew and key.public_key() == cert.public_key()


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _scram_verifier(password: str, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for an ASCII `password` (as libpq's PQencryptPasswordConn)."""
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _require(passwords: Mapping[str, str], roles: tuple[str, ...], what: str) -> None:
    missing = [role for role in roles if not passwords.get(role)]
    if missing:
        raise ValueError(f"no password for {', '.join(missing)} ({what})")


def setup_warehouse(cluster: Cluster, passwords: Mapping[str, str]) -> None:
    """Database clickstream_dw and its roles; idempotent (re-running resets passwords from `passwords`).

    etl_writer: CONNECT, TEMPORARY (staging temp tables for loads), USAGE on public, SELECT/INSERT/UPDATE/DELETE
    on its tables (LOCK ... EXCLUSIVE needs UPDATE or DELETE) and USAGE/SELECT/UPDATE on its sequences, now and
    (default privileges) on those postgres creates later; but only SELECT on schema_migrations (see
    protect_migration_log). dashboard_reader: CONNECT, USAGE on public, SELECT on tables now and later; nothing
    else. Both EXECUTE the functions. sbw_reader (the original workshop's dashboard): CONNECT, and search_path
    `sbw, public`. dashboard_reader runs without JIT (it compiles every short dashboard query: 30-300 ms for a
    5-20 ms rollup read, whatever the server's setting). dashboard_reader and sbw_reader: USAGE on schema sbw (created here, so that its default
    privileges exist before migration 0006 fills it) and SELECT on its tables and views now and later. None can
    create objects. Other schemas are not covered.
    """
    _require(passwords, WAREHOUSE_ROLES, "setup_warehouse")
    for role in WAREHOUSE_ROLES:
        cluster.ensure_login_role(role, passwords[role])
    cluster.ensure_database(WAREHOUSE_DB, owner=SUPERUSER)
    _lock_down_maintenance_dbs(cluster)
    etl, reader, sbw_reader, db, su, sbw = (
        sql.Identifier(x) for x in (ETL_WRITER, DASHBOARD_READER, SBW_READER, WAREHOUSE_DB, SUPERUSER, SBW_SCHEMA))
    statements = [
        sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db),
        sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(db, etl),
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}, {}").format(db, reader, sbw_reader),
        sql.SQL("REVOKE ALL ON SCHEMA public FROM PUBLIC"),
        sql.SQL("GRANT USAGE ON SCHEMA public TO {}, {}").format(etl, reader),
        sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(etl),
        sql.SQL("GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {}").format(etl),
        sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(reader),
        sql.SQL("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {}, {}").format(etl, reader),
        sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public "
                "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {}").format(su, etl),
        sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public "
                "GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {}").format(su, etl),
        sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public GRANT SELECT ON TABLES TO {}").format(su, reader),
        sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public "
                "GRANT EXECUTE ON FUNCTIONS TO {}, {}").format(su, etl, reader),
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sbw),
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}, {}").format(sbw, reader, sbw_reader),
        sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}, {}").format(sbw, reader, sbw_reader),
        sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT SELECT ON TABLES TO {}, {}").format(
            su, sbw, reader, sbw_reader),
        sql.SQL("ALTER ROLE {} SET search_path TO {}, public").format(sbw_reader, sbw),
        sql.SQL("ALTER ROLE {} SET jit = off").format(reader),
    ]
    with cluster.connect_admin(WAREHOUSE_DB) as conn, conn.transaction():
        for statement in statements:
            conn.execute(statement)
        _protect_migration_log(conn)  # in the same transaction: etl_writer never holds the grant above on it


def protect_migration_log(cluster: Cluster) -> None:
    """Take back what the default privileges gave etl_writer on schema_migrations (run after each migrate,
    which creates it): only the superuser writes it, the roles read it. A no-op while it does not exist."""
    with cluster.connect_admin(WAREHOUSE_DB) as conn, conn.transaction():
        _protect_migration_log(conn)


def _protect_migration_log(conn: psycopg.Connection) -> None:
    if conn.execute("SELECT to_regclass('public.' || %s)", (MIGRATION_LOG,)).fetchone()[0] is None:
        return
    table, roles = sql.Identifier(MIGRATION_LOG), sql.SQL(", ").join(map(sql.Identifier, (ETL_WRITER, DASHBOARD_READER)))
    conn.execute(sql.SQL("REVOKE ALL ON {} FROM PUBLIC, {}").format(table, roles))
    conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(table, roles))


def setup_oltp(cluster: Cluster, passwords: Mapping[str, str]) -> None:
    """Database shop_oltp owned by shop_app (which owns its schema public and creates the shop's tables); idempotent."""
    _require(passwords, OLTP_ROLES, "setup_oltp")
    cluster.ensure_login_role(SHOP_APP, passwords[SHOP_APP])
    cluster.ensure_database(OLTP_DB, owner=SHOP_APP)
    _lock_down_maintenance_dbs(cluster)
    app, db = sql.Identifier(SHOP_APP), sql.Identifier(OLTP_DB)
    with cluster.connect_admin(OLTP_DB) as conn, conn.transaction():
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
        conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(db, app))
        conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(app))
        conn.execute(sql.SQL("REVOKE ALL ON SCHEMA public FROM PUBLIC"))


def _lock_down_maintenance_dbs(cluster: Cluster) -> None:
    """Application roles only reach their own database."""
    with cluster.connect_admin() as conn:
        for name in ("postgres", "template1"):
            conn.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
