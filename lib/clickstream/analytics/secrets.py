"""Warehouse credentials in Secrets Manager (moto locally): the only place the ETL gets its DW connection from.

The secret is RDS-style JSON, as cloudformation/analytics.yaml generates it in AWS and `clickstream up`
writes it locally, plus how to reach the server over TLS: `sslmode` and the certificate of the CA that
signed the warehouse's server certificate (PEM; on AWS the warehouse instance adds both at its first boot):

    {"username": "etl_writer", "password": "...", "host": "127.0.0.1", "port": 15432,
     "dbname": "clickstream_dw", "engine": "postgres", "sslmode": "verify-full", "sslrootcert_pem": "-----BEGIN ..."}

    dsn = dsn_from_secret(clickstream.aws.client("secretsmanager"), os.environ["DW_SECRET_ID"])

Values are never logged; errors name the secret and the keys, not the values.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import tempfile
import threading
from typing import Any, Mapping

from botocore.exceptions import ClientError
from psycopg.conninfo import make_conninfo

REQUIRED_KEYS = ("username", "password", "host", "port", "dbname")  # where to connect, and as whom
SSLMODE_KEY = "sslmode"
CA_KEY = "sslrootcert_pem"
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")  # libpq's
VERIFYING_SSLMODES = ("verify-ca", "verify-full")  # these need the CA's certificate
DW_ETL_WRITER = "dw_etl_writer"  # Metadata.clickstream.LocalValue of the DW secret in analytics.yaml

_ca_files: dict[str, str] = {}  # sha256 of a CA PEM -> the private file holding it, for this process
_ca_files_lock = threading.Lock()


class SecretError(RuntimeError):
    """The DW secret is missing, unreadable or incomplete; the message says which and what to do."""


def read_secret(secretsmanager: Any, secret_id: str) -> dict[str, Any]:
    """The secret's JSON object."""
    if not secret_id:
        raise SecretError("no DW secret id: DW_SECRET_ID is empty (it comes from the analytics template)")
    try:
        response = secretsmanager.get_secret_value(SecretId=secret_id)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code == "ResourceNotFoundException":
            raise SecretError(
                f"secret {secret_id} not found: locally `clickstream up` creates it; in AWS deploy "
                "cloudformation/analytics.yaml"
            ) from None
        raise SecretError(f"cannot read secret {secret_id}: {code or error}") from None
    try:
        value = json.loads(response.get("SecretString") or "")
    except ValueError:
        raise SecretError(f"secret {secret_id} is not a JSON object") from None
    if not isinstance(value, dict):
        raise SecretError(f"secret {secret_id} is not a JSON object")
    return value


def check_value(value: Mapping[str, Any], secret_id: str) -> None:
    """Raise SecretError unless the secret says where to connect, as whom and how (REQUIRED_KEYS, a number
    for the port, `sslmode`, and `sslrootcert_pem` when the sslmode verifies the server).

    Fails closed: a secret without `sslmode` (written before the warehouse served TLS) is refused, never read
    as a weaker default. Locally `clickstream up` rewrites the secret at every start; on AWS the warehouse
    instance adds sslmode and its CA at boot (an instance made before that: move it to a new image, DEPLOY.md)."""
    missing = [key for key in (*REQUIRED_KEYS, SSLMODE_KEY) if value.get(key) in (None, "")]
    if value.get(SSLMODE_KEY) in VERIFYING_SSLMODES and not value.get(CA_KEY):
        missing.append(CA_KEY)
    if missing:
        raise SecretError(f"secret {secret_id} lacks {', '.join(missing)}"
                          + (" (the warehouse's TLS settings: the DW instance writes them at its boot, "
                             "`clickstream up` locally)" if {SSLMODE_KEY, CA_KEY} & set(missing) else ""))
    try:
        int(value["port"])
    except (TypeError, ValueError):
        raise SecretError(f"secret {secret_id}: port must be a number") from None
    if value[SSLMODE_KEY] not in SSLMODES:
        raise SecretError(f"secret {secret_id}: sslmode must be one of {', '.join(SSLMODES)}")
    if value.get(CA_KEY) and "-----BEGIN CERTIFICATE-----" not in str(value[CA_KEY]):
        raise SecretError(f"secret {secret_id}: {CA_KEY} is not a PEM certificate")


