"""The one factory for AWS clients: `local` points at the moto endpoint, `aws` at real AWS; and the shape of
the context object Lambda hands a handler."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field

import boto3
from botocore.config import Config

from clickstream.settings import LOCAL_ACCOUNT_ID, Settings

LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def local_endpoint(settings: Settings) -> str:
    """The moto endpoint: AWS_ENDPOINT_URL when set (inside the local Lambda runtime), else the stack's port."""
    return os.environ.get("AWS_ENDPOINT_URL") or settings.aws_endpoint_url


def client(service: str, settings: Settings | None = None, config: Config | None = None, **kwargs):
    """A boto3 client for `service` on the settings' target; `config` is merged over the defaults."""
    settings = settings or Settings.from_env()
    defaults = Config(retries={"mode": "standard", "max_attempts": 3}, s3={"addressing_style": "path"})
    config = defaults.merge(config) if config else defaults
    if settings.target == "local":
        return boto3.client(
            service,
            region_name=settings.region,
            endpoint_url=local_endpoint(settings),
            config=config,
            **LOCAL_CREDENTIALS,
            **kwargs,
        )
    return boto3.client(service, region_name=settings.region, config=config, **kwargs)


@dataclass
class LambdaContext:
    """The attributes and method of Lambda's Python context object that handlers use: handlers type-hint with
    it, the local Lambda runtime and the tests build it."""

    function_name: str
    memory_limit_in_mb: int
    timeout_seconds: int
    region: str = "us-east-1"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    _started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{LOCAL_ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/{self.aws_request_id}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self._started)) * 1000))
