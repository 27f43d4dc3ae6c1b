"""Where the ETL's worker processes come from (etl.worker_context): copies of a process without threads, else the
fork server."""

from __future__ import annotations

import threading

from clickstream.analytics import etl, transform


def test_a_process_without_other_threads_forks_its_workers_with_the_user_agent_parsers_imported(monkeypatch):
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    monkeypatch.setattr(etl, "start_worker_server", lambda: None)
    transform.user_agent_parsers.cache_clear()
    context = etl.worker_context()
    assert context.get_start_method() == "fork"
    assert transform.user_agent_parsers.cache_info().currsize == 1, "imported before the fork, not in each worker"


def test_a_process_with_threads_uses_the_fork_server(monkeypatch):
    server = object()
    monkeypatch.setattr(threading, "active_count", lambda: 2)
    monkeypatch.setattr(etl, "start_worker_server", lambda: server)
    assert etl.worker_context() is server
