"""Raw objects for one UTC day, written with the ingest's own code and an injected clock.

`DayWriter` is for notebooks, their solutions and tests that need a day of the raw zone with known contents:
`write` stores one request's events through `ingest.ingest_batch` (same validation, envelope and key as
POST /clickstream, `received_at` a time of the day), `put_unchecked` stores events without validation (what an
older ingest or another writer might have left) and `put_bytes` any body at all (a broken upload). Each call
records, under its label, what it wrote (`written`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone
from typing import Any

from clickstream import contract
from clickstream.ingestion import ingest
from clickstream.ingestion.raw import day_prefix

DOCUMENTATION_IP_PREFIX = "198.51.100.0"  # TEST-NET-2 (RFC 5737), a /24 network address as the ingest stores it


@dataclass(frozen=True)
class Written:
    """One object written: its key, when it was received, the events sent and the event ids stored."""

    key: str
    received_at: datetime
    events: Sequence[Any]
    event_ids: tuple[str, ...]


@dataclass
class DayWriter:
    s3: Any
    settings: ingest.IngestSettings
    day: date
    written: dict[str, Written] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        """The day's partitions: `<prefix>YYYY/MM/DD/`."""
        return day_prefix(self.day, self.settings.prefix)

    def at(self, hour: int, minute: int = 0, second: int = 0) -> datetime:
        """A UTC time of the day."""
        return datetime.combine(self.day, time(hour, minute, second), tzinfo=timezone.utc)

    def label_of(self, key: str) -> str | None:
        return next((label for label, item in self.written.items() if item.key == key), None)

    def write(self, label: str, events: Sequence[Any], user_agent: str, received_at: datetime) -> Written:
        """Ingest one request's events received at `received_at`; an event the ingest refuses is a ValueError."""
        result = ingest.ingest_batch(events, self._context(label, user_agent), self.s3, self.settings,
                                     received_at=self._of_the_day(received_at))
        if result.rejected or result.object_key is None:
            raise ValueError(f"{label}: the ingest refused {[r.as_dict() for r in result.rejected] or 'an empty request'}")
        return self._record(label, result.object_key, received_at, events, result.event_ids)

    def put_unchecked(self, label: str, events: Sequence[dict], user_agent: str, received_at: datetime) -> Written:
        """Store v1 `events` in a raw object without validating them, as a looser writer would have."""
        object_id = uuid.uuid4()
        body = ingest.build_raw_object([contract.NormalizedEvent(event=event) for event in events],
                                       self._context(label, user_agent), self._of_the_day(received_at), object_id)
        key = self._put(received_at, object_id, contract.dumps(body).encode())
        return self._record(label, key, received_at, events, tuple(event["event_id"] for event in events))

    def put_bytes(self, label: str, body: bytes, received_at: datetime) -> Written:
        """Store `body` as it is, in the partition of `received_at` (e.g. a truncated upload)."""
        return self._record(label, self._put(received_at, uuid.uuid4(), body), received_at, (), ())

    def _context(self, label: str, user_agent: str) -> ingest.ServerContext:
        return ingest.ServerContext(request_id=f"day-writer-{label}", user_agent=user_agent,
                                    source_ip_prefix=DOCUMENTATION_IP_PREFIX)

    def _of_the_day(self, received_at: datetime) -> datetime:
        if received_at.astimezone(timezone.utc).date() != self.day:
            raise ValueError(f"{received_at.isoformat()} is not a time of the UTC day {self.day}")
        return received_at

    def _put(self, received_at: datetime, object_id: uuid.UUID, body: bytes) -> str:
        key = ingest.object_key(self._of_the_day(received_at), object_id, self.settings.prefix)
        self.s3.put_object(Bucket=self.settings.raw_bucket, Key=key, Body=body, ContentType="application/json",
                           ServerSideEncryption="AES256")
        return key

    def _record(self, label: str, key: str | None, received_at: datetime, events: Sequence[Any],
                event_ids: tuple[str, ...]) -> Written:
        if label in self.written:
            raise ValueError(f"{label!r} was written already")
        self.written[label] = Written(key, received_at, events, tuple(event_ids))
        return self.written[label]
