"""AWS Lambda entry point of the ETL `SBW_Lamda_ETL` (EventBridge schedule, manual invokes, `clickstream etl`).

Thin on purpose: reads settings once from the environment the template sets, reads the warehouse
connection from Secrets Manager (never from an environment variable), builds the clients lazily and
calls the pure `clickstream.analytics.etl.run_etl`. The event is `{}` (or a scheduled event: the same),
`{"date": "YYYY-MM-DD"}` or `{"prefix": "events/YYYY/MM/DD/"}`; the summary dict is the result.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any, Callable

from clickstream.analytics import etl
from clickstream.analytics.secrets import dsn_from_secret
from clickstream.aws import LambdaContext, client
from clickstream.settings import Settings

logger = logging.getLogger(__name__)


@functools.cache
def settings() -> etl.EtlSettings:
    return etl.EtlSettings.from_env(os.environ)


@functools.cache
def s3_client() -> Any:
    return client("s3")


@functools.cache
def secrets_client() -> Any:
    return client("secretsmanager")


def handler(
    event: dict[str, Any], context: LambdaContext, progress: Callable[[etl.ChunkProgress], None] | None = None
) -> dict[str, Any]:
    """Lambda calls it with the event and the context; `clickstream etl` also passes a progress callback."""
    config = settings()
    request = etl.parse_etl_event(event, default_lookback_days=config.lookback_days)
    # Read at every invocation: a rotated password is picked up without a cold start.
    dw_dsn = dsn_from_secret(secrets_client(), config.dw_secret_id)
    options = etl.EtlOptions(
        raw_prefix=config.raw_prefix,
        remaining_ms=context.get_remaining_time_in_millis,
        progress=progress,
        workers=config.workers,
        s3_factory=functools.partial(client, "s3", Settings.from_env()),  # for worker processes, if any
    )
    summary = etl.run_etl(s3_client(), config.raw_bucket, dw_dsn, request, options)
    logger.info("request %s: %s", context.aws_request_id, summary)
    return summary
