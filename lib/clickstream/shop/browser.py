"""Drive the storefront in a real Chromium from a notebook or a script, and record what its tracker sends.

`chromium()` finds the browser: $CHROMIUM, else Debian's /usr/bin/chromium, else Playwright's own (set
CHROMIUM=/nonexistent to act as if there were none). `shop_in_chromium` clicks a shopper's journey through the
storefront by its accessible names (home, a category, a product, Add to cart, Sign in, Cart, Checkout, Place order),
records every request of the tracker to the ingest API and takes a screenshot of each page.
`shop_with_python_client` sends the events of the same journey with `clickstream.shop.tracker`, for machines
without Chromium; `shop` chooses between them.

Playwright reports no request a page sends while it is being left (`sendBeacon` on `pagehide`), so on each page the
helper lets the tracker send what it has queued, as its interval flush does after a few seconds, and a small
script wraps `navigator.sendBeacon` to write down what a click queues just before the page goes.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pandas as pd

from clickstream.shop import catalogue, shoppers, tracker
from clickstream.shop.storefront import CATEGORY_PAGES, CURRENCY, tracked_product

DEBIAN_CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps calling home, and a closed network refuses every call.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NO_CHROMIUM = ("no Chromium: install Debian's (apt-get install chromium, as .ci/run does), "
               "run `playwright install chromium`, or set $CHROMIUM")
# (event_name, signed in) of the journey in order, as the storefront's pages track it.
JOURNEY = [("page_view", False),                                # home
           ("page_view", False), ("product_list_view", False),  # the category
           ("page_view", False), ("product_view", False),       # the product
           ("add_to_cart", False), ("page_view", False),        # Add to cart, then the cart
           ("page_view", False),                                # the sign-in form
           ("page_view", True), ("login", True),                # home, signed in
           ("page_view", True),                                 # Cart
           ("page_view", True), ("begin_checkout", True),       # Checkout
           ("page_view", True), ("purchase", True)]             # Place order: the confirmation
BEACONS_KEY = "clickstream-browser-helper.beacons"
# Writes down each beacon in sessionStorage (it outlives the page), then sends it as the page asked.
RECORD_BEACONS = """(() => {
  if (!navigator.sendBeacon) return;
  const send = navigator.sendBeacon.bind(navigator);
  navigator.sendBeacon = (url, data) => {
    const queued = send(url, data);
    try {
      const seen = JSON.parse(sessionStorage.getItem(%(key)s) || '[]');
      seen.push({url: String(new URL(url, location.href)), body: typeof data === 'string' ? data : null, queued});
      sessionStorage.setItem(%(key)s, JSON.stringify(seen));
    } catch (error) {}
    return queued;
  };
})();""" % {"key": json.dumps(BEACONS_KEY)}
TAKE_BEACONS = ("() => { const seen = JSON.parse(sessionStorage.getItem(%(key)s) || '[]');"
                " sessionStorage.removeItem(%(key)s); return seen; }" % {"key": json.dumps(BEACONS_KEY)})
FLUSH = "() => window.clickstream ? window.clickstream.flush() : null"


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


def chromium(environ: Mapping[str, str] = os.environ) -> tuple[str | None, str]:
    """find_chromium with $CHROMIUM and Playwright's own browser; (None, why) also when Playwright is missing."""
    if environ.get("CHROMIUM") or shutil.which(DEBIAN_CHROMIUM):
        return find_chromium(environ.get("CHROMIUM"), None)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None, "Playwright is not installed (pip install playwright)"

    def playwright_own() -> str:
        with sync_playwright() as playwright:
            return playwright.chromium.executable_path

    return find_chromium(environ.get("CHROMIUM"), _off_the_event_loop(playwright_own))


