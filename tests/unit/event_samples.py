"""Constants and loaders shared by the ingest unit tests (a module of its own: `conftest` is not importable reliably)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

EVENTS_DIR = Path(__file__).resolve().parents[1] / "events"
BUCKET = "clickstream-s3-ingest-unit"
RECEIVED_AT = datetime(2025, 3, 1, 10, 15, 30, 123456, tzinfo=timezone.utc)


def load_sample(name: str) -> dict[str, Any]:
    """A sample API Gateway HTTP API payload 2.0 event from tests/events/."""
    return json.loads((EVENTS_DIR / name).read_text())
