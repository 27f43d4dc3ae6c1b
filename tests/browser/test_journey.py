"""A shopper's whole journey on the storefront in a real Chromium, driven only through the pages' accessible names,
then `clickstream etl`: the warehouse holds exactly that journey. And the same shopping with the tracker blocked.

Screenshots of every page go to $CLICKSTREAM_TEST_OUTPUT/journey/, by default test-output/journey/ at the
repository root (ignored by git).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Page

from clickstream import aws
from clickstream.ingestion import raw
from clickstream.local import lambda_runtime, stack
from clickstream.shop import browser, shoppers

pytestmark = [pytest.mark.browser, pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Journey-Shopper-42"
ETL_FUNCTION = "EtlFunction"
# (event_name, signed in) of the journey, page by page.
JOURNEY = [("page_view", False),                                # home
           ("page_view", False), ("product_list_view", False),  # Laptops
           ("page_view", False), ("product_view", False),       # the product
           ("add_to_cart", False), ("page_view", False),        # Add to cart, then the cart
           ("page_view", False),                                # the sign-in form
           ("page_view", True), ("login", True),                # home, signed in
           ("page_view", True),                                 # Cart
           ("page_view", True), ("begin_checkout", True),       # Checkout
           ("page_view", True), ("purchase", True)]             # Place order: the confirmation
PRODUCT_EVENTS = {"product_view", "add_to_cart"}
PAGES = sum(name == "page_view" for name, _ in JOURNEY)


@pytest.fixture(scope="module")
def screenshots() -> Path:
    folder = Path(os.environ.get("CLICKSTREAM_TEST_OUTPUT", ROOT / "test-output")) / "journey"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    return folder


@pytest.fixture(scope="module")
def laptop(local_stack) -> dict:
    """The first laptop of the catalogue, as shop_oltp has it."""
    with psycopg.connect(stack.shop_dsn(local_stack)) as conn:
        product_id, name = conn.execute(
            "SELECT product_id, name FROM products WHERE category = 'laptop' ORDER BY name LIMIT 1").fetchone()
    return {"product_id": product_id, "name": name}


def oltp_order(local_stack, order_id: str) -> tuple[str, list[str]]:
    """(total, product ids) of the order in shop_oltp."""
    with psycopg.connect(stack.shop_dsn(local_stack)) as conn:
        (total,) = conn.execute("SELECT total FROM orders WHERE order_id = %s", (order_id,)).fetchone()
        products = [row[0] for row in conn.execute(
            "SELECT product_id FROM order_items WHERE order_id = %s ORDER BY product_id", (order_id,))]
    return f"{total:.2f}", products


def raw_days_of(s3, bucket: str, client_id: str, until: Callable[[list[dict]], bool], page: Page) -> set[str]:
    """The UTC days of the raw objects holding the client's events, once `until(events)` holds."""
    deadline = time.monotonic() + 20
    while True:
        days, events = set(), []
        for entry in raw.list_objects(s3, bucket):
            stored = raw.read_object(s3, bucket, entry["Key"])
            mine = [item["event"] for item in stored["events"] if item["event"]["client_id"] == client_id]
            if mine:
                days.add(stored["received_at"][:10])
                events += mine
        if until(events):
            return days
        assert time.monotonic() < deadline, f"the raw zone has only {[e['event_name'] for e in events]}"
        page.wait_for_timeout(200)


def test_a_shoppers_journey_is_in_the_warehouse_in_order_in_one_session(context, local_stack, screenshots, laptop):
    status = stack.status(local_stack)
    email = f"journey-{uuid.uuid4().hex[:8]}@example.com"
    sub = shoppers.create_shopper(local_stack, email, PASSWORD)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(error))

    def shot(name: str) -> None:
        page.screenshot(path=screenshots / f"{name}.png", full_page=True)

    order_id = browser.click_through(page, status["storefront_url"], laptop["name"], "Laptops", email, PASSWORD, shot)
    page.wait_for_function("window.clickstream !== undefined")
    client_id = page.evaluate("window.clickstream.clientId")
    page.evaluate("window.clickstream.flush()")
    days = raw_days_of(aws.client("s3", local_stack), status["raw_bucket"], client_id,
                       lambda events: any(event["event_name"] == "purchase" for event in events), page)
    for day in sorted(days):
        lambda_runtime.invoke_function(local_stack, ETL_FUNCTION, {"date": day})

    with psycopg.connect(status["dw_admin_dsn"]) as conn:
        rows = conn.execute(
            "SELECT event_name, user_id, session_id, context_product_id, order_id, value::text, currency "
            "FROM clickstream_events WHERE client_id = %s "
            "ORDER BY event_timestamp, event_name <> 'page_view'", (client_id,)).fetchall()
    total, ordered_products = oltp_order(local_stack, order_id)
    assert [(name, user_id) for name, user_id, *_ in rows] == [
        (name, sub if signed_in else None) for name, signed_in in JOURNEY]
    assert len({row[2] for row in rows}) == 1
    assert ordered_products == [laptop["product_id"]]
    assert [row[3] for row in rows if row[0] in PRODUCT_EVENTS] == [laptop["product_id"]] * len(PRODUCT_EVENTS)
    assert [row[4:] for row in rows if row[0] == "purchase"] == [(order_id, total, "USD")]
    assert errors == []
    assert sorted(path.name for path in screenshots.glob("*.png")) == [
        "01-home.png", "02-category.png", "03-product.png", "04-cart.png", "05-sign-in.png", "06-signed-in.png",
        "07-cart.png", "08-checkout.png", "09-order.png"]


def test_with_the_tracker_blocked_the_same_shopping_writes_the_order(context, local_stack, laptop):
    """As behind an ad blocker: clickstream.js never loads, nothing is sent, and shopping works all the same."""
    status = stack.status(local_stack)
    email = f"blocked-{uuid.uuid4().hex[:8]}@example.com"
    shoppers.create_shopper(local_stack, email, PASSWORD)
    page = context.new_page()
    blocked, errors, sent = [], [], []
    page.route("**/clickstream.js", lambda route: (blocked.append(route.request.url), route.abort()))
    page.on("pageerror", lambda error: errors.append(error))
    page.on("request", lambda request: request.url.startswith(status["ingest_url"]) and sent.append(request))

    order_id = browser.click_through(page, status["storefront_url"], laptop["name"], "Laptops", email, PASSWORD)

    assert oltp_order(local_stack, order_id)[1] == [laptop["product_id"]]
    assert page.evaluate("window.clickstream") is None
    assert len(blocked) == PAGES and errors == [] and sent == []
