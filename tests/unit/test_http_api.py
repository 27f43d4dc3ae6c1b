"""The local HTTP API builds API Gateway payload format 2.0 events and maps handler results back."""

import base64

import pytest
from starlette.testclient import TestClient

from clickstream.infra.templates import HttpApi, HttpRoute, JwtAuthorizer, TemplateError
from clickstream.local.http_api import create_app, synthetic_event, token_header
from clickstream.local.lambda_runtime import LambdaTimeoutError


class RecordingFunction:
    """Stands in for a LocalLambda: records the event, returns a chosen result."""

    def __init__(self, result=None, error=None):
        self.result, self.error, self.events = result, error, []
        self.function = type("F", (), {"name": "recording"})()

    def invoke(self, event, request_id=None):
        self.events.append(event)
        if self.error:
            raise self.error
        return self.result


def make_client(function, routes=("POST /clickstream",), cors=None):
    api = HttpApi("Api", "test-api", "abcdef1234", "$default", tuple(HttpRoute(k, "Fn") for k in routes), cors)
    return TestClient(create_app(api, {"Fn": function}))


def test_request_becomes_a_payload_2_event():
    function = RecordingFunction({"statusCode": 201, "headers": {"X-Thing": "1"}, "body": "{}"})
    client = make_client(function)
    response = client.post(
        "/clickstream?a=1&a=2&b=x", content=b'{"k": 1}',
        headers={"content-type": "application/json", "user-agent": "pytest-agent", "cookie": "c1=v1; c2=v2"},
    )
    assert response.status_code == 201 and response.headers["x-thing"] == "1"
    (event,) = function.events
    assert event["version"] == "2.0" and event["routeKey"] == "POST /clickstream"
    assert event["rawPath"] == "/clickstream" and event["rawQueryString"] == "a=1&a=2&b=x"
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x"}
    assert event["cookies"] == ["c1=v1", "c2=v2"] and "cookie" not in event["headers"]
    assert event["headers"]["user-agent"] == "pytest-agent"
    assert all(key == key.lower() for key in event["headers"])
    assert event["body"] == '{"k": 1}' and event["isBase64Encoded"] is False
    ctx = event["requestContext"]
    assert ctx["http"] == {"method": "POST", "path": "/clickstream", "protocol": "HTTP/1.1",
                           "sourceIp": "testclient", "userAgent": "pytest-agent"}
    assert ctx["apiId"] == "abcdef1234" and ctx["stage"] == "$default" and ctx["routeKey"] == "POST /clickstream"
    assert response.headers["apigw-requestid"] == ctx["requestId"]
    assert abs(ctx["timeEpoch"] / 1000 - __import__("time").time()) < 60


def test_binary_body_is_base64_encoded():
    function = RecordingFunction({"statusCode": 200, "body": ""})
    make_client(function).post("/clickstream", content=b"\xff\x00\x01", headers={"content-type": "application/octet-stream"})
    event = function.events[0]
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"\xff\x00\x01"


def test_bare_object_result_becomes_200_json():
    response = make_client(RecordingFunction({"ok": True})).post("/clickstream", json={})
    assert response.status_code == 200 and response.json() == {"ok": True}
    assert response.headers["content-type"] == "application/json"


def test_base64_result_and_cookies_are_decoded():
    result = {"statusCode": 200, "body": base64.b64encode(b"bin").decode(), "isBase64Encoded": True,
              "cookies": ["a=1", "b=2"]}
    response = make_client(RecordingFunction(result)).post("/clickstream", json={})
    assert response.content == b"bin" and response.headers.get_list("set-cookie") == ["a=1", "b=2"]


def test_unknown_route_and_method_are_404_without_invoking():
    function = RecordingFunction({"statusCode": 200})
    client = make_client(function)
    assert client.post("/other", json={}).status_code == 404
    assert client.get("/clickstream").json() == {"message": "Not Found"}
    assert function.events == []


def test_path_parameters_and_greedy_routes():
    function = RecordingFunction({"statusCode": 204})
    client = make_client(function, routes=("GET /items/{id}", "ANY /{proxy+}"))
    client.get("/items/42")
    client.delete("/a/b/c")
    assert function.events[0]["pathParameters"] == {"id": "42"} and function.events[0]["routeKey"] == "GET /items/{id}"
    assert function.events[1]["pathParameters"] == {"proxy": "a/b/c"} and function.events[1]["routeKey"] == "ANY /{proxy+}"


@pytest.mark.parametrize("error, status", [(RuntimeError("boom"), 500), (LambdaTimeoutError("slow"), 503)])
def test_handler_failures_map_like_api_gateway(error, status):
    response = make_client(RecordingFunction(error=error)).post("/clickstream", json={})
    assert response.status_code == status and "message" in response.json()


