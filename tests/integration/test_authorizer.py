"""POST /clickstream/user behind the template's JWT authorizer on the running local API: real ID tokens from
the local user pool are verified (signature, issuer, audience, expiry, token_use) and their sub is the only
user_id the ingest stores; anything else is API Gateway's 401 and stores nothing."""

from __future__ import annotations

import random
import time
import uuid

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from clickstream import aws, contract
from clickstream.ingestion import raw
from clickstream.local import stack
from clickstream.shop import samples, shoppers

PASSWORD = "Signed-in-Shopper-1"


@pytest.fixture(scope="module")
def status(local_stack) -> dict:
    return stack.status(local_stack)


@pytest.fixture(scope="module")
def shopper(local_stack) -> dict:
    email = f"auth-{uuid.uuid4().hex[:8]}@example.com"
    sub = shoppers.create_shopper(local_stack, email, PASSWORD)
    return {"email": email, "sub": sub, "tokens": shoppers.sign_in(local_stack, email, PASSWORD)}


@pytest.fixture
def send(local_stack, status):
    """POST one forged-looking event to a route; returns (response, the stored events or None)."""
    s3 = aws.client("s3", local_stack)

    def post(path: str, token: str | None = None, user_id: str | None = "someone-else") -> tuple:
        event = samples.canonical_event("purchase", random.Random(), user_id=user_id)
        headers = {"content-type": "application/json", **({"authorization": f"Bearer {token}"} if token else {})}
        response = httpx.post(f"{status['api_url']}{path}", content=contract.dumps(event).encode(), headers=headers,
                              timeout=30)
        key = response.json().get("object_key") if response.status_code == 200 else None
        return response, raw.read_object(s3, status["raw_bucket"], key)["events"] if key else None

    return post


def claims_of(shopper: dict, **changes) -> dict:
    claims = jwt.decode(shopper["tokens"]["IdToken"], options={"verify_signature": False})
    return {**claims, **changes}


def moto_signed(claims: dict) -> str:
    """A token signed with the pool's real key (moto's one fixed key), for claims moto would not issue."""
    from joserfc import jwk
    from moto.utilities.utils import load_resource

    key = jwk.RSAKey.import_key(load_resource("cognitoidp/resources/jwks-private.json"))
    return jwt.encode(claims, key.as_pem(private=True), algorithm="RS256", headers={"kid": key.kid})


def test_a_real_id_token_is_accepted_and_its_sub_is_the_stored_user_id(send, shopper):
    response, events = send("/clickstream/user", shopper["tokens"]["IdToken"], user_id="forged-in-the-body")
    assert response.status_code == 200, response.text
    (item,) = events
    assert (item["event"]["user_id"], item["event"]["user_login_state"]) == (shopper["sub"], "logged_in")


def test_the_real_key_with_our_own_claims_is_accepted_so_the_rejections_below_are_about_the_claims(send, shopper):
    response, events = send("/clickstream/user", moto_signed(claims_of(shopper, exp=int(time.time()) + 600)))
    assert response.status_code == 200, response.text
    assert events[0]["event"]["user_id"] == shopper["sub"]


@pytest.mark.parametrize("case", ["no token", "garbage", "expired", "other key", "other key unknown kid",
                                  "other audience", "other issuer", "access token"])
def test_a_bad_token_is_api_gateways_401_and_stores_nothing(send, shopper, status, case):
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = {
        "no token": None,
        "garbage": "not.a.jwt",
        "expired": moto_signed(claims_of(shopper, exp=int(time.time()) - 60, iat=int(time.time()) - 3660)),
        "other key": jwt.encode(claims_of(shopper), other_key, algorithm="RS256", headers={"kid": "dummy"}),
        "other key unknown kid": jwt.encode(claims_of(shopper), other_key, algorithm="RS256",
                                            headers={"kid": "attacker"}),
        "other audience": moto_signed(claims_of(shopper, aud="another-client")),
        "other issuer": moto_signed(claims_of(shopper, iss="https://cognito-idp.us-east-1.amazonaws.com/x_y")),
        "access token": moto_signed(claims_of(shopper, token_use="access")),
    }[case]
    response, _ = send("/clickstream/user", token)
    assert (response.status_code, response.json()) == (401, {"message": "Unauthorized"})
    assert response.headers["apigw-requestid"]


def test_cors_admits_the_authorization_header(status):
    response = httpx.options(f"{status['api_url']}/clickstream/user", headers={
        "origin": "http://127.0.0.1:3200", "access-control-request-method": "POST",
        "access-control-request-headers": "authorization,content-type"})
    assert response.status_code == 200, response.text
    assert "authorization" in response.headers["access-control-allow-headers"].lower()
