"""Schemathesis checks shared by the in-process and the over-HTTP fuzz tests of the ingest API."""

import json
from datetime import datetime, timezone

from schemathesis.core.failures import AcceptedNegativeData
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from clickstream import contract


def invalid_events_are_rejected(ctx, response, case):
    """negative_data_rejection, except that a batch may be partly accepted: answered 200, it must then list
    the rejected events (the documented partial acceptance)."""
    try:
        return negative_data_rejection(ctx, response, case)
    except AcceptedNegativeData:
        if response.status_code == 200 and json.loads(response.content)["rejected"]:
            return None
        raise


def valid_events_are_accepted(ctx, response, case):
    """positive_data_acceptance, except for the events refused by the contract's rules that a JSON Schema cannot
    state (documented in the OpenAPI description): those `contract.text_errors` or `contract.storage_errors`
    name. Any other rejected event fails."""
    try:
        return positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        body = json.loads(response.content)
        if response.status_code != 400 or body.get("error") != "no_valid_events":
            raise
        posted = case.body.get("events", [case.body]) if isinstance(case.body, dict) else []
        if not all(_refused_beyond_the_schema(posted[rejection["index"]]) for rejection in body["rejected"]):
            raise
        return None


def _refused_beyond_the_schema(event) -> bool:
    if contract.text_errors(event):
        return True
    if contract.is_legacy_event(event):
        event = contract.map_legacy_event(event, datetime.now(timezone.utc)).event
    return bool(contract.storage_errors(event))
