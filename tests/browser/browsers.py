"""Which Chromium the browser tests drive, and with which flags."""

from __future__ import annotations

import shutil
from pathlib import Path

DEBIAN_CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps calling home, and a closed network refuses every call.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NO_CHROMIUM = ("no Chromium: install Debian's (apt-get install chromium, as .ci/run does), "
               "run `playwright install chromium`, or set $CHROMIUM")


def find_chromium(environ_value: str | None, playwright_own: str | None,
                  debian: str = DEBIAN_CHROMIUM) -> tuple[str | None, str]:
    """(executable, where it comes from) or (None, why there is none): $CHROMIUM, then Debian's, then Playwright's."""
    if environ_value:
        found = shutil.which(environ_value)
        return (found, "$CHROMIUM") if found else (None, f"$CHROMIUM={environ_value} is not an executable")
    if shutil.which(debian):
        return debian, "Debian's chromium"
    if playwright_own and shutil.which(playwright_own):
        return playwright_own, "Playwright's chromium"
    return None, NO_CHROMIUM
