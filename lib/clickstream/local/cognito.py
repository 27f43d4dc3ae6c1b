"""The shop's Cognito user pool on the local endpoint, and JWT verification the way an HTTP API's JWT
authorizer does it.

- `ensure_user_pools`: the pools and app clients the templates declare, created once in moto and recorded
  (`templates.recorded_physical_ids`) so Ref UserPool / UserPoolClient resolve to their ids.
- moto_runner persists Cognito after every changing Cognito request (pools, clients, shoppers, their subs),
  so the ids and subs survive a crash and `down`/`up`.
- `JwtVerifier`: signature (the issuer's JWKS, cached, fetched again for an unknown kid), issuer, audience,
  expiry and token_use; the claims as API Gateway passes them to the integration.
"""

from __future__ import annotations

import json
import re
from time import monotonic
from typing import Any, Callable

import jwt

from clickstream import aws
from clickstream.infra.templates import load_stacks, physical_ids_file, recorded_physical_ids
from clickstream.settings import Settings

ISSUER = re.compile(r"^https://cognito-idp\.([a-z0-9-]+)\.amazonaws\.com/([\w-]+)$")
# moto finds the Cognito backend of a JWKS request by the service named in a SigV4 Authorization header
JWKS_HEADERS = {"Authorization": "AWS4-HMAC-SHA256 Credential=local/20240101/us-east-1/cognito-idp/aws4_request, "
                                 "SignedHeaders=host, Signature=local"}


# --- the pools of the templates ---------------------------------------------------------------------------
def _accepted(client: Any, operation: str, settings: dict) -> tuple[dict, list[str]]:
    """(the settings `operation` takes, the names it does not take) by the API's own model."""
    members = client.meta.service_model.operation_model(operation).input_shape.members
    return ({k: v for k, v in settings.items() if k in members}, sorted(k for k in settings if k not in members))


def ensure_user_pools(settings: Settings, progress: Callable[[str], None] = lambda _: None) -> dict[str, str]:
    """Create, once, every user pool and app client the templates declare, and record their ids; returns
    {logical id: id}. Template properties CreateUserPool does not take (EnabledMfas) are not applied locally."""
    client = aws.client("cognito-idp", settings)
    recorded = recorded_physical_ids(settings)
    existing = {pool["Id"] for page in client.get_paginator("list_user_pools").paginate(MaxResults=60)
                for pool in page["UserPools"]}
    ids: dict[str, str] = {}
    for stack in load_stacks(settings):
        known = recorded.setdefault(stack.stem, {})
        for pool in stack.user_pools():
            if known.get(pool.logical_id) not in existing:
                create, skipped = _accepted(client, "CreateUserPool", pool.settings)
                known[pool.logical_id] = client.create_user_pool(**create)["UserPool"]["Id"]
                for client_spec in pool.clients:
                    known.pop(client_spec.logical_id, None)  # the clients of a pool that is gone are gone
                progress(f"created user pool {pool.name} ({known[pool.logical_id]})"
                         + (f"; not applied locally: {', '.join(skipped)}" if skipped else ""))
            pool_id = known[pool.logical_id]
            for client_spec in pool.clients:
                if client_spec.logical_id not in known:
                    create, _ = _accepted(client, "CreateUserPoolClient", client_spec.settings)
                    made = client.create_user_pool_client(UserPoolId=pool_id, **create)["UserPoolClient"]
                    known[client_spec.logical_id] = made["ClientId"]
                    progress(f"created app client {made['ClientName']} ({made['ClientId']})")
            ids.update(known)
    physical_ids_file(settings).write_text(json.dumps(recorded, indent=2))
    return ids


# --- the JWT authorizer -----------------------------------------------------------------------------------
class Unauthorized(Exception):
    """The token is missing or fails a check; API Gateway answers 401 {"message": "Unauthorized"}."""


def jwks_source(issuer: str, settings: Settings) -> tuple[str, dict[str, str]]:
    """(URL, headers) of the issuer's JWKS: a Cognito issuer's keys come from the local endpoint (with the
    header moto routes by), others from the issuer."""
    found = ISSUER.match(issuer)
    if settings.target == "local" and found:
        return f"{settings.aws_endpoint_url}/{found.group(2)}/.well-known/jwks.json", JWKS_HEADERS
    return f"{issuer.rstrip('/')}/.well-known/jwks.json", {}


def api_gateway_claims(claims: dict) -> dict[str, str]:
    """Claims as API Gateway passes them: every value a string, lists as "[a b]", booleans as true/false."""
    def text(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, list):
            return "[" + " ".join(text(item) for item in value) + "]"
        return value if isinstance(value, str) else json.dumps(value)

    return {key: text(value) for key, value in claims.items()}


REFRESH_INTERVAL = 10.0  # seconds between JWKS fetches for unknown kids


class JwtVerifier:
    """One JWT authorizer: RS256 signature by the issuer's JWKS, iss, aud (the app client), exp, token_use id."""

    def __init__(self, issuer: str, audience: tuple[str, ...], jwks: tuple[str, dict[str, str]],
                 leeway: int = 0) -> None:
        self.issuer = issuer
        self.audience = list(audience)
        self.leeway = leeway
        url, headers = jwks
        self.keys = jwt.PyJWKClient(url, cache_keys=True, lifespan=3600, headers=headers, timeout=5)
        self.refreshed = -REFRESH_INTERVAL  # when an unknown kid last made it fetch the JWKS again

    def signing_key(self, token: str) -> jwt.PyJWK:
        """The cached key of the token's kid; an unknown kid fetches the JWKS again at most once per
        REFRESH_INTERVAL, so tokens with made-up kids cannot turn every request into a fetch."""
        kid = jwt.get_unverified_header(token).get("kid")
        keys = {key.key_id: key for key in self.keys.get_signing_keys()}
        if kid not in keys and monotonic() - self.refreshed >= REFRESH_INTERVAL:
            self.refreshed = monotonic()
            keys = {key.key_id: key for key in self.keys.get_signing_keys(refresh=True)}
        if kid not in keys:
            raise Unauthorized(f"no signing key {kid!r}")
        return keys[kid]

    def claims(self, authorization: str | None) -> dict[str, str]:
        """The verified claims of the bearer token in `authorization`; raises Unauthorized."""
        token = (authorization or "").strip()
        if token[:7].lower() == "bearer ":
            token = token[7:].strip()
        if not token:
            raise Unauthorized("no token")
        try:
            key = self.signing_key(token)
            claims = jwt.decode(token, key.key, algorithms=["RS256"], audience=self.audience, issuer=self.issuer,
                                leeway=self.leeway, options={"require": ["exp", "iss", "aud", "sub", "token_use"]})
        except jwt.PyJWTError as error:
            raise Unauthorized(str(error)) from error
        if claims.get("token_use") != "id":
            raise Unauthorized("not an ID token")
        return api_gateway_claims(claims)
