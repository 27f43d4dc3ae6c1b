"""Signing in and out of the storefront that `clickstream up` runs: Cognito's InitiateAuth on the server, the
ID token handed to the page's tracker (setIdToken), a `login` event tracked once, `logout` on signing out."""

from __future__ import annotations

import json
import re
import time
import uuid

import httpx
import jwt
import pytest

from clickstream.infra.templates import load_stacks
from clickstream.local import stack
from clickstream.shop import shoppers
from clickstream.shop.storefront import SHOPPER_COOKIE

PASSWORD = "Storefront-Shopper-7"
TOKEN_RE = re.compile(r'idToken: ("[^"]+")}')  # the tracker's config: it starts signed in


@pytest.fixture(scope="module")
def shopper(local_stack) -> dict:
    email = f"store-{uuid.uuid4().hex[:8]}@example.com"
    return {"email": email, "sub": shoppers.create_shopper(local_stack, email, PASSWORD)}


@pytest.fixture
def browser(local_stack):
    with httpx.Client(base_url=stack.status(local_stack)["storefront_url"], timeout=30) as client:
        yield client


def test_the_sign_in_form_has_the_names_the_issue_gives(browser):
    home = browser.get("/")
    assert '<a href="/account/sign-in">Sign in</a>' in home.text and "Sign out" not in home.text
    form = browser.get("/account/sign-in").text
    assert '<label for="sign-in-email">Email</label>' in form
    assert '<label for="sign-in-password">Password</label>' in form
    assert re.search(r'<button type="submit" class="primary">Sign in</button>', form)


def test_signing_in_starts_the_tracker_with_the_shoppers_id_token_and_tracks_login_once(browser, shopper, local_stack):
    signed_in = browser.post("/account/sign-in", data={"email": shopper["email"], "password": PASSWORD})
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/"

    first = browser.get("/").text
    token = json.loads(TOKEN_RE.search(first).group(1))
    claims = jwt.decode(token, options={"verify_signature": False})
    status = stack.status(local_stack)
    assert (claims["sub"], claims["aud"], claims["token_use"]) == (shopper["sub"], status["cognito_client_id"], "id")
    assert 'trackOnLoad("login");' in first
    assert "Sign out" in first and shopper["email"] in first
    assert 'trackOnLoad("login");' not in browser.get("/").text, "login is tracked on the first page only"
    assert TOKEN_RE.search(browser.get("/cart").text), "every page hands the token to the tracker"

    signed_out = browser.post("/account/sign-out")
    assert signed_out.status_code == 303
    after = browser.get("/").text
    assert not TOKEN_RE.search(after) and "Sign in" in after


def test_the_sign_out_button_tracks_logout_before_leaving(browser, shopper):
    browser.post("/account/sign-in", data={"email": shopper["email"], "password": PASSWORD})
    page = browser.get("/").text
    assert re.search(r'<form action="/account/sign-out" method="post" onsubmit="track\(\'logout\'\);', page)


@pytest.mark.parametrize("password", ["Wrong-password-123", None])
def test_a_wrong_password_or_unknown_email_is_one_message_and_no_cookie(browser, shopper, password):
    email = shopper["email"] if password else "nobody@example.com"
    response = browser.post("/account/sign-in", data={"email": email, "password": password or PASSWORD})
    assert response.status_code == 401
    assert "Incorrect email or password." in response.text
    assert SHOPPER_COOKIE not in response.cookies and not TOKEN_RE.search(response.text)


def shopper_cookies(local_stack):
    """The storefront's serializer of the shopper cookie (its key is in the stack's credentials)."""
    from itsdangerous import URLSafeSerializer

    from clickstream.local.credentials import load_or_create

    secret = load_or_create(stack.credentials_file(local_stack, "storefront"), ["cookie_secret"])["cookie_secret"]
    return URLSafeSerializer(secret, salt="clickstream-storefront-shopper")


def test_a_tampered_or_expired_shopper_cookie_is_signed_out(browser, local_stack):
    sign = shopper_cookies(local_stack).dumps
    expired = sign({"email": "a@example.com", "id_token": "x.y.z", "exp": int(time.time()) - 1})
    for cookie in (expired, "forged-value"):
        browser.cookies.set(SHOPPER_COOKIE, cookie)
        page = browser.get("/").text
        assert not TOKEN_RE.search(page) and '<a href="/account/sign-in">Sign in</a>' in page


def claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def test_the_tracker_gets_a_fresh_id_token_from_the_session_until_signing_out(browser, shopper, local_stack):
    signed_in = browser.post("/account/sign-in", data={"email": shopper["email"], "password": PASSWORD})
    (client,) = (c for stack in load_stacks(local_stack) for pool in stack.user_pools() for c in pool.clients)
    assert client.settings["TokenValidityUnits"]["RefreshToken"] == "days"
    days = client.settings["RefreshTokenValidity"]
    assert f"Max-Age={days * 24 * 3600}" in signed_in.headers["set-cookie"]  # the session outlives the ID token
    browser.get("/")
    time.sleep(1.1)  # a new token has a later iat

    fresh = browser.post("/account/token")

    assert fresh.status_code == 200 and fresh.headers["cache-control"] == "no-store"
    token = fresh.json()["id_token"]
    assert claims(token)["sub"] == shopper["sub"] and claims(token)["token_use"] == "id"
    assert json.loads(TOKEN_RE.search(browser.get("/").text).group(1)) == token, "pages hand out the fresh token"
    browser.post("/account/sign-out")
    assert browser.post("/account/token").status_code == 401
    browser.cookies.set(SHOPPER_COOKIE, fresh.cookies[SHOPPER_COOKIE])  # the cookie of a session signed out
    assert browser.post("/account/token").status_code == 401


def test_a_page_whose_id_token_expired_gets_a_fresh_one_from_the_session(browser, shopper, local_stack):
    browser.post("/account/sign-in", data={"email": shopper["email"], "password": PASSWORD})
    serializer = shopper_cookies(local_stack)
    cookie = serializer.loads(browser.cookies[SHOPPER_COOKIE])
    browser.cookies.delete(SHOPPER_COOKIE)
    browser.cookies.set(SHOPPER_COOKIE, serializer.dumps({**cookie, "exp": int(time.time()) - 1}))

    page = browser.get("/").text

    token = json.loads(TOKEN_RE.search(page).group(1))
    assert claims(token)["sub"] == shopper["sub"] and claims(token)["exp"] > time.time() + 600
    assert serializer.loads(browser.cookies.get(SHOPPER_COOKIE, domain="127.0.0.1"))["exp"] == claims(token)["exp"]
