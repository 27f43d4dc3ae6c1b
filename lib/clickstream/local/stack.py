"""The local stack: moto (AWS endpoint), the DW and OLTP PostgreSQL clusters, the local HTTP API, the
shop's storefront and the dashboard (shiny/app.py).

`up` is idempotent, `down` stops by pid what `up` started and keeps all data, `status` reports health.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

from clickstream import aws
from clickstream.analytics import secrets
from clickstream.local import scheduler
from clickstream.infra.templates import TemplateError, load_stacks, recorded_physical_ids
from clickstream.local import credentials, dashboard
from clickstream.local.locks import folder_lock
from clickstream.local.postgres import Cluster, PortInUseError, dsn, port_is_free, setup_oltp, setup_warehouse
from clickstream.settings import Settings

DW_DATABASE = "clickstream_dw"
OLTP_DATABASE = "shop_oltp"
DW_ROLES = ["etl_writer", "dashboard_reader", "sbw_reader"]
OLTP_ROLES = ["shop_app"]
PROCESS_MODULES = {
    "aws": "clickstream.local.moto_runner",
    "api": "clickstream.local.api_server",
    "storefront": "clickstream.shop.storefront",
    "dashboard": "clickstream.local.dashboard",
    "scheduler": "clickstream.local.scheduler",  # only with `up --schedule`; no port
}
STOP_TIMEOUT = {"aws": 10.0}  # moto has nothing to save at stop: every S3 change is on disk when acknowledged
PORT_HINTS = {
    "aws": "--aws-port or CLICKSTREAM_AWS_PORT",
    "api": "--api-port or CLICKSTREAM_API_PORT",
    "dw": "--dw-port or CLICKSTREAM_DW_PORT",
    "oltp": "--oltp-port or CLICKSTREAM_OLTP_PORT",
    "storefront": "--storefront-port or CLICKSTREAM_STOREFRONT_PORT",
    "dashboard": "--dashboard-port or CLICKSTREAM_DASHBOARD_PORT",
}
HTTP_SERVICES = ("aws", "api", "storefront", "dashboard")


class StackError(RuntimeError):
    """The local stack could not be started or reached; the message says what to do."""


# --- processes ---------------------------------------------------------------------------
def process_alive(pid: int | None, module: str) -> bool:
    """True if `pid` runs `module` (a loose check; `owns` decides what `down` may signal)."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return module in cmdline


def process_identity(pid: int) -> dict | None:
    """{"started": start time in clock ticks since boot (/proc/pid/stat field 22), "cmdline": [...]}."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return {"started": int(stat.rsplit(") ", 1)[1].split()[19]),
            "cmdline": [arg.decode(errors="surrogateescape") for arg in cmdline.split(b"\0")[:-1]]}


def owns(settings: Settings, name: str, svc: dict | None) -> bool:
    """True if the process recorded for service `name` is still the one `up` started: same pid, start time
    and command line (which holds the port and the state folder). A record without start time (written by an
    older version) must have exactly the command line `up` uses."""
    if not svc or not svc.get("pid"):
        return False
    identity = process_identity(svc["pid"])
    if identity is None:
        return False
    if "started" in svc:
        return identity == {"started": svc["started"], "cmdline": svc.get("cmdline")}
    return identity["cmdline"] == service_argv(settings, name, svc.get("port"))


def service_argv(settings: Settings, name: str, port: int | None) -> list[str]:
    argv = [sys.executable, "-m", PROCESS_MODULES[name]]
    if name != "scheduler":
        argv += ["--host", settings.host, "--port", str(port)]
    if name == "aws":
        argv += ["--state-dir", str(settings.home / "s3")]
    return argv


def stop_process(pid: int, timeout: float = 60.0, started: int | None = None) -> None:
    """SIGTERM, wait for the process to exit, SIGKILL only as a last resort.

    With `started`, signals go through a pidfd opened while `pid` still had that start time, so a process
    that took over the pid meanwhile is never signalled."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if started is not None and (process_identity(pid) or {}).get("started") != started:
            return
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGTERM)
        except ProcessLookupError:
            return
        exited = select.select([pidfd], [], [], timeout)[0]  # readable once the process has exited
        if not exited:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            select.select([pidfd], [], [], 10)
        try:
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
        except ChildProcessError:
            pass
    finally:
        os.close(pidfd)


def spawn(name: str, argv: list[str], env: dict[str, str], log_file: Path) -> subprocess.Popen:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        return subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )


