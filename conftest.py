"""Test-wide fixtures: one private local stack per pytest run, on free ports in a temporary home.

Integration tests take the `local_stack` fixture; notebooks (nbval) get the same stack through the
environment their kernels inherit. The stack is stopped by pid at the end of the run, even on failure,
and never touches a learner's own stack in ./.clickstream.
"""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from clickstream.local.stack import private_stack
from clickstream.settings import Settings


class SessionStack:
    """Starts lazily, at most once per run."""

    def __init__(self) -> None:
        self._exit = ExitStack()
        self.settings: Settings | None = None

    def ensure(self) -> Settings:
        if self.settings is None:
            self.settings = self._exit.enter_context(private_stack(apply_to_environ=True))
        return self.settings

    def stop(self) -> None:
        self._exit.close()
        self.settings = None


SESSION_STACK = SessionStack()


@pytest.fixture(scope="session")
def local_stack() -> Settings:
    """Settings of the running test stack (started on first use)."""
    return SESSION_STACK.ensure()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.path.suffix == ".ipynb":
        SESSION_STACK.ensure()  # before nbval starts the kernel, so the kernel inherits the stack's environment


def pytest_sessionfinish(session: pytest.Session) -> None:
    SESSION_STACK.stop()
