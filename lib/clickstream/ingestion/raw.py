"""The raw zone: list and read the objects the ingest Lambda wrote (always paginated)."""

from __future__ import annotations

from typing import Iterator

from clickstream import contract

RAW_PREFIX = "events/"


def list_objects(s3, bucket: str, prefix: str = RAW_PREFIX) -> Iterator[dict]:
    """Every object under `prefix`: Key, Size, ETag, LastModified. No 1,000-key ceiling."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def read_object(s3, bucket: str, key: str) -> dict:
    """One raw object, money kept exact (decimals, not floats)."""
    return contract.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