def wait_until(ready: Callable[[], bool], what: str, log_file: Path, process: subprocess.Popen,
               timeout: float = 30) -> None:
    """Wait for `ready()`; if the process exits or time runs out, stop it and raise with its log's tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if ready():
            return
        time.sleep(0.1)
    stop_process(process.pid, timeout=10)
    tail = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
    raise StackError(f"{what} did not become ready; last lines of {log_file}:\n{tail}")


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # local services: never through a proxy


def http_ok(url: str) -> bool:
    """Does a service answer `url` with anything but a server error, within a second?"""
    try:
        with _DIRECT.open(url, timeout=1.0) as response:
            return response.status < 500
    except urllib.error.HTTPError as error:
        return error.code < 500
    except (OSError, ValueError):
        return False


# --- state -------------------------------------------------------------------------------
def read_state(settings: Settings) -> dict:
    try:
        return json.loads(settings.state_file.read_text())
    except (OSError, ValueError):
        return {"services": {}}


def write_state(settings: Settings, state: dict) -> None:
    tmp = settings.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, settings.state_file)


def stack_lock(settings: Settings):
    """One `up`/`down` at a time per home folder."""
    settings.home.mkdir(parents=True, exist_ok=True)
    return folder_lock(settings.home)


def clusters(settings: Settings) -> dict[str, Cluster]:
    return {
        "dw": Cluster("dw", settings.home / "pg" / "dw", settings.dw_port, settings.host, PORT_HINTS["dw"],
                      hostssl_roles=("etl_writer",)),
        "oltp": Cluster("oltp", settings.home / "pg" / "oltp", settings.oltp_port, settings.host, PORT_HINTS["oltp"]),
    }


def credentials_file(settings: Settings, cluster: str) -> Path:
    return settings.home / "credentials" / f"{cluster}.json"


# --- up / down / status --------------------------------------------------------------------
def up(settings: Settings, progress: Callable[[str], None] = lambda _: None, schedule: bool = False) -> dict:
    """Start whatever is not running yet; a second call while everything runs changes nothing.

    With `schedule` (or when an earlier `up --schedule` recorded it and no `down` came since) the
    scheduler process also runs the templates' EventBridge schedules.
    """
    if settings.target != "local":
        raise StackError("`up` starts the local stack; the aws target is deployed with CloudFormation instead")
    with stack_lock(settings):
        state = read_state(settings)
        services = state.setdefault("services", {})
        env = {
            **os.environ,
            "CLICKSTREAM_HOME": str(settings.home),
            "CLICKSTREAM_TARGET": "local",
            **{var: str(getattr(settings, field)) for field, var in Settings.PORT_ENV.items()},
        }
        _check_ports(settings, services)
        services["aws"] = _ensure_process(settings, "aws", env, services.get("aws"), progress)
        write_state(settings, state)
        _ensure_buckets(settings)
        from clickstream.local import cognito  # PyJWT and cryptography: only `up` needs them

        cognito.ensure_user_pools(settings, progress)

        dw_passwords = credentials.load_or_create(credentials_file(settings, "dw"), DW_ROLES)
        oltp_passwords = credentials.load_or_create(credentials_file(settings, "oltp"), OLTP_ROLES)
        for name, cluster in clusters(settings).items():
            if cluster.ensure_started():
                progress(f"started PostgreSQL {name} on {settings.host}:{cluster.port}")
            (setup_warehouse if name == "dw" else setup_oltp)(cluster, dw_passwords if name == "dw" else oltp_passwords)
            if name == "dw":
                if warning := cluster.tls_warning():
                    progress(f"warning: {warning}")
                _migrate_warehouse(cluster, progress)
            else:
                _seed_shop(cluster, oltp_passwords, progress)
            services[name] = {"port": cluster.port, "pid": cluster.pid, "data_dir": str(cluster.data_dir)}
            write_state(settings, state)
        _ensure_secrets(settings, dw_passwords, progress)

        services["api"] = _ensure_process(settings, "api", env, services.get("api"), progress)
        write_state(settings, state)
        services["storefront"] = _ensure_process(settings, "storefront", _storefront_env(settings, env),
                                                 services.get("storefront"), progress)
        write_state(settings, state)
        services["dashboard"] = _ensure_process(
            settings, "dashboard", dashboard.app_env(env, warehouse_dsn(settings, "dashboard_reader")),
            services.get("dashboard"), progress)
        write_state(settings, state)
        if schedule or "scheduler" in services:
            services["scheduler"] = _ensure_scheduler(settings, env, services.get("scheduler"), progress)
            write_state(settings, state)
    return status(settings)


def _check_ports(settings: Settings, services: dict) -> None:
    """Fail before starting anything if a port we need is held by another program."""
    pg = clusters(settings)
    for name in ("aws", "dw", "oltp", "api", "storefront", "dashboard"):
        port = getattr(settings, f"{name}_port")
        ours = pg[name].is_running() if name in pg else owns(settings, name, services.get(name))
        if not ours and not port_is_free(settings.host, port):
            raise PortInUseError(port, PORT_HINTS[name])


def _ensure_process(settings: Settings, name: str, env: dict, previous: dict | None, progress: Callable) -> dict:
    port = getattr(settings, f"{name}_port")
    if previous and previous.get("port") == port and owns(settings, name, previous):
        return previous
    if owns(settings, name, previous):
        raise StackError(
            f"{name} already runs on port {previous['port']}; run `clickstream down` before changing its port"
        )
    if not port_is_free(settings.host, port):
        raise PortInUseError(port, PORT_HINTS[name])
    log_file = settings.home / "logs" / f"{name}.log"
    process = spawn(name, service_argv(settings, name, port), env, log_file)
    pid = process.pid
    url = f"http://{settings.host}:{port}/"
    wait_until(lambda: http_ok(url), f"{name} on port {port}", log_file, process)
    progress(f"started {name} on {url} (pid {pid})")
    return {"port": port, "pid": pid, "log": str(log_file), **_identity_of_child(process)}


def _storefront_env(settings: Settings, env: dict) -> dict:
    """The storefront's environment: the only one with shop_app's DSN, plus its cookie key and the ingest URL."""
    key = credentials.load_or_create(credentials_file(settings, "storefront"), ["cookie_secret"])["cookie_secret"]
    return {**env, "CLICKSTREAM_OLTP_DSN": shop_dsn(settings), "CLICKSTREAM_STOREFRONT_SECRET": key,
            "CLICKSTREAM_INGEST_URL": f"{settings.api_url}/clickstream"}


def _ensure_scheduler(settings: Settings, env: dict, previous: dict | None, progress: Callable) -> dict:
    """The background process running the templates' schedules (no port: healthy = alive)."""
    if owns(settings, "scheduler", previous):
        return previous
    log_file = settings.home / "logs" / "scheduler.log"
    scheduler.status_file(settings).unlink(missing_ok=True)
    process = spawn("scheduler", service_argv(settings, "scheduler", None), env, log_file)
    pid = process.pid
    # Ready once it has loaded the templates and handlers and written its first status.
    wait_until(lambda: scheduler.read_status(settings).get("pid") == pid, "the scheduler", log_file, process)
    for job in scheduler.read_status(settings).get("jobs", []):
        progress(f"scheduled {job['function']} ({job['rule']}: {job['expression']}), next run {job['next_run']}")
    progress(f"started scheduler (pid {pid})")
    return {"pid": pid, "log": str(log_file), **_identity_of_child(process)}


