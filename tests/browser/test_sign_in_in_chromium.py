"""Signing in on the storefront in a real Chromium: the page's tracker sends to the authorized route with the
shopper's Cognito ID token, and the raw zone stores the sub the local API verified as user_id."""

from __future__ import annotations

import time
import uuid

import pytest

from clickstream import aws
from clickstream.ingestion import raw
from clickstream.local import stack
from clickstream.shop import shoppers

pytestmark = [pytest.mark.browser, pytest.mark.integration]
PASSWORD = "Browser-Shopper-42"


def stored_events(s3, bucket: str, client_id: str, keys_before: set[str]) -> list[dict]:
    return [item["event"] for entry in raw.list_objects(s3, bucket) if entry["Key"] not in keys_before
            for item in raw.read_object(s3, bucket, entry["Key"])["events"] if item["event"]["client_id"] == client_id]


def test_after_signing_in_the_trackers_events_carry_the_verified_sub(context, local_stack):
    status = stack.status(local_stack)
    email = f"browser-{uuid.uuid4().hex[:8]}@example.com"
    sub = shoppers.create_shopper(local_stack, email, PASSWORD)
    s3 = aws.client("s3", local_stack)
    before = {entry["Key"] for entry in raw.list_objects(s3, status["raw_bucket"])}
    page = context.new_page()
    authorized = []
    page.on("request", lambda request: request.url.endswith("/clickstream/user") and request.method == "POST"
            and authorized.append(request))

    page.goto(status["storefront_url"])
    page.get_by_role("link", name="Sign in").click()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Sign out").wait_for()
    client_id = page.evaluate("window.clickstream.clientId")
    page.evaluate("window.clickstream.flush()")

    deadline = time.monotonic() + 20
    events = []
    while not any(e["event_name"] == "login" for e in events):
        assert time.monotonic() < deadline, f"no login event stored, only {[e['event_name'] for e in events]}"
        page.wait_for_timeout(200)
        events = stored_events(s3, status["raw_bucket"], client_id, before)
    login = next(e for e in events if e["event_name"] == "login")
    assert (login["user_id"], login["user_login_state"]) == (sub, "logged_in")
    assert authorized and authorized[0].headers["authorization"].startswith("Bearer ey")
