"""clickstream.infra.dbprobe without a server: a refused connection is one line that says why."""

import socket

from clickstream.infra import dbprobe


def test_nobody_listening_is_refused_with_the_clients_reason():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: nothing accepts
        outcome = dbprobe.try_connect(f"host=127.0.0.1 port={port} dbname=x user=y", timeout_s=2)
    assert outcome.startswith("refused: ") and str(port) in outcome and "\n" not in outcome