def _identity_of_child(process: subprocess.Popen) -> dict:
    """The start time and command line to record for a child that is running (so `down` knows it later)."""
    identity = process_identity(process.pid)
    if identity is None or process.poll() is not None:
        raise StackError(f"process {process.pid} ({process.args}) exited right after it started")
    return identity


def _migrate_warehouse(cluster: Cluster, progress: Callable[[str], None]) -> None:
    """Apply the sql/migrations not applied yet (as the superuser; etl_writer and dashboard_reader get their
    privileges on the new tables from setup_warehouse's default privileges, but not write on schema_migrations)."""
    from clickstream.analytics import warehouse  # here: the other commands need not import the ETL's dependencies
    from clickstream.local.postgres import protect_migration_log

    applied = warehouse.migrate(cluster.admin_dsn(DW_DATABASE))
    protect_migration_log(cluster)  # migrate may have just created schema_migrations, with etl_writer's defaults
    if applied:
        progress(f"applied DW migrations {', '.join(applied)}")


def _seed_shop(cluster: Cluster, passwords: dict[str, str], progress: Callable[[str], None]) -> None:
    """The shop's tables, catalogue and customers in shop_oltp, created and upserted as shop_app."""
    from clickstream.shop import oltp

    result = oltp.seed(cluster.app_dsn(OLTP_DATABASE, "shop_app", passwords["shop_app"]))
    if result.changed or result.migrations:
        progress(result.describe())


