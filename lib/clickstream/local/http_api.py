"""A local API Gateway HTTP API (payload format 2.0), its routes, integrations, JWT authorizers and CORS read
from the template."""

from __future__ import annotations

import base64
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping, Protocol

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from clickstream.infra.templates import HttpApi, HttpRoute, TemplateError
from clickstream.local.cognito import Unauthorized
from clickstream.local.lambda_runtime import LambdaTimeoutError, LocalLambda
from clickstream.settings import LOCAL_ACCOUNT_ID

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway's request payload quota
TEXT_TYPES = re.compile(r"^(text/|application/(json|[\w.+-]+\+json|xml|javascript|x-www-form-urlencoded))", re.I)
HTTP_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "CONNECT"]
# Locally the API also admits the origins development servers run on (any port of the loopback).
LOOPBACK_ORIGINS = r"http://(127\.0\.0\.1|localhost)(:[0-9]{1,5})?"


class Verifier(Protocol):
    def claims(self, authorization: str | None) -> dict[str, str]:
        """The verified claims of the token; raises Unauthorized."""


def token_header(identity_source: tuple[str, ...]) -> str:
    """The header a JWT authorizer reads its token from ("$request.header.Authorization" -> "authorization")."""
    if len(identity_source) != 1 or not identity_source[0].startswith("$request.header."):
        raise TemplateError(f"a JWT authorizer's IdentitySource must be one header, not {list(identity_source)}")
    return identity_source[0].removeprefix("$request.header.").lower()


@dataclass(frozen=True)
class CompiledRoute:
    route: HttpRoute
    pattern: re.Pattern | None  # None: the $default route

    @classmethod
    def of(cls, route: HttpRoute) -> "CompiledRoute":
        if route.path is None:
            return cls(route, None)
        regex = re.sub(r"\\\{(\w+)\\\+\\\}", r"(?P<\1>.+)", re.escape(route.path))
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", regex)
        return cls(route, re.compile(f"^{regex}$"))

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if self.route.method not in ("ANY", method):
            return None
        if self.pattern is None:
            return {}
        found = self.pattern.match(path)
        return found.groupdict() if found else None

    @property
    def specificity(self) -> tuple:
        """API Gateway prefers exact paths, then greedy ones, then $default; a method over ANY."""
        path = self.route.path
        return (path is None, path is not None and "+}" in path, self.route.method == "ANY", -len(path or ""))


