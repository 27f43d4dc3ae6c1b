"""clickstream.shop.browser against the local stack: the journey, in Chromium and with the Python client, lands in the
raw zone with the verified sub from sign-in on. The Chromium test is skipped, with the reason, where none is found."""

from __future__ import annotations

import uuid

import pytest

from clickstream import aws
from clickstream.ingestion import raw
from clickstream.local import stack
from clickstream.shop import browser, catalogue, shoppers

pytestmark = pytest.mark.integration
PRODUCT = next(product for product in catalogue.products() if product["category"] == "monitor")


@pytest.fixture
def shopper(local_stack) -> tuple[str, str, str]:
    """(email, password, sub) of a new shopper."""
    email, password = f"helper-{uuid.uuid4().hex[:8]}@example.com", shoppers.random_password()
    return email, password, shoppers.create_shopper(local_stack, email, password)


def stored_journey(local_stack, journey: browser.Journey) -> tuple[list[dict], int]:
    """(the journey's stored events in the order it sent them, how many raw objects hold them)."""
    order = {event["event_id"]: position for position, event in enumerate(journey.events())}
    s3, bucket = aws.client("s3", local_stack), stack.status(local_stack)["raw_bucket"]
    events, objects = [], 0
    for entry in raw.list_objects(s3, bucket):
        mine = [item["event"] for item in raw.read_object(s3, bucket, entry["Key"])["events"]
                if item["event"]["event_id"] in order]
        objects += bool(mine)
        events += mine
    return sorted(events, key=lambda event: order[event["event_id"]]), objects


def assert_the_journey_is_stored_signed_in_from_login(local_stack, journey: browser.Journey, sub: str) -> list[dict]:
    events, objects = stored_journey(local_stack, journey)
    assert objects == len(journey.sent)
    assert [(event["event_name"], event.get("user_id")) for event in events] == [
        (name, sub if signed_in else None) for name, signed_in in browser.JOURNEY]
    assert {event["client_id"] for event in events} == {journey.client_id}
    return events


def test_the_python_clients_journey_is_stored_with_the_verified_sub(local_stack, shopper):
    email, password, sub = shopper
    status = stack.status(local_stack)
    journey = browser.shop(local_stack, status["storefront_url"], status["ingest_url"], PRODUCT, email, password,
                           environ={"CHROMIUM": "/nonexistent"})

    assert journey.driver == "Python client" and "$CHROMIUM=/nonexistent is not an executable" in journey.note
    assert [sent.status for sent in journey.sent] == [200] * len(journey.sent)
    assert_the_journey_is_stored_signed_in_from_login(local_stack, journey, sub)


@pytest.mark.browser
def test_chromiums_journey_is_recorded_request_by_request_and_stored_with_the_verified_sub(local_stack, shopper,
                                                                                          tmp_path):
    executable, where = browser.chromium()
    if executable is None:
        pytest.skip(where)
    email, password, sub = shopper
    status = stack.status(local_stack)
    journey = browser.shop_in_chromium(executable, status["storefront_url"], status["ingest_url"], PRODUCT, email,
                                       password, screenshots=tmp_path)

    assert [(sent.sent_by, sent.status) for sent in journey.sent if sent.sent_by != "fetch"] == [("beacon", None)]
    assert {sent.status for sent in journey.sent if sent.sent_by == "fetch"} == {200}
    assert [sent.route for sent in journey.sent if sent.signed_in] == ["POST /clickstream/user"] * 4
    events = assert_the_journey_is_stored_signed_in_from_login(local_stack, journey, sub)
    assert [event["order_id"] for event in events if event["event_name"] == "purchase"] == [journey.order_id]
    assert [event["product"]["id"] for event in events if "product" in event] == [PRODUCT["id"]] * 2
    assert sorted(path.stem for path in tmp_path.glob("*.png")) == sorted(journey.screenshots) and \
        len(journey.screenshots) == 9
