"""ingest-openapi.yaml describes what handle_http_event really accepts and answers."""

from __future__ import annotations

import base64
import json
import os
import uuid
from http import HTTPStatus

import pytest
import schemathesis
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, settings as hypothesis_settings
from openapi_spec_validator import validate as validate_openapi
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance, unsupported_method
from openapi_spec_validator.readers import read_from_filename
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from starlette.testclient import TestClient

from clickstream import contract
from clickstream.infra.templates import load_stacks
from clickstream.ingestion.ingest import IngestSettings, handle_http_event
from clickstream.local.cognito import Unauthorized
from clickstream.local.http_api import create_app
from clickstream.settings import Settings
from tests.schemathesis_checks import invalid_events_are_rejected, valid_events_are_accepted

from event_samples import BUCKET, load_sample
from reference_validator import validator_class_and_format_checker

DOCUMENT_URI = "urn:clickstream:ingest-openapi"
FUZZ_EXAMPLES = int(os.environ.get("CLICKSTREAM_FUZZ_EXAMPLES", "40"))


@pytest.fixture(scope="module")
def document() -> dict:
    return contract.openapi_document()


def schema_at(document: dict, pointer: str):
    registry = Registry().with_resource(DOCUMENT_URI, Resource(contents=document, specification=DRAFT202012))
    validator_class, format_checker = validator_class_and_format_checker()
    return validator_class({"$ref": f"{DOCUMENT_URI}#{pointer}"}, registry=registry, format_checker=format_checker)


def test_openapi_document_is_valid_openapi_3_1(document):
    spec, base_uri = read_from_filename(str(contract.OPENAPI_PATH))
    assert spec["openapi"].startswith("3.1")
    validate_openapi(spec, base_uri=base_uri)
    validate_openapi(document)


def resolved(document: dict, node: dict) -> dict:
    """`node`, or the component its `$ref` names."""
    if "$ref" not in node:
        return node
    _, section, kind, name = node["$ref"].split("/")
    return document[section][kind][name]


def response_pointer(document: dict, status: str) -> str:
    """The JSON pointer of POST /clickstream's response for `status` (a component)."""
    return document["paths"]["/clickstream"]["post"]["responses"][status]["$ref"].removeprefix("#")


def template_routes() -> dict:
    """{route key: HttpRoute} of the templates' HTTP API."""
    return {route.key: route for stack in load_stacks(Settings()) for api in stack.http_apis() for route in api.routes}


def test_the_documents_operations_are_the_templates_routes(document):
    routes = template_routes()
    assert {f"{method.upper()} {path}" for path, item in document["paths"].items() for method in item} == set(routes)
    schemes = document["components"]["securitySchemes"]
    for key, route in routes.items():
        method, path = key.split(" ")
        security = document["paths"][path][method.lower()].get("security", [])
        if route.authorizer is None:
            assert security == [], key
        else:
            (requirement,) = security
            (scheme,) = (schemes[name] for name in requirement)
            assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT"), key
            assert route.authorizer.identity_source == ("$request.header.Authorization",)


def test_the_signed_in_route_answers_what_the_anonymous_one_does_and_api_gateways_401(document):
    anonymous, signed_in = (document["paths"][path]["post"] for path in ("/clickstream", "/clickstream/user"))
    assert signed_in["requestBody"] == anonymous["requestBody"]
    assert {status: response for status, response in signed_in["responses"].items() if status != "401"} == \
        anonymous["responses"]
    (api,) = (api for stack in load_stacks(Settings()) for api in stack.http_apis())
    route = template_routes()["POST /clickstream/user"]

    class Refuses:
        def claims(self, authorization):
            raise Unauthorized("the token has expired")

    class NeverInvoked:
        function = type("Function", (), {"name": "ingest"})()

        def invoke(self, event, request_id=None):
            raise AssertionError("the authorizer answers before the Lambda")

    client = TestClient(create_app(api, {route.function: NeverInvoked()}, {route.authorizer.logical_id: Refuses()}))
    refused = client.post("/clickstream/user", content=b"{}", headers={"authorization": "Bearer expired"})
    assert refused.status_code == 401 and "x-request-id" not in refused.headers
    unauthorized = signed_in["responses"]["401"]["$ref"].removeprefix("#")
    validator = schema_at(document, f"{unauthorized}/content/application~1json/schema")
    assert list(validator.iter_errors(refused.json())) == []
    assert not validator.is_valid({"message": "Forbidden"})


def test_limits_in_the_document_match_the_defaults(document):
    defaults = IngestSettings(raw_bucket=BUCKET)
    batch = document["components"]["schemas"]["Batch"]["properties"]["events"]
    assert batch["maxItems"] == defaults.max_batch_events
    assert str(defaults.max_body_bytes) in document["info"]["description"]
    rejection_errors = document["components"]["schemas"]["Rejection"]["properties"]["errors"]
    assert rejection_errors["maxItems"] == contract.MAX_REASONS


