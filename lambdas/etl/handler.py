"""AWS Lambda entry point of the ETL `SBW_Lamda_ETL` (EventBridge schedule, manual invokes, `clickstream etl`).

Thin on purpose: reads settings once from the environment the template sets, reads the warehouse
connection from Secrets Manager (never from an environment variable), builds the clients lazily and
calls the pure `clickstream.analytics.etl.run_etl`. The event is `{}` (or a scheduled event: the same),
`{"date": "YYYY-MM-DD"}` or `{"prefix": "events/YYYY/MM/DD/"}`; the summary dict is the result.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from clickstream.analytics import etl
from clickstream.aws import client
from clickstream.analytics.secrets import dsn_from_secret
from clickstream.settings import Settings

logger = logging.getLogger(__name__)
# The event keys that choose a lookback (ours and the original workshop's); without one the template's
# LOOKBACK_DAYS applies.
LOOKBACK_KEYS = tuple(name for pair in etl.EVENT_KEYS if pair[0] == "lookback_days" for name in pair)


class LambdaContext(Protocol):
    aws_request_id: str

    def get_remaining_time_in_millis(self) -> int: ...


@dataclass(frozen=True)
class EtlSettings:
    """RAW_BUCKET, RAW_PREFIX, DW_SECRET_ID, LOOKBACK_DAYS and ETL_WORKERS, as analytics.yaml sets them."""

    raw_bucket: str
    raw_prefix: str
    dw_secret_id: str
    lookback_days: float
    workers: int = 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "EtlSettings":
        missing = [name for name in ("RAW_BUCKET", "DW_SECRET_ID") if not environ.get(name, "").strip()]
        if missing:
            raise ValueError(f"{', '.join(missing)} not set: the analytics template sets them on the function")
        prefix = environ.get("RAW_PREFIX", "events/")
        try:
            lookback = float(environ.get("LOOKBACK_DAYS", etl.DEFAULT_LOOKBACK_DAYS))
        except ValueError:
            raise ValueError(f"LOOKBACK_DAYS must be a number, not {environ['LOOKBACK_DAYS']!r}") from None
        return cls(
            raw_bucket=environ["RAW_BUCKET"].strip(),
            raw_prefix=prefix if prefix.endswith("/") else prefix + "/",
            dw_secret_id=environ["DW_SECRET_ID"].strip(),
            lookback_days=lookback,
            workers=etl.parse_workers(environ.get("ETL_WORKERS", "1")),
        )


@functools.cache
def settings() -> EtlSettings:
    return EtlSettings.from_env(os.environ)


@functools.cache
def s3_client() -> Any:
    return client("s3")


@functools.cache
def secrets_client() -> Any:
    return client("secretsmanager")


def request_of(event: Any, defaults: EtlSettings) -> etl.EtlRequest:
    """The run the event asks for; a default run (no date, prefix or lookback) looks back LOOKBACK_DAYS."""
    request = etl.parse_etl_event(event)
    explicit = isinstance(event, Mapping) and any(event.get(name) is not None for name in LOOKBACK_KEYS)
    if request.date is None and request.prefix is None and not explicit:
        request = dataclasses.replace(request, lookback_days=defaults.lookback_days)
    return request


def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    config = settings()
    request = request_of(event, config)
    # Read at every invocation: a rotated password is picked up without a cold start.
    dw_dsn = dsn_from_secret(secrets_client(), config.dw_secret_id)
    # `clickstream etl` attaches a progress callback to its local context; Lambda's context has none.
    progress: Callable[[etl.ChunkProgress], None] | None = getattr(context, "progress", None)
    summary = etl.run_etl(
        s3_client(),
        config.raw_bucket,
        dw_dsn,
        **request.as_kwargs(),
        raw_prefix=config.raw_prefix,
        remaining_ms=context.get_remaining_time_in_millis,
        progress=progress,
        workers=config.workers,
        s3_factory=functools.partial(client, "s3", Settings.from_env()),  # for worker processes, if any
    )
    logger.info("request %s: %s", context.aws_request_id, summary)
    return summary
