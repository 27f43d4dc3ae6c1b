"""Fixtures of the browser tests: a real Chromium driven by Playwright, and a site serving the test pages.

Chromium is $CHROMIUM, else Debian's /usr/bin/chromium, else Playwright's own; without one the browser tests are
skipped with the reason (`.ci/run` installs Debian's). Every server and browser started here is stopped here.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, sync_playwright

from browsers import CHROMIUM_ARGS, find_chromium

ROOT = Path(__file__).resolve().parents[2]
PAGES = Path(__file__).parent / "pages"
STATIC = ROOT / "frontend" / "static"


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        executable, where = find_chromium(os.environ.get("CHROMIUM"), playwright.chromium.executable_path)
        if executable is None:
            pytest.skip(where)
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class SiteHandler(SimpleHTTPRequestHandler):
    """The test pages at /, the storefront's static files (the tracker) at /static/."""

    def translate_path(self, path: str) -> str:
        if path.startswith("/static/"):
            self.directory, path = str(STATIC), path.removeprefix("/static")
        return super().translate_path(path)

    def log_message(self, format: str, *args) -> None:
        pass


@pytest.fixture(scope="session")
def site() -> Iterator[str]:
    """Base URL of the test pages (http://127.0.0.1:<free port>), a loopback origin other than the API's."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SiteHandler, directory=str(PAGES)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile (empty localStorage: a new visitor), closed after the test."""
    context = browser.new_context()
    try:
        yield context
    finally:
        context.close()
