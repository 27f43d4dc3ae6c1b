"""shiny/app.py's Readers: a change's queries run at the same time, each on its own connection of a small pool that
every page shares (tests/browser/test_dashboard.py counts them with pages open), and closing the pool closes every
connection. And shiny's OpenTelemetry naming, skipped while no SDK is installed."""

from __future__ import annotations

import importlib.util
import inspect
import runpy
import threading
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
APP = runpy.run_path(str(ROOT / "shiny" / "app.py"))


class FakeConn:
    def __init__(self) -> None:
        self.closed = False
        self.autocommit = False

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def opened(monkeypatch) -> list[FakeConn]:
    conns: list[FakeConn] = []

    def read_only(dsn: str) -> FakeConn:
        assert dsn == "postgresql://reader@db/dw"
        conns.append(FakeConn())
        return conns[-1]

    monkeypatch.setattr(APP["questions"], "read_only", read_only)
    return conns


def test_the_queries_of_a_change_run_at_once_each_on_its_own_connection(opened):
    readers = APP["Readers"]("postgresql://reader@db/dw")
    together = threading.Barrier(APP["READERS"], timeout=10)  # broken unless all of them wait at the same time

    def question(conn, name):
        together.wait()
        return name, conn

    futures = [readers.submit(question, name) for name in ("kpis", "funnel", "products")]
    results = [future.result(timeout=20) for future in futures]
    assert [name for name, _ in results] == ["kpis", "funnel", "products"]
    assert len({id(conn) for _, conn in results}) == APP["READERS"] == len(opened) == 3
    assert all(conn.autocommit for conn in opened)
    again = [readers.submit(lambda conn: conn).result(timeout=20) for _ in range(6)]
    assert {id(conn) for conn in again} <= {id(conn) for conn in opened} and len(opened) == 3  # connections reused
    readers.close()
    assert all(conn.closed for conn in opened)


def test_a_lost_connection_fails_its_query_and_the_next_one_reconnects(opened):
    readers = APP["Readers"]("postgresql://reader@db/dw", size=1)

    def lost(conn):
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    with pytest.raises(psycopg.OperationalError):
        readers.submit(lost).result(timeout=20)
    assert readers.submit(lambda conn: conn).result(timeout=20) is opened[1] and opened[0].closed
    readers.close()


def test_without_a_dsn_a_query_says_how_to_start_the_dashboard():
    readers = APP["Readers"](None, size=1)
    with pytest.raises(APP["WarehouseError"], match="clickstream dashboard"):
        readers.submit(lambda conn: conn).result(timeout=20)
    readers.close()


def test_after_a_reconnect_each_reader_opens_a_new_connection_on_its_next_query(opened):
    readers = APP["Readers"]("postgresql://reader@db/dw", size=1)
    first = readers.submit(lambda conn: conn).result(timeout=20)
    assert readers.submit(lambda conn: conn).result(timeout=20) is first
    readers.reconnect()  # the warehouse came back: the old connection is dead though not known to be closed
    again = readers.submit(lambda conn: conn).result(timeout=20)
    assert again is not first and first.closed and not again.closed and len(opened) == 2
    readers.close()


def test_without_an_opentelemetry_sdk_shiny_names_nothing_from_the_stack(monkeypatch):
    from shiny import reactive

    assert importlib.util.find_spec("opentelemetry.sdk") is None, "this test expects no OpenTelemetry SDK"

    read = []
    monkeypatch.setattr(inspect, "stack", lambda *args, **kwargs: read.append(args) or [])
    counter = reactive.value(0)
    assert counter._name is None and read == []
    with pytest.raises(ImportError):  # at once: no search of sys.path for the missing SDK
        import opentelemetry.sdk.trace  # noqa: F401


def test_with_an_opentelemetry_sdk_shiny_keeps_its_naming(monkeypatch):
    from shiny.reactive._reactives import Value

    monkeypatch.setattr(Value, "_try_infer_name", lambda self: "counter")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())  # the SDK installed
    APP["without_tracing_work"]()
    assert Value(0)._name == "counter"