def _ensure_secrets(settings: Settings, dw_passwords: dict[str, str], progress: Callable[[str], None]) -> None:
    """Write the templates' secrets that have a local value into the local endpoint (moto keeps them in
    memory only, so this runs at every `up`). The DW secret gets etl_writer's password from the 0600
    credentials file, the local DW's address and its CA (verify-full, as on AWS)."""
    client = aws.client("secretsmanager", settings)
    for stack in load_stacks(settings):
        for secret in stack.secrets():
            if secret.local_value is None:
                continue
            if secret.local_value != secrets.DW_ETL_WRITER:
                raise TemplateError(f"{stack.path.name}: {secret.logical_id} has an unknown Metadata.clickstream."
                                    f"LocalValue {secret.local_value!r} (known: {secrets.DW_ETL_WRITER})")
            value = secrets.dw_etl_writer_value(dw_passwords["etl_writer"], settings.host, settings.dw_port,
                                                clusters(settings)["dw"].ca_pem())
            if secrets.put_secret(client, secret.name, value, "etl_writer of the local warehouse (clickstream up)"):
                progress(f"wrote secret {secret.name} (etl_writer of clickstream_dw)")


def dw_secret_id(stacks: list) -> str:
    """The name of the DW secret the templates declare for the ETL."""
    names = [secret.name for stack in stacks for secret in stack.secrets()
             if secret.local_value == secrets.DW_ETL_WRITER]
    if len(names) != 1:
        raise TemplateError(f"expected one secret with Metadata.clickstream.LocalValue {secrets.DW_ETL_WRITER}, "
                            f"found {names}")
    return names[0]


def _ensure_buckets(settings: Settings) -> None:
    """Create every bucket the templates declare, with its default encryption."""
    s3 = aws.client("s3", settings)
    existing = {bucket["Name"] for bucket in s3.list_buckets().get("Buckets", [])}
    for stack in load_stacks(settings):
        for bucket in stack.buckets():
            if bucket.name not in existing:
                s3.create_bucket(Bucket=bucket.name)
            if bucket.encryption:
                s3.put_bucket_encryption(
                    Bucket=bucket.name,
                    ServerSideEncryptionConfiguration={
                        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": bucket.encryption}}]
                    },
                )


def down(settings: Settings, progress: Callable[[str], None] = lambda _: None) -> list[str]:
    """Stop, by pid, what `up` started (a recorded pid now running something else is left alone): the
    scheduler, the dashboard, the storefront and the API first, then moto (S3 is already on disk, so the stop is
    quick), then the clusters."""
    stopped = []
    with stack_lock(settings):
        state = read_state(settings)
        services = state.get("services", {})
        for name in ("scheduler", "dashboard", "storefront", "api", "aws"):
            svc = services.pop(name, None)
            if owns(settings, name, svc):
                stop_process(svc["pid"], timeout=STOP_TIMEOUT.get(name, 60.0), started=svc.get("started"))
                stopped.append(name)
                progress(f"stopped {name} (pid {svc['pid']})")
        for name, cluster in clusters(settings).items():
            services.pop(name, None)
            if cluster.stop():
                stopped.append(name)
                progress(f"stopped PostgreSQL {name} (data kept in {cluster.data_dir})")
        if settings.home.exists():
            write_state(settings, state)
    return stopped


def status(settings: Settings) -> dict:
    """Endpoints, DSNs and each service's health, as `clickstream status --json` prints them."""
    if settings.target != "local":
        raise StackError("status shows the local stack; on aws the endpoints are the outputs of the stacks that "
                         "`clickstream deploy --target aws` creates (cloudformation/DEPLOY.md)")
    services = read_state(settings).get("services", {})
    health = service_health(settings, (*HTTP_SERVICES, "dw", "oltp"))
    pg = clusters(settings)
    if "scheduler" in services:  # started by `up --schedule`
        pid = services["scheduler"].get("pid")
        alive = owns(settings, "scheduler", services["scheduler"])
        report = scheduler.read_status(settings) if alive else {}
        health["scheduler"] = {"healthy": alive, "port": None, "pid": pid if alive else None,
                               "jobs": report.get("jobs", []) if report.get("pid") == pid else []}

    stacks = load_stacks(settings)
    ingestion = next(s for s in stacks if s.path.stem == "ingestion")
    pool_ids = recorded_physical_ids(settings).get("frontend", {})
    readers = _passwords(settings, "dw")
    return {
        "target": settings.target,
        "home": str(settings.home),
        "healthy": all(h["healthy"] for h in health.values()),
        "api_url": settings.api_url,
        "ingest_url": f"{settings.api_url}/clickstream",
        "storefront_url": settings.storefront_url,
        "dashboard_url": settings.dashboard_url,
        "aws_endpoint_url": settings.aws_endpoint_url,
        "region": settings.region,
        "raw_bucket": ingestion.outputs()["RawBucketName"],
        "dw_dsn": dsn(settings.host, settings.dw_port, DW_DATABASE, "dashboard_reader", readers.get("dashboard_reader", "")),
        "dw_admin_dsn": pg["dw"].admin_dsn(DW_DATABASE),
        "dw_secret_id": dw_secret_id(stacks),
        "cognito_user_pool_id": pool_ids.get("UserPool"),
        "cognito_client_id": pool_ids.get("UserPoolClient"),
        "services": health,
    }