@pytest.mark.parametrize("media_type", ["application/json", "text/plain"])
def test_request_examples_match_the_request_schema(document, media_type):
    content = resolved(document, document["paths"]["/clickstream"]["post"]["requestBody"])["content"][media_type]
    validator = schema_at(document, "/components/schemas/IngestRequest")
    for name, example in content["examples"].items():
        value = example["value"] if "value" in example else document["components"]["examples"][example["$ref"].rsplit("/", 1)[1]]["value"]
        assert list(validator.iter_errors(value)) == [], name


@pytest.mark.parametrize(
    "sample",
    ["apigw_http_post_single_event.json", "apigw_http_post_batch_beacon.json", "apigw_http_post_legacy_event.json"],
)
def test_sample_bodies_match_the_request_schema(document, sample):
    validator = schema_at(document, "/components/schemas/IngestRequest")
    assert list(validator.iter_errors(contract.loads(load_sample(sample)["body"]))) == []


def test_request_schema_rejects_what_the_handler_rejects(document, make_event):
    validator = schema_at(document, "/components/schemas/IngestRequest")
    for body in ([make_event()], {"events": []}, {"events": [make_event()], "x": 1}, make_event(event_name="checkout")):
        assert not validator.is_valid(body)


class BrokenS3:
    def put_object(self, **kwargs):
        raise ClientError({"Error": {"Code": "InternalError", "Message": "We encountered an internal error."}}, "PutObject")


def responses_of_every_kind(http_event, s3, make_event) -> list[dict]:
    ingest_settings = IngestSettings(raw_bucket=BUCKET)
    valid, invalid = contract.dumps(make_event()), contract.dumps(make_event(event_name="nope"))
    events = [
        http_event(),
        http_event(f'{{"events": [{valid}, {invalid}]}}'),
        http_event(invalid),
        http_event(""),
        http_event("{"),
        http_event("[]"),
        http_event('{"events": []}'),
        http_event("%%%", base64_encoded=True),
        http_event("x" * (ingest_settings.max_body_bytes + 1)),
        http_event('{"events": [' + ",".join([valid] * 501) + "]}"),
        http_event(content_type="application/xml"),
    ]
    responses = [handle_http_event(event, str(uuid.uuid4()), s3, ingest_settings) for event in events]
    responses.append(handle_http_event(http_event(), "r", BrokenS3(), ingest_settings))
    return responses


def test_every_response_is_documented_and_matches_its_schema(document, http_event, s3, make_event):
    responses = responses_of_every_kind(http_event, s3, make_event)
    documented = {status: resolved(document, response)
                  for status, response in document["paths"]["/clickstream"]["post"]["responses"].items()}
    assert {response["statusCode"] for response in responses} == {200, 400, 413, 415, 503}
    for response in responses:
        status = str(response["statusCode"])
        assert status in documented
        validator = schema_at(document, f"{response_pointer(document, status)}/content/application~1json/schema")
        assert list(validator.iter_errors(json.loads(response["body"]))) == [], response["body"]
        assert response["headers"]["content-type"] == "application/json"
        for name, header in documented[status].get("headers", {}).items():
            if "$ref" in header:
                header = document["components"]["headers"][header["$ref"].rsplit("/", 1)[1]]
            if header.get("required"):
                assert name in response["headers"], (status, name)


# The same document, fuzzed by schemathesis against the handler in-process ----------------------------------------


def wsgi_app(backend: dict):
    """What API Gateway does for the route, as WSGI: build the payload 2.0 event, call the pure handler."""

    def app(environ, start_response):
        if environ["PATH_INFO"] != "/clickstream" or environ["REQUEST_METHOD"] != "POST":
            start_response("404 Not Found", [("content-type", "application/json")])
            return [b'{"message":"Not Found"}']
        data = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items() if key.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        event = {
            "version": "2.0",
            "routeKey": "POST /clickstream",
            "rawPath": "/clickstream",
            "headers": headers,
            "requestContext": {"apiId": "local", "stage": "$default", "requestId": "fuzz", "http": {"method": "POST", "sourceIp": "127.0.0.1"}},
            "isBase64Encoded": False,
        }
        if data:
            try:
                event["body"] = data.decode("utf-8")
            except UnicodeDecodeError:
                event["body"], event["isBase64Encoded"] = base64.b64encode(data).decode(), True
        response = handle_http_event(event, str(uuid.uuid4()), backend["s3"], backend["settings"])
        status = response["statusCode"]
        start_response(f"{status} {HTTPStatus(status).phrase}", list(response["headers"].items()))
        return [response["body"].encode("utf-8")]

    return app


BACKEND: dict = {}
INGEST_API = schemathesis.openapi.from_path(contract.OPENAPI_PATH).include(path="/clickstream")  # the Lambda's
INGEST_API.app = wsgi_app(BACKEND)  # the authorizer in front of /clickstream/user is the local API's (test_http_api)


@pytest.fixture
def backend(s3, settings):
    BACKEND.update(s3=s3, settings=settings)
    yield BACKEND
    BACKEND.clear()


@INGEST_API.parametrize()
@hypothesis_settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_handler_conforms_to_openapi_under_fuzzing(case, backend):
    """Every documented check; a method other than POST is API Gateway's 404, not the handler's business."""
    case.call_and_validate(
        excluded_checks=[unsupported_method, negative_data_rejection, positive_data_acceptance],
        additional_checks=[invalid_events_are_rejected, valid_events_are_accepted],
    )
