"""Warehouse credentials in Secrets Manager (moto locally): the only place the ETL gets its DW connection from.

The secret is RDS-style JSON, as cloudformation/analytics.yaml generates it in AWS and `clickstream up`
writes it locally:

    {"username": "etl_writer", "password": "...", "host": "127.0.0.1", "port": 15432,
     "dbname": "clickstream_dw", "engine": "postgres"}

    dsn = dsn_from_secret(clickstream.aws.client("secretsmanager"), os.environ["DW_SECRET_ID"])

Values are never logged; errors name the secret and the keys, not the values.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from botocore.exceptions import ClientError
from psycopg.conninfo import make_conninfo

REQUIRED_KEYS = ("username", "password", "host", "port", "dbname")
DW_ETL_WRITER = "dw_etl_writer"  # Metadata.clickstream.LocalValue of the DW secret in analytics.yaml


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


def dsn_from_secret(secretsmanager: Any, secret_id: str) -> str:
    """A libpq connection string for the role in the secret (contains the password: do not log it)."""
    value = read_secret(secretsmanager, secret_id)
    missing = [key for key in REQUIRED_KEYS if value.get(key) in (None, "")]
    if missing:
        raise SecretError(f"secret {secret_id} lacks {', '.join(missing)}")
    try:
        port = int(value["port"])
    except (TypeError, ValueError):
        raise SecretError(f"secret {secret_id}: port must be a number") from None
    return dsn(str(value["host"]), port, str(value["dbname"]), str(value["username"]), str(value["password"]))


def dw_etl_writer_value(password: str, host: str, port: int) -> dict[str, Any]:
    """The local DW secret's value for etl_writer (what AWS generates from the template's SecretStringTemplate)."""
    return {"username": "etl_writer", "password": password, "host": host, "port": port,
            "dbname": "clickstream_dw", "engine": "postgres"}


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


def dsn(host: str, port: int, dbname: str, user: str, password: str | None = None) -> str:
    """A libpq key=value connection string, each value quoted as needed (contains the password: do not log it)."""
    params = {"host": host, "port": port, "dbname": dbname, "user": user}
    if password is not None:
        params["password"] = password
    return make_conninfo("", **params)