def service_health(settings: Settings, names: Iterable[str]) -> dict[str, dict]:
    """Health, port and pid of the named services (HTTP_SERVICES and the clusters `dw`, `oltp`), asking only
    those: a job that needs two services does not wait for the others' answers."""
    services = read_state(settings).get("services", {})
    pg = clusters(settings)
    health = {}
    for name in names:
        if name in pg:
            running = pg[name].is_running()
            health[name] = {"healthy": running, "port": pg[name].port, "pid": pg[name].pid if running else None}
            continue
        svc = services.get(name, {})
        port = svc.get("port", getattr(settings, f"{name}_port"))
        alive = owns(settings, name, svc) and http_ok(f"http://{settings.host}:{port}/")
        health[name] = {"healthy": alive, "port": port, "pid": svc.get("pid") if alive else None}
    return health


def _passwords(settings: Settings, cluster: str) -> dict[str, str]:
    path = credentials_file(settings, cluster)
    return json.loads(path.read_text()) if path.exists() else {}


def _role_password(settings: Settings, cluster: str, role: str) -> str:
    password = _passwords(settings, cluster).get(role)
    if password is None:
        raise StackError(f"no local password for {role}: run `clickstream up` first")
    return password


def shop_dsn(settings: Settings) -> str:
    """The DSN of the shop's application role shop_app on shop_oltp (the OLTP cluster)."""
    return clusters(settings)["oltp"].app_dsn(OLTP_DATABASE, "shop_app", _role_password(settings, "oltp", "shop_app"))


def warehouse_dsn(settings: Settings, role: str) -> str:
    """The DSN of one of the warehouse's application roles (etl_writer, dashboard_reader) over TCP; a role that
    connects over TLS only (etl_writer) as its secret has it: verify-full against the warehouse's CA, or sslmode
    disable when that PostgreSQL serves no TLS."""
    password, dw = _role_password(settings, "dw", role), clusters(settings)["dw"]
    if role in dw.hostssl_roles:
        return secrets.dsn_from_value(secrets.dw_etl_writer_value(password, settings.host, settings.dw_port,
                                                                  dw.ca_pem()) | {"username": role}, role)
    return dsn(settings.host, settings.dw_port, DW_DATABASE, role, password)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@contextmanager
def private_stack(apply_to_environ: bool = False, keep: Path | None = None) -> Iterator[Settings]:
    """A throwaway stack on free ports in a temporary home, stopped and deleted on exit (tests, benchmarks).

    With `apply_to_environ` the process environment points at it, so subprocesses and notebook
    kernels started inside the block use it too. With `keep` (a new folder) the home is that folder and is
    kept after the stop: a CLICKSTREAM_HOME that `clickstream --home KEEP up` restarts.
    """
    if keep is not None:
        keep.mkdir(parents=True)
    home = keep.resolve() if keep is not None else Path(tempfile.mkdtemp(prefix="cs-"))
    home.chmod(0o755)  # as root, the postgres user must reach the data dirs inside
    env = {
        "CLICKSTREAM_HOME": str(home),
        "CLICKSTREAM_TARGET": "local",
        **{var: str(free_port()) for var in Settings.PORT_ENV.values()},
    }
    if apply_to_environ:
        os.environ.update(env)
    settings = Settings.from_env(env)
    try:
        up(settings)
        yield settings
    finally:
        down(settings)
        if keep is None:
            shutil.rmtree(home, ignore_errors=True)