def _off_the_event_loop(function: Callable[[], Any]) -> Any:
    """function() in a thread of its own: Playwright's sync API refuses to run where an asyncio loop runs
    (a Jupyter kernel)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function).result()


@dataclass(frozen=True)
class Sent:
    """One request of the tracker to the ingest API."""

    url: str
    sent_by: str  # "fetch", "beacon" or "Python client"
    events: tuple[dict, ...]
    signed_in: bool  # carried the shopper's ID token (Authorization: Bearer)
    status: int | None = None  # None for a beacon: its answer never reaches the page

    @property
    def route(self) -> str:
        return f"POST {urlsplit(self.url).path}"


@dataclass
class Journey:
    """What a shopper's journey sent: by which driver, from which client id, the requests and the screenshots."""

    driver: str  # "Chromium" or "Python client"
    client_id: str
    note: str = ""  # a sentence for people: who drove the journey, and why
    sent: list[Sent] = field(default_factory=list)
    screenshots: dict[str, bytes] = field(default_factory=dict)  # page name: PNG
    order_id: str | None = None  # the storefront's order (None without a browser: no order is placed)

    def requests(self) -> pd.DataFrame:
        """One row per request: route, how it was sent, status, events, signed in or not, the event names."""
        return pd.DataFrame(
            [{"route": sent.route, "sent by": sent.sent_by, "status": sent.status, "events": len(sent.events),
              "signed in": sent.signed_in, "event names": ", ".join(e["event_name"] for e in sent.events)}
             for sent in self.sent],
            columns=["route", "sent by", "status", "events", "signed in", "event names"]).astype({"status": "Int64"})

    def events(self) -> list[dict]:
        """Every event sent, each once (a resent event keeps its event_id), in the order they were sent."""
        unique = {event["event_id"]: event for sent in self.sent for event in sent.events}
        return list(unique.values())


def category_title(product: Mapping[str, Any]) -> str:
    """The name of the product's category link on the storefront ("Laptops")."""
    return next(title for category, title in CATEGORY_PAGES.values() if category == product["category"])


def shop(settings: Any, storefront_url: str, ingest_url: str, product: Mapping[str, Any], email: str, password: str,
         screenshots: Path | None = None, environ: Mapping[str, str] = os.environ) -> Journey:
    """The journey in Chromium when there is one, else with the Python client, signed in through Cognito as the
    storefront signs shoppers in; its `note` says which, and why."""
    executable, where = chromium(environ)
    if executable:
        journey = shop_in_chromium(executable, storefront_url, ingest_url, product, email, password, screenshots)
        journey.note = f"The journey ran in Chromium ({executable}, {where})."
        return journey
    token = shoppers.sign_in(settings, email, password)["IdToken"]
    journey = shop_with_python_client(ingest_url, storefront_url, product, token)
    journey.note = (f"There is no Chromium here ({where}), so the Python client (clickstream.shop.tracker) "
                    "sends the events of the same journey, and no order is placed.")
    return journey


def click_through(page: Any, storefront_url: str, product_name: str, category: str, email: str, password: str,
                  on_page: Callable[[str], None] = lambda name: None) -> str:
    """Home, the category, the product, Add to cart, Sign in as `email`, Cart, Checkout, Place order, by the pages'
    accessible names; on_page(name) on each page. Returns the order id the confirmation shows."""
    page.goto(storefront_url)
    on_page("01-home")
    page.get_by_role("navigation", name="Categories").get_by_role("link", name=category).click()
    page.get_by_role("heading", name=category).wait_for()
    on_page("02-category")
    page.get_by_role("link", name=product_name, exact=True).click()
    page.get_by_role("heading", name=product_name).wait_for()
    on_page("03-product")
    page.get_by_role("button", name="Add to cart").click()
    page.get_by_role("button", name="Checkout").wait_for()
    on_page("04-cart")
    page.get_by_role("link", name="Sign in").click()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    on_page("05-sign-in")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Sign out").wait_for()
    on_page("06-signed-in")
    page.get_by_role("link", name="Cart").click()
    page.get_by_role("button", name="Checkout").wait_for()
    on_page("07-cart")
    page.get_by_role("button", name="Checkout").click()
    page.get_by_role("button", name="Place order").wait_for()
    on_page("08-checkout")
    page.get_by_role("button", name="Place order").click()
    page.get_by_role("heading", name="Thank you for your order").wait_for()
    on_page("09-order")
    return page.url.rsplit("/", 1)[1]


def shop_in_chromium(executable: str, storefront_url: str, ingest_url: str, product: Mapping[str, Any], email: str,
                     password: str, screenshots: Path | None = None) -> Journey:
    """The journey in a headless Chromium (a new profile: a new visitor); screenshots also saved to `screenshots`."""
    return _off_the_event_loop(
        lambda: _shop_in_chromium(executable, storefront_url, ingest_url, product, email, password, screenshots))


