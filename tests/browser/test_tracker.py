"""frontend/static/clickstream.js in a real Chromium, posting over real HTTP to the test stack's ingest API; what it
sent is counted in the raw zone (moto S3), not after the warehouse's de-duplication."""

from __future__ import annotations

import gzip
import json
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, Request, Route

from clickstream import aws, contract
from clickstream.ingestion import raw
from clickstream.local import stack
from clickstream.shop import shoppers

pytestmark = [pytest.mark.browser, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
TRACKER = ROOT / "frontend" / "static" / "clickstream.js"
MAX_GZIPPED_BYTES = 5 * 1024
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
LAPTOP = {"id": "P-1001", "name": "Laptop 14", "category": "laptop", "brand": "Acme", "price": 1299.9,
          "discount_price": "1199.00", "url_path": "/p/laptop-14"}
# One call of every helper, as a shop page would make them.
HELPER_CALLS = """() => {
  const c = window.clickstream, laptop = %s;
  c.product_list_view('laptop');
  c.product_view(laptop);
  c.search('usb c dock');
  c.add_to_cart(laptop, 2, {cart_id: 'cart-1'});
  c.remove_from_cart(laptop, 1, {cart_id: 'cart-1'});
  c.begin_checkout({cart_id: 'cart-1'});
  c.purchase('order-42', 1299.9, 'EUR', {cart_id: 'cart-1', quantity: 1});
  c.sign_up();
  c.login({page_type: 'account'});
  c.logout();
}""" % json.dumps(LAPTOP)
HELPER_NAMES = ["product_list_view", "product_view", "search", "add_to_cart", "remove_from_cart", "begin_checkout",
                "purchase", "sign_up", "login", "logout"]


def wait_until(check: Callable[[], object], what: str, page: Page | None = None, timeout: float = 15.0):
    """check()'s first truthy value, polled every 0.1 s. While a `page` is open, Playwright's sync API runs its route
    handlers only inside its own calls: give the page, and the pauses are its waits."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        page.wait_for_timeout(100) if page else time.sleep(0.1)
    return value


class RawZone:
    """The raw objects written since it was made, read once each."""

    def __init__(self, s3, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket
        self.seen = {item["Key"] for item in raw.list_objects(s3, bucket)}
        self.objects: list[dict] = []

    def events(self, client_id: str) -> list[dict]:
        """Every stored copy of the client's events, in the order the API received them."""
        for item in raw.list_objects(self.s3, self.bucket):
            if item["Key"] not in self.seen:
                self.seen.add(item["Key"])
                self.objects.append(raw.read_object(self.s3, self.bucket, item["Key"]))
        self.objects.sort(key=lambda stored: stored["received_at"])
        return [item["event"] for stored in self.objects for item in stored["events"]
                if item["event"]["client_id"] == client_id]

    def wait_for(self, client_id: str, count: int, page: Page | None = None) -> list[dict]:
        """The client's `count` events, once they are all stored; more is an error."""
        events = wait_until(lambda: len(found := self.events(client_id)) >= count and found,
                            f"{count} events of {client_id} in the raw zone", page)
        assert len(events) == count, [event["event_name"] for event in events]
        return events


@pytest.fixture(scope="module")
def ingest_url(local_stack) -> str:
    return stack.status(local_stack)["ingest_url"]


@pytest.fixture
def raw_zone(local_stack) -> RawZone:
    return RawZone(aws.client("s3", local_stack), stack.status(local_stack)["raw_bucket"])


@pytest.fixture
def open_shop(context: BrowserContext, site: str, ingest_url: str) -> Callable[..., Page]:
    """open_shop(path="/shop.html", **config): a page of the test shop whose tracker has `config`."""
    def open_page(path: str = "/shop.html", **config) -> Page:
        config = {"endpoint": ingest_url, "flushInterval": 200, "retryBase": 100, "retryMax": 400, **config}
        context.add_init_script(f"window.clickstreamConfig = {json.dumps(config)};")
        page = context.new_page()
        page.goto(site + path)
        page.wait_for_function("window.clickstream !== undefined")
        return page
    return open_page


def requests_to(page: Page, url: str) -> list[Request]:
    """The page's requests to `url` from now on (a list that grows)."""
    sent: list[Request] = []
    page.on("request", lambda request: request.url.startswith(url) and sent.append(request))
    return sent


def test_the_tracker_is_at_most_5_kb_gzipped_and_the_readme_says_how_much():
    size = len(gzip.compress(TRACKER.read_bytes(), compresslevel=9))
    assert size <= MAX_GZIPPED_BYTES
    tracker_section = (ROOT / "README.md").read_text(encoding="utf-8").split("## Tracker\n", 1)[1].split("\n## ", 1)[0]
    assert f"{size / 1024:.1f} KB gzipped" in tracker_section


def test_page_views_on_load_and_on_push_state_carry_the_visit(open_shop, site, raw_zone):
    page = open_shop("/shop.html?utm_source=newsletter&utm_campaign=spring")
    page.evaluate("history.pushState({}, '', '/shop.html?page=2')")
    page.evaluate("history.back()")
    page.wait_for_function("location.search.startsWith('?utm')")
    page.evaluate("window.clickstream.flush()")
    client_id = page.evaluate("window.clickstream.clientId")

    events = raw_zone.wait_for(client_id, 3)

    landing, pushed, back = events
    assert [event["event_name"] for event in events] == ["page_view"] * 3
    assert landing["page_url"] == back["page_url"] == site + "/shop.html?utm_source=newsletter&utm_campaign=spring"
    assert pushed["page_url"] == site + "/shop.html?page=2" and pushed["referrer"] == landing["page_url"]
    assert all(event["utm"] == {"source": "newsletter", "campaign": "spring"} for event in events)
    assert {event["session_id"] for event in events} == {page.evaluate("window.clickstream.sessionId")}
    assert client_id == json.loads(page.evaluate("localStorage.getItem('clickstream.client_id')"))
    assert all(UUID_RE.match(event["event_id"]) for event in events) and len({e["event_id"] for e in events}) == 3
    assert all(contract.parse_timestamp(event["client_ts"]) <= contract.parse_timestamp(event["sent_ts"])
               for event in events)


def test_every_helper_sends_a_valid_event_that_is_accepted(open_shop, raw_zone):
    page = open_shop(batchSize=50, flushInterval=60000)
    page.evaluate(HELPER_CALLS)
    page.evaluate("window.clickstream.flush()")

    events = raw_zone.wait_for(page.evaluate("window.clickstream.clientId"), 11)  # a rejected event is not stored

    assert [event["event_name"] for event in events] == ["page_view", *HELPER_NAMES]
    assert all(contract.validate_event(event) == [] for event in events)
    by_name = {event["event_name"]: event for event in events}
    assert by_name["purchase"]["order_id"] == "order-42"
    assert (by_name["purchase"]["value"], by_name["purchase"]["currency"]) == ("1299.90", "EUR")
    assert by_name["product_view"]["product"] == {**LAPTOP, "price": "1299.90"}
    assert (by_name["add_to_cart"]["quantity"], by_name["add_to_cart"]["cart_id"]) == (2, "cart-1")
    assert by_name["search"]["properties"] == {"query": "usb c dock"}
    assert by_name["product_list_view"]["properties"] == {"category": "laptop"}
    assert by_name["login"]["page_type"] == "account"


def test_events_queued_offline_reach_the_raw_zone_exactly_once(open_shop, context, raw_zone):
    page = open_shop(batchSize=4)
    client_id = page.evaluate("window.clickstream.clientId")
    raw_zone.wait_for(client_id, 1)
    context.set_offline(True)
    page.evaluate(HELPER_CALLS)
    page.wait_for_timeout(600)  # a few failed flushes and retries
    queued = json.loads(page.evaluate("localStorage.getItem('clickstream.queue')"))
    assert [event["event_name"] for event in queued] == HELPER_NAMES

    context.set_offline(False)

    events = raw_zone.wait_for(client_id, 11)
    page.wait_for_timeout(800)  # flushes that would send an acknowledged batch again
    events = raw_zone.events(client_id)
    assert Counter(event["event_id"] for event in events) == Counter(
        [events[0]["event_id"], *(event["event_id"] for event in queued)])
    assert page.evaluate("localStorage.getItem('clickstream.queue')") == "[]"


def test_a_retried_batch_keeps_its_event_ids(open_shop, ingest_url, raw_zone):
    page = open_shop(batchSize=50, flushInterval=60000)
    bodies: list[dict] = []

    def first_fails(route: Route) -> None:
        bodies.append(json.loads(route.request.post_data))
        if len(bodies) == 1:
            route.fulfill(status=503, content_type="application/json", body='{"error": "unavailable"}')
        else:
            route.continue_()
    page.route(ingest_url, first_fails)
    page.evaluate(HELPER_CALLS)
    page.evaluate("window.clickstream.flush()")

    events = raw_zone.wait_for(page.evaluate("window.clickstream.clientId"), 11, page)

    assert len(bodies) == 2
    failed, retried = ([event["event_id"] for event in body["events"]] for body in bodies)
    assert failed == retried == [event["event_id"] for event in events]


@pytest.mark.parametrize("refusal", ["setConsent(false)", "consent: false", "Do-Not-Track"])
def test_without_consent_or_with_do_not_track_nothing_is_sent_or_stored(open_shop, context, ingest_url, refusal):
    if refusal == "Do-Not-Track":
        context.add_init_script("Object.defineProperty(Navigator.prototype, 'doNotTrack', {get: () => '1'});")
    page = open_shop(batchSize=50, flushInterval=60000, consent=refusal != "consent: false", autoPageView=False)
    sent = requests_to(page, ingest_url)
    if refusal == "setConsent(false)":
        page.evaluate("window.clickstream.track('page_view')")
        page.evaluate("window.clickstream.setConsent(false)")

    page.evaluate(HELPER_CALLS)
    page.evaluate("window.clickstream.flush()")
    page.wait_for_timeout(400)

    assert sent == []
    stored = page.evaluate("Object.keys(localStorage).filter(key => key !== 'clickstream.consent')")
    assert stored == [] and page.evaluate("window.clickstream.clientId") is None


def test_with_consent_the_same_page_sends(open_shop, raw_zone):
    """The counterpart of the test above: the same calls with consent are sent."""
    page = open_shop(batchSize=1, flushInterval=100, autoPageView=False)
    page.evaluate("window.clickstream.setConsent(true)")
    page.evaluate(HELPER_CALLS)
    assert len(raw_zone.wait_for(page.evaluate("window.clickstream.clientId"), 10)) == 10


def last_event_minutes_ago(page: Page, minutes: int) -> None:
    """Move the stored session's last event `minutes` into the past."""
    page.evaluate("""minutes => {
      const session = JSON.parse(localStorage.getItem('clickstream.session'));
      session.last -= minutes * 60 * 1000;
      localStorage.setItem('clickstream.session', JSON.stringify(session));
    }""", minutes)


def test_a_session_ends_after_30_minutes_without_events(open_shop):
    page = open_shop(autoPageView=False, flushInterval=60000)
    first = page.evaluate("window.clickstream.sessionId")
    page.evaluate("window.clickstream.track('click')")
    last_event_minutes_ago(page, 29)
    assert page.evaluate("window.clickstream.sessionId") == first
    page.evaluate("window.clickstream.track('click')")
    last_event_minutes_ago(page, 31)
    assert page.evaluate("window.clickstream.sessionId") not in (first, None)


def test_events_left_when_the_page_is_closed_are_sent_with_a_beacon(open_shop, raw_zone):
    page = open_shop(batchSize=50, flushInterval=60000)
    client_id = page.evaluate("window.clickstream.clientId")
    page.evaluate(HELPER_CALLS)

    page.close(run_before_unload=True)

    assert [event["event_name"] for event in raw_zone.wait_for(client_id, 11)] == ["page_view", *HELPER_NAMES]


@pytest.mark.parametrize("auth_endpoint", [None, "http://127.0.0.1:9/signed-in"])
def test_with_an_id_token_batches_go_to_the_authorized_route_with_the_token(open_shop, ingest_url, auth_endpoint):
    page = open_shop(batchSize=50, flushInterval=60000, autoPageView=False,
                     **({"authEndpoint": auth_endpoint} if auth_endpoint else {}))
    captured: list[Request] = []

    def accept(route: Route) -> None:
        captured.append(route.request)
        route.fulfill(status=200, content_type="application/json", headers={"access-control-allow-origin": "*"},
                      body='{"accepted": 1, "rejected": []}')
    page.route(auth_endpoint or ingest_url + "/user", accept)
    page.evaluate("window.clickstream.setIdToken('header.payload.signature')")
    page.evaluate("window.clickstream.login()")
    page.evaluate("window.clickstream.flush()")

    (request,) = captured
    assert request.url == (auth_endpoint or ingest_url + "/user") and request.method == "POST"
    assert request.headers["authorization"] == "Bearer header.payload.signature"
    (event,) = json.loads(request.post_data)["events"]
    assert (event["event_name"], event["user_login_state"]) == ("login", "logged_in")
    assert page.evaluate("localStorage.getItem('clickstream.queue')") == "[]"


def test_events_queued_before_sign_in_never_carry_the_token_sent_after_it(open_shop, ingest_url):
    page = open_shop(batchSize=50, flushInterval=60000, autoPageView=False)
    anonymous, signed_in = requests_to(page, ingest_url), []

    def accept(route: Route) -> None:
        signed_in.append(route.request)
        route.fulfill(status=200, content_type="application/json", headers={"access-control-allow-origin": "*"},
                      body='{"accepted": 1, "rejected": []}')
    page.route(ingest_url + "/user", accept)
    page.evaluate("window.clickstream.track('page_view')")
    page.evaluate("window.clickstream.setIdToken('header.payload.signature')")
    page.evaluate("window.clickstream.login()")
    page.evaluate("window.clickstream.flush()")
    page.wait_for_function("localStorage.getItem('clickstream.queue') === '[]'")

    first = [request for request in anonymous if request.url == ingest_url]
    assert [json.loads(r.post_data)["events"][0]["event_name"] for r in first] == ["page_view"]
    assert "authorization" not in first[0].headers
    (request,) = signed_in
    assert request.headers["authorization"] == "Bearer header.payload.signature"
    assert [event["event_name"] for event in json.loads(request.post_data)["events"]] == ["login"]


def test_unreadable_storage_is_read_as_empty_and_never_breaks_the_page(open_shop, context, raw_zone):
    context.add_init_script("for (const key of ['queue', 'session', 'client_id', 'consent'])"
                            " localStorage.setItem('clickstream.' + key, '{not json');")
    page = open_shop(batchSize=50, flushInterval=60000)
    errors = []
    page.on("pageerror", lambda error: errors.append(error))
    page.evaluate(HELPER_CALLS)
    page.evaluate("window.clickstream.flush()")

    events = raw_zone.wait_for(page.evaluate("window.clickstream.clientId"), 11)

    assert [event["event_name"] for event in events] == ["page_view", *HELPER_NAMES] and errors == []


# The page's onTokenExpired, added to the config open_shop writes: counts its calls and answers "signed out".
SIGNED_OUT_CALLBACK = """window.refreshes = 0;
Object.defineProperty(window, 'clickstreamConfig', {configurable: true, get: function () { return this.config; },
  set: function (config) {
    this.config = Object.assign(config, {onTokenExpired: function () { refreshes++; return Promise.resolve(null); }});
  }});"""


@pytest.mark.parametrize("page_answer", ["no onTokenExpired", "onTokenExpired: signed out"])
def test_a_401_without_a_fresh_token_still_delivers_the_events_anonymously(open_shop, context, ingest_url, raw_zone,
                                                                          page_answer):
    if page_answer != "no onTokenExpired":
        context.add_init_script(SIGNED_OUT_CALLBACK)
    page = open_shop(batchSize=50, flushInterval=60000, autoPageView=False, idToken="refused.by.the-api")
    answers = []
    page.on("response", lambda response: response.url.startswith(ingest_url) and answers.append(
        (response.url.removeprefix(ingest_url), response.status)))
    page.evaluate(HELPER_CALLS)
    page.evaluate("window.clickstream.flush()")

    client_id = page.evaluate("window.clickstream.clientId")
    events = raw_zone.wait_for(client_id, 10, page)
    page.wait_for_timeout(600)  # flushes that would send the acknowledged batch again

    assert [event["event_name"] for event in raw_zone.events(client_id)] == HELPER_NAMES
    assert {(event.get("user_id"), event["user_login_state"]) for event in events} == {(None, None)}
    assert answers == [("/user", 401), ("", 200)]
    assert page.evaluate("window.refreshes") == (None if page_answer == "no onTokenExpired" else 1)
    assert page.evaluate("localStorage.getItem('clickstream.queue')") == "[]"
    page.evaluate("window.clickstream.track('click')")  # signed out now: new events are anonymous
    assert json.loads(page.evaluate("localStorage.getItem('clickstream.queue')"))[0]["user_login_state"] == "anonymous"


def test_a_signed_in_page_left_with_events_queued_stores_each_of_them_once(open_shop, local_stack, raw_zone):
    email, password = f"leaver-{time.time_ns()}@shop.example.com", "Leaves-Page-42!"
    sub = shoppers.create_shopper(local_stack, email, password)
    token = shoppers.sign_in(local_stack, email, password)["IdToken"]
    page = open_shop(batchSize=50, flushInterval=60000, autoPageView=False, idToken=token)
    client_id = page.evaluate("window.clickstream.clientId")
    page.evaluate(HELPER_CALLS)

    page.goto(page.url)  # pagehide hands the queued batch to the browser (a keepalive fetch: it needs the token)
    page.evaluate("window.clickstream.flush()")  # the next page sends what is still queued
    events = raw_zone.wait_for(client_id, 10, page)
    page.wait_for_timeout(1000)  # flushes that would send the batch again

    assert Counter(event["event_id"] for event in raw_zone.events(client_id)).most_common(1)[0][1] == 1
    assert [event["event_name"] for event in events] == HELPER_NAMES
    assert {event["user_id"] for event in events} == {sub}