def test_cors_preflight_from_template_configuration():
    cors = {"AllowOrigins": ["https://shop.example.com"], "AllowMethods": ["POST", "OPTIONS"],
            "AllowHeaders": ["content-type"], "MaxAge": 600}
    function = RecordingFunction({"statusCode": 200, "body": "{}"})
    client = make_client(function, cors=cors)
    ok = client.options("/clickstream", headers={"origin": "https://shop.example.com",
                                                 "access-control-request-method": "POST",
                                                 "access-control-request-headers": "content-type"})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://shop.example.com"
    assert ok.headers["access-control-max-age"] == "600"
    denied = client.options("/clickstream", headers={"origin": "https://evil.example",
                                                     "access-control-request-method": "POST"})
    assert denied.status_code == 400 and "access-control-allow-origin" not in denied.headers
    assert function.events == []
    simple = client.post("/clickstream", json={}, headers={"origin": "https://shop.example.com"})
    assert simple.headers["access-control-allow-origin"] == "https://shop.example.com"


def test_synthetic_event_matches_a_served_request():
    function = RecordingFunction({"statusCode": 200, "body": ""})
    api = HttpApi("Api", "test-api", "abcdef1234", "$default", (HttpRoute("POST /clickstream", "Fn"),), None)
    TestClient(create_app(api, {"Fn": function})).post(
        "/clickstream", content=b"{}", headers={"content-type": "text/plain", "user-agent": "ua"})
    served = function.events[0]
    made = synthetic_event(api, "POST /clickstream", b"{}", {"content-type": "text/plain", "user-agent": "ua"},
                           source_ip="testclient")
    volatile = ("requestId", "time", "timeEpoch", "domainName", "domainPrefix")
    for event in (served, made):
        for key in volatile:
            event["requestContext"].pop(key)
        event["headers"] = {k: v for k, v in event["headers"].items() if k in ("content-type", "user-agent")}
    assert made == served


class TokenVerifier:
    """Stands in for a JwtVerifier: accepts the one token "good", records what it was given."""

    def __init__(self):
        self.seen = []

    def claims(self, authorization):
        from clickstream.local.cognito import Unauthorized

        self.seen.append(authorization)
        if authorization != "Bearer good":
            raise Unauthorized("bad token")
        return {"sub": "the-sub", "token_use": "id"}


def authorized_api() -> HttpApi:
    authorizer = JwtAuthorizer("Auth", ("$request.header.Authorization",), "https://issuer", ("client",))
    routes = (HttpRoute("POST /clickstream", "Fn"), HttpRoute("POST /clickstream/user", "Fn", authorizer))
    return HttpApi("Api", "test-api", "abcdef1234", "$default", routes, None)


def test_an_authorized_route_passes_the_verified_claims_as_api_gateway_does():
    function, verifier = RecordingFunction({"statusCode": 200, "body": ""}), TokenVerifier()
    client = TestClient(create_app(authorized_api(), {"Fn": function}, {"Auth": verifier}))

    assert client.post("/clickstream/user", content=b"{}", headers={"authorization": "Bearer good"}).status_code == 200
    assert client.post("/clickstream", content=b"{}", headers={"authorization": "Bearer good"}).status_code == 200

    signed_in, anonymous = function.events
    assert signed_in["requestContext"]["authorizer"] == {"jwt": {"claims": {"sub": "the-sub", "token_use": "id"},
                                                                 "scopes": None}}
    assert "authorizer" not in anonymous["requestContext"], "a route without an authorizer verifies nothing"
    assert verifier.seen == ["Bearer good"]


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer bad"}])
def test_a_bad_or_missing_token_is_401_without_invoking(headers):
    function = RecordingFunction({"statusCode": 200, "body": ""})
    client = TestClient(create_app(authorized_api(), {"Fn": function}, {"Auth": TokenVerifier()}))
    response = client.post("/clickstream/user", content=b"{}", headers=headers)
    assert (response.status_code, response.json()) == (401, {"message": "Unauthorized"})
    assert response.headers["apigw-requestid"] and function.events == []


def test_an_authorizer_without_a_verifier_is_refused_at_start():
    with pytest.raises(TemplateError, match="Auth"):
        create_app(authorized_api(), {"Fn": RecordingFunction()})


def test_the_token_header_comes_from_the_identity_source():
    assert token_header(("$request.header.X-Token",)) == "x-token"
    with pytest.raises(TemplateError):
        token_header(("$request.querystring.token",))


def test_synthetic_event_carries_the_authorizers_claims():
    event = synthetic_event(authorized_api(), "POST /clickstream/user", b"{}", claims={"sub": "s"})
    assert event["requestContext"]["authorizer"]["jwt"]["claims"] == {"sub": "s"}
