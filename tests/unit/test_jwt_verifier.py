"""JwtVerifier checks what an HTTP API's JWT authorizer checks, with keys cached and fetched again for an
unknown kid; claims reach the integration as API Gateway's strings."""

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from clickstream.local.cognito import JWKS_HEADERS, JwtVerifier, Unauthorized, api_gateway_claims, jwks_source
from clickstream.settings import Settings

ISSUER = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_pool"


class Keys:
    """The issuer's JWKS, as PyJWKClient would fetch it; counts fetches."""

    def __init__(self):
        self.keys, self.fetches = {}, 0

    def add(self, kid: str):
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.keys[kid] = {**jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True),
                          "kid": kid, "alg": "RS256", "use": "sig"}
        return private

    def fetch(self):
        self.fetches += 1
        return {"keys": list(self.keys.values())}


@pytest.fixture
def keys():
    return Keys()


@pytest.fixture
def verifier(keys):
    made = JwtVerifier(ISSUER, ("client-1",), ("http://unused.invalid/jwks.json", {}))
    made.keys.fetch_data = keys.fetch
    return made


def token(private, kid="k1", **changes):
    now = int(time.time())
    claims = {"sub": "user-sub", "iss": ISSUER, "aud": "client-1", "token_use": "id", "iat": now, "exp": now + 600,
              "email_verified": True, **changes}
    return jwt.encode(claims, private, algorithm="RS256", headers={"kid": kid})


def test_a_valid_id_token_gives_api_gateways_string_claims(keys, verifier):
    private = keys.add("k1")
    claims = verifier.claims(f"Bearer {token(private)}")
    assert claims["sub"] == "user-sub" and claims["email_verified"] == "true"
    assert claims["exp"] == str(int(claims["iat"]) + 600)
    assert verifier.claims(token(private))["sub"] == "user-sub", "the Bearer prefix is optional"


@pytest.mark.parametrize("change", [{"exp": 1}, {"aud": "client-2"}, {"iss": ISSUER + "x"}, {"token_use": "access"}])
def test_each_failed_check_is_unauthorized(keys, verifier, change):
    with pytest.raises(Unauthorized):
        verifier.claims(token(keys.add("k1"), **change))


def test_another_key_under_a_known_kid_is_unauthorized(keys, verifier):
    keys.add("k1")
    with pytest.raises(Unauthorized):
        verifier.claims(token(rsa.generate_private_key(public_exponent=65537, key_size=2048)))


@pytest.mark.parametrize("value", [None, "", "Bearer ", "a.b.c"])
def test_missing_or_malformed_tokens_are_unauthorized(verifier, value):
    with pytest.raises(Unauthorized):
        verifier.claims(value)


def test_keys_are_cached_and_fetched_again_for_an_unknown_kid(keys, verifier):
    first = keys.add("k1")
    verifier.claims(token(first))
    verifier.claims(token(first))
    assert keys.fetches == 1
    rotated = keys.add("k2")
    assert verifier.claims(token(rotated, kid="k2"))["sub"] == "user-sub"
    assert keys.fetches == 2


def test_claims_as_api_gateway_writes_them():
    assert api_gateway_claims({"a": "x", "n": 5, "t": True, "l": ["g1", "g2"]}) == {
        "a": "x", "n": "5", "t": "true", "l": "[g1 g2]"}


def test_a_cognito_issuers_keys_come_from_the_local_endpoint():
    local = Settings.from_env({"CLICKSTREAM_TARGET": "local"}, aws_port=4599)
    assert jwks_source(ISSUER, local) == (f"{local.aws_endpoint_url}/eu-west-1_pool/.well-known/jwks.json",
                                          JWKS_HEADERS)
    assert jwks_source(ISSUER, local.with_(target="aws")) == (f"{ISSUER}/.well-known/jwks.json", {})
    assert jwks_source("https://login.example.com", local) == ("https://login.example.com/.well-known/jwks.json", {})


def test_made_up_kids_cannot_make_every_request_fetch_the_keys(keys, verifier):
    first = keys.add("k1")
    verifier.claims(token(first))
    for kid in ("made-up-1", "made-up-2", "made-up-3"):
        with pytest.raises(Unauthorized):
            verifier.claims(token(first, kid=kid))
    assert keys.fetches == 2, "one fetch for the first unknown kid, none for the others within the interval"
