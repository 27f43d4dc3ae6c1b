"""Test-wide fixtures: one private local stack per pytest run, on free ports in a temporary home.

Integration tests take the `local_stack` fixture; notebooks (nbval) get the same stack through the
environment their kernels inherit. The stack is stopped by pid at the end of the run, even on failure,
and never touches a learner's own stack in ./.clickstream.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from clickstream.local import stack
from clickstream.settings import Settings


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SessionStack:
    """Starts lazily, at most once per run; `settings` describe where it runs."""

    def __init__(self) -> None:
        self.settings: Settings | None = None

    def ensure(self) -> Settings:
        if self.settings is None:
            home = Path(tempfile.mkdtemp(prefix="cs-test-"))
            home.chmod(0o755)  # as root, the postgres user must reach the data dirs inside
            env = {
                "CLICKSTREAM_HOME": str(home),
                "CLICKSTREAM_TARGET": "local",
                **{var: str(free_port()) for var in Settings.PORT_ENV.values()},
            }
            os.environ.update(env)
            self.settings = Settings.from_env()
            try:
                stack.up(self.settings)
            except Exception:
                self.stop()
                raise
        return self.settings

    def stop(self) -> None:
        if self.settings is not None:
            stack.down(self.settings)
            shutil.rmtree(self.settings.home, ignore_errors=True)
            self.settings = None


TEST_STACK = SessionStack()


@pytest.fixture(scope="session")
def local_stack() -> Settings:
    """Settings of the running test stack (started on first use)."""
    return TEST_STACK.ensure()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.path.suffix == ".ipynb":
        TEST_STACK.ensure()  # before nbval starts the kernel, so it inherits the stack's environment


def pytest_sessionfinish(session: pytest.Session) -> None:
    TEST_STACK.stop()
