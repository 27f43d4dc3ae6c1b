"""Which Chromium the browser tests drive, and with which flags: the package's helper decides (clickstream.shop.browser)."""

from clickstream.shop.browser import CHROMIUM_ARGS, DEBIAN_CHROMIUM, NO_CHROMIUM, find_chromium

__all__ = ["CHROMIUM_ARGS", "DEBIAN_CHROMIUM", "NO_CHROMIUM", "find_chromium"]
