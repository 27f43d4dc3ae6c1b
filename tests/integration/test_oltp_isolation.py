"""No analytics module or role can reach the shop's OLTP database: the warehouse's roles cannot log in to the OLTP
cluster, no Lambda of the templates nor the local API holds its credentials, and no module of
clickstream.analytics or clickstream.ingestion imports the shop's database code or reads its credentials file."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import grimp
import psycopg
import pytest

from clickstream.infra.templates import load_stacks
from clickstream.local import postgres, stack

pytestmark = pytest.mark.integration

ANALYTICS_PACKAGES = ("clickstream.analytics", "clickstream.ingestion")
OLTP_CODE = ("clickstream.shop.oltp", "clickstream.local")  # the shop's queries; the stack's credential files
# What reading the OLTP's credentials looks like in source: its credentials file, its DSN variable, its role.
OLTP_CREDENTIALS_IN_SOURCE = re.compile(r"oltp\.json|OLTP_DSN|shop_app|[\"']credentials[\"']", re.IGNORECASE)


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("clickstream", cache_dir=None)


@pytest.fixture(scope="module")
def oltp_secrets(local_stack) -> list[str]:
    """What would let a program into shop_oltp: shop_app's password and DSN."""
    passwords = json.loads(stack.credentials_file(local_stack, "oltp").read_text())
    return [*passwords.values(), stack.shop_dsn(local_stack)]


def holds_any(environment: dict[str, str], secrets: list[str]) -> list[str]:
    """The names of the variables whose value contains one of `secrets` or that name the OLTP's DSN."""
    return [name for name, value in environment.items()
            if "OLTP_DSN" in name or any(secret in value for secret in secrets)]


def module_source(module: str) -> str:
    return Path(importlib.util.find_spec(module).origin).read_text(encoding="utf-8")


def process_environment(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    return dict(entry.split("=", 1) for entry in entries if "=" in entry)


@pytest.mark.parametrize("role", stack.DW_ROLES)
def test_the_warehouse_roles_cannot_log_in_to_the_oltp_cluster(local_stack, role):
    password = json.loads(stack.credentials_file(local_stack, "dw").read_text())[role]
    with psycopg.connect(stack.warehouse_dsn(local_stack, role), connect_timeout=10) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (role,), "the password is the warehouse's"
    with psycopg.connect(stack.shop_dsn(local_stack), connect_timeout=10) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("shop_app",), "the OLTP cluster takes logins"
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,)).fetchone() == (0,)

    with pytest.raises(psycopg.OperationalError, match=role):
        psycopg.connect(postgres.dsn(local_stack.host, local_stack.oltp_port, stack.OLTP_DATABASE, role, password),
                        connect_timeout=10)


def test_no_lambda_of_the_templates_holds_the_oltp_credentials(local_stack, oltp_secrets):
    functions = {logical_id: function for template in load_stacks(local_stack)
                 for logical_id, function in template.functions().items()}
    assert {"EtlFunction", "IngestFunction"} <= set(functions)
    assert {logical_id: holds_any(function.environment, oltp_secrets)
            for logical_id, function in functions.items()} == {logical_id: [] for logical_id in functions}


def test_only_the_storefront_process_holds_the_oltp_credentials(local_stack, oltp_secrets):
    services = stack.read_state(local_stack)["services"]
    assert holds_any(process_environment(services["api"]["pid"]), oltp_secrets) == []
    assert holds_any(process_environment(services["storefront"]["pid"]), oltp_secrets) == ["CLICKSTREAM_OLTP_DSN"]


@pytest.mark.parametrize("package", ANALYTICS_PACKAGES)
def test_no_analytics_module_imports_the_shops_database_code(graph, package):
    assert graph.find_modules_that_directly_import("clickstream.shop.oltp"), "the graph sees the shop's imports"
    for imported in OLTP_CODE:
        assert graph.find_shortest_chains(importer=package, imported=imported, as_packages=True) == set()


@pytest.mark.parametrize("package", ANALYTICS_PACKAGES)
def test_no_module_analytics_runs_reads_the_oltp_credentials(graph, package):
    """Every module an analytics package runs (its own and what they import) is free of the OLTP's credentials."""
    modules = {package, *graph.find_descendants(package), *graph.find_upstream_modules(package, as_package=True)}
    sources = {module: module_source(module) for module in modules}
    assert OLTP_CREDENTIALS_IN_SOURCE.search(module_source("clickstream.local.stack")), "the pattern finds a reader"
    assert [module for module, source in sources.items() if OLTP_CREDENTIALS_IN_SOURCE.search(source)] == []
