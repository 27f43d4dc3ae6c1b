"""Signing in on the storefront in a real Chromium: the page's tracker sends to the authorized route with the
shopper's Cognito ID token, the raw zone stores the sub the local API verified as user_id, and a token the API
refuses as expired is refreshed through the storefront without losing or repeating an event."""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter

import jwt
import pytest
from playwright.sync_api import Page

from clickstream import aws
from clickstream.ingestion import raw
from clickstream.local import stack
from clickstream.shop import shoppers

pytestmark = [pytest.mark.browser, pytest.mark.integration]
PASSWORD = "Browser-Shopper-42"
TOKEN_RE = re.compile(r'idToken: "([^"]+)"')


@pytest.fixture
def shop(local_stack) -> dict:
    """A new shopper, the stack's storefront and raw bucket, and the raw objects there before the test."""
    status = stack.status(local_stack)
    email = f"browser-{uuid.uuid4().hex[:8]}@example.com"
    s3 = aws.client("s3", local_stack)
    return {"email": email, "sub": shoppers.create_shopper(local_stack, email, PASSWORD), "s3": s3,
            "url": status["storefront_url"], "bucket": status["raw_bucket"],
            "before": {entry["Key"] for entry in raw.list_objects(s3, status["raw_bucket"])}}


def stored_events(shop: dict, client_id: str) -> list[dict]:
    keys = [entry["Key"] for entry in raw.list_objects(shop["s3"], shop["bucket"]) if entry["Key"] not in shop["before"]]
    return [item["event"] for key in keys for item in raw.read_object(shop["s3"], shop["bucket"], key)["events"]
            if item["event"]["client_id"] == client_id]


def wait_for_events(page: Page, shop: dict, client_id: str, done, what: str) -> list[dict]:
    deadline = time.monotonic() + 20
    while not done(events := stored_events(shop, client_id)):
        assert time.monotonic() < deadline, f"{what}: only {[e['event_name'] for e in events]} stored"
        page.wait_for_timeout(200)
    return events


def signed_in_page(context, shop: dict, page: Page | None = None) -> Page:
    """`page` (default a new one) signed in on the storefront as the shop's shopper."""
    page = page or context.new_page()
    page.goto(shop["url"])
    page.get_by_role("link", name="Sign in").click()
    page.get_by_label("Email").fill(shop["email"])
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Sign out").wait_for()
    return page


def expired(token: str) -> str:
    """The same ID token, expired a minute ago and signed with the pool's real key (moto's one fixed key)."""
    from joserfc import jwk
    from moto.utilities.utils import load_resource

    key = jwk.RSAKey.import_key(load_resource("cognitoidp/resources/jwks-private.json"))
    claims = {**jwt.decode(token, options={"verify_signature": False}), "exp": int(time.time()) - 60}
    return jwt.encode(claims, key.as_pem(private=True), algorithm="RS256", headers={"kid": key.kid})


def test_after_signing_in_the_trackers_events_carry_the_verified_sub(context, shop):
    page = context.new_page()
    authorized = []
    page.on("request", lambda request: request.url.endswith("/clickstream/user") and request.method == "POST"
            and authorized.append(request))
    signed_in_page(context, shop, page)
    client_id = page.evaluate("window.clickstream.clientId")
    page.evaluate("window.clickstream.flush()")

    events = wait_for_events(page, shop, client_id, lambda found: any(e["event_name"] == "login" for e in found),
                             "the login event")
    login = next(e for e in events if e["event_name"] == "login")
    assert (login["user_id"], login["user_login_state"]) == (shop["sub"], "logged_in")
    assert authorized and authorized[0].headers["authorization"].startswith("Bearer ey")


def test_the_sign_out_button_is_styled_like_the_header(context, shop):
    page = signed_in_page(context, shop)
    style = """element => { const s = getComputedStyle(element); return {font: s.fontFamily, weight: s.fontWeight,
                                                                          size: s.fontSize, color: s.color,
                                                                          background: s.backgroundColor}; }"""
    button = page.get_by_role("button", name="Sign out").evaluate(style)
    cart = page.get_by_role("link", name="Cart").evaluate(style)
    header = page.locator("header").evaluate(style)
    assert {k: button[k] for k in ("font", "weight", "size")} == {k: cart[k] for k in ("font", "weight", "size")}
    search = page.get_by_role("button", name="Search").evaluate(style)
    assert button["color"] == search["background"]  # the header's brand colour
    assert button["background"] in ("rgba(0, 0, 0, 0)", header["background"])  # not the browser's grey button


def test_an_expired_token_is_refreshed_and_the_batch_arrives_exactly_once(context, shop):
    page = signed_in_page(context, shop)
    client_id = page.evaluate("window.clickstream.clientId")
    page.evaluate("window.clickstream.flush()")
    wait_for_events(page, shop, client_id, lambda found: any(e["event_name"] == "login" for e in found),
                    "the login event")
    answers, refreshes = [], []
    page.on("response", lambda response: response.url.endswith("/clickstream/user") and answers.append(response.status))
    page.on("request", lambda request: request.url.endswith("/account/token") and refreshes.append(request))
    page.evaluate("token => window.clickstream.setIdToken(token)", expired(TOKEN_RE.search(page.content()).group(1)))

    ids = page.evaluate("""() => [window.clickstream.search('dock'), window.clickstream.track('share'),
                                  window.clickstream.product_list_view('laptop')]""")
    page.evaluate("window.clickstream.flush()")

    wait_for_events(page, shop, client_id, lambda found: set(ids) <= {e["event_id"] for e in found}, "the batch")
    page.wait_for_timeout(600)  # flushes that would send the acknowledged batch again
    events = [e for e in stored_events(shop, client_id) if e["event_id"] in ids]
    assert Counter(e["event_id"] for e in events) == Counter(ids)
    assert {(e["user_id"], e["user_login_state"]) for e in events} == {(shop["sub"], "logged_in")}
    assert answers[:2] == [401, 200] and len(refreshes) == 1
    assert page.evaluate("localStorage.getItem('clickstream.queue')") == "[]"
