"""The one factory for AWS clients: `local` points at the moto endpoint, `aws` at real AWS."""

from __future__ import annotations

import os

import boto3
from botocore.config import Config

from clickstream.settings import Settings

LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def local_endpoint(settings: Settings) -> str:
    """The moto endpoint: AWS_ENDPOINT_URL when set (inside the local Lambda runtime), else the stack's port."""
    return os.environ.get("AWS_ENDPOINT_URL") or settings.aws_endpoint_url


def client(service: str, settings: Settings | None = None, **kwargs):
    """A boto3 client for `service` on the settings' target."""
    settings = settings or Settings.from_env()
    config = Config(retries={"mode": "standard", "max_attempts": 3}, s3={"addressing_style": "path"})
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