def build_event(request: Request, body: bytes, route: HttpRoute, params: dict, api: HttpApi, request_id: str,
                claims: Mapping[str, str] | None = None) -> dict:
    """The payload format 2.0 event API Gateway would send for this request (`claims`: a JWT authorizer's)."""
    headers: dict[str, str] = {}
    for key, value in request.headers.items():
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    cookies = [c.strip() for c in headers.pop("cookie", "").split(";") if c.strip()]
    query: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        query[key] = f"{query[key]},{value}" if key in query else value
    now = datetime.now(timezone.utc)
    content_type = headers.get("content-type", "")
    try:
        text = body.decode("utf-8") if TEXT_TYPES.match(content_type) or not body else None
    except UnicodeDecodeError:
        text = None
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.key,
        "rawPath": request.url.path,
        "rawQueryString": request.url.query,
        "headers": headers,
        "requestContext": {
            "accountId": LOCAL_ACCOUNT_ID,
            "apiId": api.api_id,
            "domainName": headers.get("host", ""),
            "domainPrefix": headers.get("host", "").split(".")[0],
            "http": {
                "method": request.method,
                "path": request.url.path,
                "protocol": f"HTTP/{request.scope.get('http_version', '1.1')}",
                "sourceIp": request.client.host if request.client else "127.0.0.1",
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": route.key,
            "stage": api.stage,
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": text is None,
    }
    if claims is not None:
        event["requestContext"]["authorizer"] = {"jwt": {"claims": dict(claims), "scopes": None}}
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if params:
        event["pathParameters"] = params
    if body:
        event["body"] = text if text is not None else base64.b64encode(body).decode("ascii")
    return event


def synthetic_event(
    api: HttpApi,
    route_key: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    query: str = "",
    source_ip: str = "203.0.113.7",
    claims: Mapping[str, str] | None = None,
) -> dict:
    """The payload format 2.0 event a request to `route_key` (e.g. "POST /clickstream") would produce,
    without a server: for notebooks that show the event, and for benchmarks and the simulator that invoke
    handlers directly (`claims`: what the route's JWT authorizer would pass)."""
    method, _, path = route_key.partition(" ")
    headers = {"host": "127.0.0.1", "content-length": str(len(body)), **(headers or {})}
    scope = {
        "type": "http", "http_version": "1.1", "method": method, "path": path, "raw_path": path.encode(),
        "query_string": query.encode(), "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": (source_ip, 50000), "server": ("127.0.0.1", 80), "scheme": "http", "root_path": "",
    }
    route = next(r for r in api.routes if r.key == route_key)
    return build_event(Request(scope), body, route, {}, api, str(uuid.uuid4()), claims)


def to_response(result: Any, request_id: str) -> Response:
    """Map the handler's result back to HTTP as API Gateway does for payload format 2.0."""
    headers = {"apigw-requestid": request_id}
    if not (isinstance(result, dict) and "statusCode" in result):
        headers["content-type"] = "application/json"
        return Response(json.dumps(result), status_code=200, headers=headers)
    headers.update({k.lower(): str(v) for k, v in (result.get("headers") or {}).items()})
    body = result.get("body") or ""
    content = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
    response = Response(content, status_code=int(result["statusCode"]), headers=headers)
    for cookie in result.get("cookies") or []:
        response.headers.append("set-cookie", cookie)
    return response


def create_app(api: HttpApi, functions: dict[str, LocalLambda], verifiers: Mapping[str, Verifier] | None = None
               ) -> Starlette:
    """An ASGI app serving `api`'s routes with the local Lambdas behind them; a route with a JWT authorizer
    admits only requests whose token `verifiers[authorizer logical id]` accepts. CORS admits the template's
    origins and the loopback's (LOOPBACK_ORIGINS)."""
    routes = sorted((CompiledRoute.of(r) for r in api.routes), key=lambda c: c.specificity)
    verifiers = verifiers or {}
    missing = sorted({r.authorizer.logical_id for r in api.routes if r.authorizer} - set(verifiers))
    if missing:
        raise TemplateError(f"no verifier for the authorizers {missing}: the local API never skips one")

    async def authorize(route: HttpRoute, request: Request) -> dict[str, str] | None:
        if route.authorizer is None:
            return None
        token = request.headers.get(token_header(route.authorizer.identity_source))
        return await run_in_threadpool(verifiers[route.authorizer.logical_id].claims, token)

    async def dispatch(request: Request) -> Response:
        request_id = str(uuid.uuid4())
        for compiled in routes:
            params = compiled.match(request.method, request.url.path)
            if params is not None:
                break
        else:
            return JSONResponse({"message": "Not Found"}, status_code=404, headers={"apigw-requestid": request_id})
        try:
            claims = await authorize(compiled.route, request)
        except Unauthorized as error:
            log.info("401 on %s: %s", compiled.route.key, error)
            return JSONResponse({"message": "Unauthorized"}, status_code=401, headers={"apigw-requestid": request_id})
        body = await request.body()
        if len(body) > MAX_PAYLOAD_BYTES:
            return JSONResponse({"message": "Request Entity Too Large"}, status_code=413)
        event = build_event(request, body, compiled.route, params, api, request_id, claims)
        function = functions[compiled.route.function]
        started = time.perf_counter()
        try:
            result = await run_in_threadpool(function.invoke, event, request_id)
        except LambdaTimeoutError as error:
            log.error("%s", error)
            return JSONResponse({"message": "Service Unavailable"}, status_code=503)
        except Exception:
            log.exception("%s failed on request %s", function.function.name, request_id)
            return JSONResponse({"message": "Internal Server Error"}, status_code=500)
        finally:
            log.debug("%s %s -> %s in %.1f ms", request.method, request.url.path, function.function.name,
                      (time.perf_counter() - started) * 1000)
        return to_response(result, request_id)

    middleware = []
    if api.cors:
        cors = api.cors
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=cors.get("AllowOrigins", []),
                allow_origin_regex=LOOPBACK_ORIGINS,
                allow_methods=cors.get("AllowMethods", []),
                allow_headers=cors.get("AllowHeaders", []),
                expose_headers=cors.get("ExposeHeaders", []),
                allow_credentials=bool(cors.get("AllowCredentials", False)),
                max_age=int(cors.get("MaxAge", 600)),
            )
        )
    return Starlette(routes=[Route("/{path:path}", dispatch, methods=HTTP_METHODS)], middleware=middleware)
