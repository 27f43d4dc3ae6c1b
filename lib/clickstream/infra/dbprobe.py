"""Trying PostgreSQL logins, to show who can reach which database: a connection's outcome as one line, and what a
server holds (its databases and login roles) as the connecting role sees it."""

from __future__ import annotations

import re

import psycopg

CONNECT_TIMEOUT_S = 5


def try_connect(dsn: str, timeout_s: float = CONNECT_TIMEOUT_S) -> str:
    """"connected as ROLE to DATABASE", or "refused: " and the server's reason (its FATAL line), or the client's
    first line when no server answered."""
    try:
        with psycopg.connect(dsn, connect_timeout=timeout_s) as conn:
            user, database = conn.execute("select current_user, current_database()").fetchone()
        return f"connected as {user} to {database}"
    except psycopg.OperationalError as error:
        reason = re.search(r"FATAL:\s+(.*)", str(error))
        return "refused: " + (reason.group(1).strip() if reason else str(error).strip().splitlines()[0])


def server_contents(dsn: str, timeout_s: float = CONNECT_TIMEOUT_S) -> dict[str, str]:
    """Who we are logged in as, and the server's databases (templates and `postgres` aside) and non-superuser
    login roles, comma-separated in name order."""
    with psycopg.connect(dsn, connect_timeout=timeout_s) as conn:
        user, database = conn.execute("select current_user, current_database()").fetchone()
        databases = [r[0] for r in conn.execute(
            "select datname from pg_database where not datistemplate and datname <> 'postgres' order by 1")]
        roles = [r[0] for r in conn.execute("select rolname from pg_roles where rolcanlogin and not rolsuper order by 1")]
    return {"logged in as": f"{user} on {database}", "databases": ", ".join(databases), "login roles": ", ".join(roles)}