def dsn_from_value(value: Mapping[str, Any], secret_id: str, host: str | None = None, port: int | None = None) -> str:
    """A libpq connection string for the role in the secret's `value`, over TLS as the secret says (contains the
    password: do not log it). `host` and `port` reach the same server at another address (an SSM port forward
    on 127.0.0.1, which the warehouse's certificate names too)."""
    check_value(value, secret_id)
    return dsn(host or str(value["host"]), port or int(value["port"]), str(value["dbname"]), str(value["username"]),
               str(value["password"]), sslmode=str(value[SSLMODE_KEY]), ca_pem=value.get(CA_KEY) or None)


def dsn_from_secret(secretsmanager: Any, secret_id: str) -> str:
    """A libpq connection string for the role in the secret (contains the password: do not log it)."""
    return dsn_from_value(read_secret(secretsmanager, secret_id), secret_id)


def dw_etl_writer_value(password: str, host: str, port: int, ca_pem: str | None) -> dict[str, Any]:
    """The local DW secret's value for etl_writer (what AWS generates from the template's SecretStringTemplate and
    the instance completes): verify-full against `ca_pem`, the local warehouse's CA; without one (a PostgreSQL
    built without SSL, which clickstream up reports) sslmode disable."""
    tls = {SSLMODE_KEY: "verify-full", CA_KEY: ca_pem} if ca_pem else {SSLMODE_KEY: "disable"}
    return {"username": "etl_writer", "password": password, "host": host, "port": port,
            "dbname": "clickstream_dw", "engine": "postgres", **tls}


def put_secret(secretsmanager: Any, name: str, value: Mapping[str, Any], description: str = "") -> bool:
    """Create secret `name` with `value` as JSON, or store `value` as its new version if it differs.

    Returns True if something was written."""
    text = json.dumps(dict(value), sort_keys=True)
    try:
        current = secretsmanager.get_secret_value(SecretId=name).get("SecretString")
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        secretsmanager.create_secret(Name=name, SecretString=text, Description=description)
        return True
    if current == text:
        return False
    secretsmanager.put_secret_value(SecretId=name, SecretString=text)
    return True


def dsn(host: str, port: int, dbname: str, user: str, password: str | None = None, sslmode: str | None = None,
        ca_pem: str | None = None) -> str:
    """A libpq key=value connection string, each value quoted as needed (contains the password: do not log it).
    With `ca_pem`, sslrootcert names a private file holding it (libpq reads the CA from a file)."""
    params: dict[str, Any] = {"host": host, "port": port, "dbname": dbname, "user": user}
    if password is not None:
        params["password"] = password
    if sslmode is not None:
        params["sslmode"] = sslmode
    if ca_pem is not None:
        params["sslrootcert"] = ca_file(ca_pem)
    return make_conninfo("", **params)


def ca_file(pem: str) -> str:
    """The path of a 0600 temporary file holding `pem`, written once per process (again if someone deleted it)
    and removed at exit."""
    key = hashlib.sha256(pem.encode()).hexdigest()
    with _ca_files_lock:
        path = _ca_files.get(key)
        if path is None or not os.path.exists(path):
            fd, path = tempfile.mkstemp(prefix="clickstream-dw-ca-", suffix=".pem")  # 0600
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(pem)
            atexit.register(_remove_ca_file, path, os.getpid())
            _ca_files[key] = path
        return path


def _remove_ca_file(path: str, owner_pid: int) -> None:
    if os.getpid() == owner_pid:  # not in a forked child that exits through atexit
        try:
            os.unlink(path)
        except OSError:
            pass
