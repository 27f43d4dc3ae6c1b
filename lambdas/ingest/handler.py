"""AWS Lambda entry point of POST /clickstream (API Gateway HTTP API, payload format 2.0).

Thin on purpose: reads settings once from the environment the template sets, builds the S3 client
lazily and calls the pure `clickstream.ingestion.ingest.handle_http_event`.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from clickstream.aws import LambdaContext, client
from clickstream.ingestion.ingest import IngestSettings, handle_http_event


@functools.cache
def settings() -> IngestSettings:
    return IngestSettings.from_env(os.environ)


@functools.cache
def s3_client() -> Any:
    return client("s3")


def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_http_event(event, context.aws_request_id, s3_client(), settings())