def _shop_in_chromium(executable: str, storefront_url: str, ingest_url: str, product: Mapping[str, Any], email: str,
                      password: str, screenshots: Path | None) -> Journey:
    from playwright.sync_api import sync_playwright

    journey = Journey(driver="Chromium", client_id="")
    fetches = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1200, "height": 900})
            context.add_init_script(RECORD_BEACONS)
            page = context.new_page()
            page.on("request", lambda request: request.url.startswith(ingest_url) and fetches.append(request))

            def on_page(name: str) -> None:
                page.wait_for_load_state("domcontentloaded")
                journey.sent.extend(_beacon(beacon) for beacon in page.evaluate(TAKE_BEACONS))
                page.evaluate(FLUSH)  # resolves once the API answered
                journey.sent.extend(_fetch(request) for request in fetches)
                fetches.clear()
                journey.screenshots[name] = page.screenshot(full_page=True)

            journey.order_id = click_through(page, storefront_url, product["name"], category_title(product),
                                             email, password, on_page)
            journey.client_id = page.evaluate("window.clickstream.clientId")
        finally:
            browser.close()
    if screenshots is not None:
        screenshots.mkdir(parents=True, exist_ok=True)
        for name, png in journey.screenshots.items():
            (screenshots / f"{name}.png").write_bytes(png)
    return journey


def _fetch(request: Any) -> Sent:
    """A fetch the page saw answered (Playwright cannot read a keepalive fetch's answer, only its status)."""
    response = request.response()
    return Sent(url=request.url, sent_by="fetch", events=tuple(json.loads(request.post_data)["events"]),
                signed_in="authorization" in request.headers, status=response.status if response else None)


def _beacon(beacon: Mapping[str, Any]) -> Sent:
    return Sent(url=beacon["url"], sent_by="beacon", events=tuple(json.loads(beacon["body"])["events"]),
                signed_in=False)


def journey_pages(storefront_url: str, product: Mapping[str, Any], order_id: str
                  ) -> list[tuple[str, bool, list[tuple[str, dict]]]]:
    """(page URL, signed in, [(event_name, fields)]) of each request the journey's pages send, in order."""
    category_slug = next(slug for slug, (category, _) in CATEGORY_PAGES.items() if category == product["category"])
    tracked = {"product": tracked_product({**product, "product_id": product["id"]})}
    price = str(catalogue.unit_price(product))
    home, cart = f"{storefront_url}/", f"{storefront_url}/cart"
    return [
        (home, False, [("page_view", {})]),
        (f"{storefront_url}/category/{category_slug}", False,
         [("page_view", {}), ("product_list_view", {"properties": {"category": product["category"]}})]),
        (f"{storefront_url}{product['url_path']}", False, [("page_view", {}), ("product_view", tracked)]),
        (f"{storefront_url}{product['url_path']}", False, [("add_to_cart", {**tracked, "quantity": 1})]),
        (cart, False, [("page_view", {})]),
        (f"{storefront_url}/account/sign-in", False, [("page_view", {})]),
        (home, True, [("page_view", {}), ("login", {})]),
        (cart, True, [("page_view", {})]),
        (f"{storefront_url}/checkout", True,
         [("page_view", {}), ("begin_checkout", {"value": price, "currency": CURRENCY})]),
        (f"{storefront_url}/orders/{order_id}", True,
         [("page_view", {}), ("purchase", {"order_id": order_id, "value": price, "currency": CURRENCY})]),
    ]


def shop_with_python_client(ingest_url: str, storefront_url: str, product: Mapping[str, Any], id_token: str,
                            transport: httpx.BaseTransport | None = None) -> Journey:
    """The journey's events sent by clickstream.shop.tracker, one request per page as the browser sends them;
    the signed-in pages' to the authorized route with `id_token`. No order is placed: the purchase carries a
    made-up order id."""
    journey = Journey(driver="Python client", client_id=str(uuid.uuid4()))
    session_id, statuses = str(uuid.uuid4()), []
    hooks = {"response": [lambda response: statuses.append(response.status_code)]}
    referrer = current = None
    with httpx.Client(timeout=10.0, transport=transport, event_hooks=hooks) as client:
        for page_url, signed_in, tracked in journey_pages(storefront_url, product, f"no-order-{uuid.uuid4()}"):
            if page_url != current:
                referrer, current = current, page_url
            events = [{"event_id": str(uuid.uuid4()), "event_name": name, "client_ts": _now(), "sent_ts": _now(),
                       "client_id": journey.client_id, "session_id": session_id,
                       "user_login_state": "logged_in" if signed_in else "anonymous", "page_url": page_url,
                       "referrer": referrer, "utm": None, **fields} for name, fields in tracked]
            url = f"{ingest_url}/user" if signed_in else ingest_url
            headers = {"authorization": f"Bearer {id_token}"} if signed_in else {}
            tracker.send_events(url, events, batch_size=len(events), client=client, headers=headers)
            journey.sent.append(Sent(url=url, sent_by="Python client", events=tuple(events), signed_in=signed_in,
                                     status=statuses[-1]))
    return journey


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
