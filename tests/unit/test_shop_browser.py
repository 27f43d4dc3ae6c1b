"""The storefront helper's parts that need no browser: finding Chromium, the Python client's journey, the table."""

import json
import stat

import httpx
import pytest

from clickstream.shop import browser, catalogue

STOREFRONT = "http://shop.test"
INGEST = "http://api.test/clickstream"
PRODUCT = next(product for product in catalogue.products() if product["discount_price"] is not None)


@pytest.fixture
def executable(tmp_path):
    path = tmp_path / "my-chromium"
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_chromium_named_by_the_environment_is_chosen(executable):
    assert browser.chromium({"CHROMIUM": executable}) == (executable, "$CHROMIUM")


def test_a_chromium_variable_naming_nothing_means_no_chromium_with_the_reason():
    assert browser.chromium({"CHROMIUM": "/nonexistent"}) == (None, "$CHROMIUM=/nonexistent is not an executable")


def test_the_category_link_of_each_product_is_its_category_page_title():
    titles = {product["category"]: browser.category_title(product) for product in catalogue.products()}
    assert titles == {"laptop": "Laptops", "monitor": "Monitors", "accessory": "Accessories"}


class FakeApi:
    """Answers like the ingest API: 401 on the signed-in route without the right token, else 200 and the count."""

    def __init__(self, token: str):
        self.token, self.requests = token, []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        events = json.loads(request.content)["events"]
        if request.url.path.endswith("/user") and request.headers.get("authorization") != f"Bearer {self.token}":
            return httpx.Response(401, json={"message": "Unauthorized"})
        return httpx.Response(200, json={"accepted": len(events), "rejected": [], "object_key": "events/k.json"})


def test_the_python_client_sends_the_journey_one_request_per_page_signed_in_only_with_the_token():
    api = FakeApi("the-token")
    journey = browser.shop_with_python_client(INGEST, STOREFRONT, PRODUCT, "the-token", httpx.MockTransport(api))

    assert [(event["event_name"], event["user_login_state"] == "logged_in") for event in journey.events()] == \
        browser.JOURNEY
    assert [(request.url.path, "authorization" in request.headers) for request in api.requests] == \
        [("/clickstream/user", True) if sent.signed_in else ("/clickstream", False) for sent in journey.sent]
    assert [sent.status for sent in journey.sent] == [200] * len(journey.sent)
    assert {event["client_id"] for event in journey.events()} == {journey.client_id}
    assert len({event["session_id"] for event in journey.events()}) == 1
    assert journey.order_id is None and journey.screenshots == {}


def test_the_python_client_journey_carries_the_product_and_its_price_as_the_pages_do():
    journey = browser.shop_with_python_client(INGEST, STOREFRONT, PRODUCT, "t", httpx.MockTransport(FakeApi("t")))
    by_name = {event["event_name"]: event for event in journey.events()}

    assert by_name["product_view"]["product"]["id"] == by_name["add_to_cart"]["product"]["id"] == PRODUCT["id"]
    assert by_name["add_to_cart"]["product"]["discount_price"] == str(PRODUCT["discount_price"])
    assert by_name["purchase"]["value"] == by_name["begin_checkout"]["value"] == str(PRODUCT["discount_price"])
    assert by_name["product_list_view"]["properties"] == {"category": PRODUCT["category"]}
    assert by_name["add_to_cart"]["referrer"] == by_name["product_view"]["referrer"]
    assert by_name["purchase"]["page_url"] == f"{STOREFRONT}/orders/{by_name['purchase']['order_id']}"


def test_a_refused_request_shows_its_status():
    journey = browser.shop_with_python_client(INGEST, STOREFRONT, PRODUCT, "expired",
                                              httpx.MockTransport(FakeApi("valid")))
    assert {(sent.signed_in, sent.status) for sent in journey.sent} == {(False, 200), (True, 401)}


def test_the_requests_table_has_a_row_per_request_and_no_status_for_a_beacon():
    event = {"event_id": "e1", "event_name": "add_to_cart"}
    journey = browser.Journey(driver="Chromium", client_id="c", sent=[
        browser.Sent(f"{INGEST}/user", "fetch", ({**event, "event_id": "e0", "event_name": "login"},), True, 200),
        browser.Sent(INGEST, "beacon", (event, event), False)])

    table = journey.requests()
    assert table.to_dict("records") == [
        {"route": "POST /clickstream/user", "sent by": "fetch", "status": 200, "events": 1, "signed in": True,
         "event names": "login"},
        {"route": "POST /clickstream", "sent by": "beacon", "status": None, "events": 2, "signed in": False,
         "event names": "add_to_cart, add_to_cart"}]
    assert [e["event_id"] for e in journey.events()] == ["e0", "e1"]
