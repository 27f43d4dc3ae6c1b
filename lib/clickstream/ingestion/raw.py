"""The raw zone: list and read the objects the ingest Lambda wrote (always paginated), count them per hour
partition, find the objects holding given events, and delete them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any, Collection, Iterable, Iterator

from clickstream import contract

RAW_PREFIX = "events/"
DELETE_BATCH = 1000  # the most keys one DeleteObjects request takes


def day_prefix(day: date, prefix: str = RAW_PREFIX) -> str:
    """`<prefix>YYYY/MM/DD/`: the partitions of one UTC receive day."""
    return f"{prefix}{day:%Y/%m/%d}/"


def day_prefixes(first: date, last: date, prefix: str = RAW_PREFIX) -> list[str]:
    """The day prefixes of the UTC days `first` to `last`, both included."""
    return [day_prefix(first + timedelta(days=n), prefix) for n in range((last - first).days + 1)]


def list_objects(s3, bucket: str, prefix: str = RAW_PREFIX) -> Iterator[dict]:
    """Every object under `prefix`: Key, Size, ETag, LastModified. No 1,000-key ceiling."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def read_object(s3, bucket: str, key: str) -> dict:
    """One raw object, money kept exact (decimals, not floats)."""
    return contract.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def partition(key: str) -> str:
    """The hour partition of a raw object's key: `events/YYYY/MM/DD/HH`."""
    return key.rsplit("/", 1)[0]


def per_partition(s3, bucket: str, objects: Iterable[dict]) -> dict[str, dict[str, int]]:
    """{hour partition: {"objects": n, "events": the sum of their event_count}} of listed `objects`, in key
    order; each object is read."""
    counts: dict[str, dict[str, int]] = {}
    for obj in sorted(objects, key=lambda item: item["Key"]):
        count = counts.setdefault(partition(obj["Key"]), {"objects": 0, "events": 0})
        count["objects"] += 1
        count["events"] += read_object(s3, bucket, obj["Key"])["event_count"]
    return counts


def objects_holding(s3, bucket: str, event_ids: Collection[str], since: datetime,
                    until: datetime | None = None) -> dict[str, dict[str, Any]]:
    """{key: object} of the objects written from `since` (to `until`, default now) that hold any of `event_ids`,
    oldest first. Lists only the day prefixes of that span and reads only objects modified in it."""
    until = until or datetime.now(since.tzinfo)
    found = []
    for prefix in day_prefixes(since.date(), until.date()):
        for obj in list_objects(s3, bucket, prefix):
            if obj["LastModified"] >= since:
                stored = read_object(s3, bucket, obj["Key"])
                if any(item["event"]["event_id"] in event_ids for item in stored["events"]):
                    found.append((stored["received_at"], obj["Key"], stored))
    return {key: stored for _, key, stored in sorted(found)}


def delete_objects(s3, bucket: str, keys: Sequence[str]) -> int:
    """Delete `keys`, DELETE_BATCH per request; returns how many. A key S3 could not delete is an error."""
    for start in range(0, len(keys), DELETE_BATCH):
        batch = [{"Key": key} for key in keys[start : start + DELETE_BATCH]]
        errors = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True}).get("Errors")
        if errors:
            raise RuntimeError(f"could not delete s3://{bucket}/{errors[0]['Key']}: {errors[0]['Code']} "
                               f"{errors[0]['Message']}")
    return len(keys)


def delete_prefix(s3, bucket: str, prefix: str) -> int:
    """Delete every object under `prefix` (a non-empty prefix: never the whole bucket); returns how many."""
    if not prefix:
        raise ValueError("delete_prefix needs a prefix; an empty one would empty the bucket")
    return delete_objects(s3, bucket, [obj["Key"] for obj in list_objects(s3, bucket, prefix)])
