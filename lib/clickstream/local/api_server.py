"""Serve the template's HTTP API locally (what `clickstream up` starts as `clickstream-http-api`).

    CLICKSTREAM_HOME=.clickstream python -m clickstream.local.api_server --port 3100
"""

from __future__ import annotations

import argparse
import logging
import os

import uvicorn
from starlette.applications import Starlette

from clickstream.infra.templates import TemplateError, load_stacks
from clickstream.local.cognito import JwtVerifier, jwks_source
from clickstream.local.http_api import create_app
from clickstream.local.lambda_runtime import LocalLambda
from clickstream.settings import Settings


def build_app(settings: Settings) -> Starlette:
    """The local API of the one HTTP API in the templates, its functions run in this process, its JWT
    authorizers verified against their issuers' keys (a Cognito issuer's from the local endpoint)."""
    stacks = load_stacks(settings)
    apis = [api for stack in stacks for api in stack.http_apis()]
    if len(apis) != 1:
        raise TemplateError(f"expected exactly one HTTP API in {settings.templates}, found {[a.name for a in apis]}")
    api = apis[0]
    definitions = {lid: fn for stack in stacks for lid, fn in stack.functions().items()}
    needed = {route.function for route in api.routes}
    functions = {lid: LocalLambda(definitions[lid], settings, scoped_environment=False) for lid in needed}
    merged: dict[str, str] = {}
    for function in functions.values():
        clash = {k for k, v in function.env.items() if merged.get(k, v) != v}
        if clash:
            functions = {lid: LocalLambda(definitions[lid], settings) for lid in needed}
            break
        merged.update(function.env)
    else:
        os.environ.update(merged)
    for function in functions.values():
        function.init()  # import now, so the first request does not pay for it
    verifiers = {route.authorizer.logical_id: JwtVerifier(route.authorizer.issuer, route.authorizer.audience,
                                                          jwks_source(route.authorizer.issuer, settings))
                 for route in api.routes if route.authorizer}
    return create_app(api, functions, verifiers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = Settings.from_env(api_port=args.port, host=args.host)
    # proxy_headers off: API Gateway's sourceIp is the TCP peer, never a client-sent X-Forwarded-For
    uvicorn.run(build_app(settings), host=args.host, port=args.port, log_level="warning", access_log=False,
                proxy_headers=False)


if __name__ == "__main__":
    main()
