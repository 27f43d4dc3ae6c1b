"""rollups.deltas: what a load's inserted rows add to each delta table (folded into the rollups by the refresh;
tests/integration/test_rollups_incremental.py checks the rollups against the raw answers)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from clickstream.analytics import rollups
from clickstream.analytics.transform import COLUMNS

HOUR = datetime(2026, 11, 24, 9, tzinfo=timezone.utc)
PARIS = timezone(timedelta(hours=1))


def row(minute: int, name: str, client: str = "c-1", *, bot: bool = False, device: str | None = "desktop",
        user: str | None = None, page: str | None = None, product: str | None = None, value: str | None = None,
        at: datetime | None = None) -> tuple:
    values = dict.fromkeys(COLUMNS)
    values.update(event_timestamp=at or HOUR + timedelta(minutes=minute), event_name=name, client_id=client,
                  is_bot=bot, device_category=device, user_id=user, page_path=page,
                  value=None if value is None else Decimal(value))
    if product:
        values.update(context_product_id=product, context_product_name=f"{product} name",
                      context_product_category="laptop", context_product_brand="Aero")
    return tuple(values.values())


def test_counts_and_sums_per_hour_and_dimensions():
    rows = [
        row(1, "page_view", page="/"), row(2, "page_view", page="/"), row(3, "page_view", page="/p/x", user="u-1"),
        row(4, "product_view", product="P1"), row(5, "add_to_cart", product="P1"),
        row(6, "purchase", product="P1", value="10.5"), row(7, "purchase", product="P1", value="0.25"),
        row(70, "page_view", page="/", bot=True, device="bot"),
    ]
    deltas = rollups.deltas(rows)
    assert sorted(deltas["rollup_delta_events"]) == sorted([
        (HOUR, "page_view", False, "desktop", False, 2, Decimal("0.00")),
        (HOUR, "page_view", False, "desktop", True, 1, Decimal("0.00")),
        (HOUR, "product_view", False, "desktop", False, 1, Decimal("0.00")),
        (HOUR, "add_to_cart", False, "desktop", False, 1, Decimal("0.00")),
        (HOUR, "purchase", False, "desktop", False, 2, Decimal("10.75")),
        (HOUR + timedelta(hours=1), "page_view", True, "bot", False, 1, Decimal("0.00")),
    ])
    assert sorted(deltas["rollup_delta_pages"]) == sorted([
        (HOUR, False, "/", 2), (HOUR, False, "/p/x", 1), (HOUR + timedelta(hours=1), True, "/", 1)])
    assert deltas["rollup_delta_products"] == [
        (HOUR, False, "P1", "desktop", False, "P1 name", "laptop", "Aero", 1, 1, 2, Decimal("10.75"))]


def test_each_client_gets_the_span_of_its_new_events_in_utc():
    late = datetime(2026, 11, 24, 11, 30, tzinfo=PARIS)  # 10:30 UTC
    rows = [row(30, "page_view", page="/"), row(5, "page_view", page="/"), row(0, "page_view", page="/", at=late),
            row(40, "page_view", "c-2", page="/"), row(10, "page_view", page="/", bot=True)]
    deltas = rollups.deltas(rows)
    assert sorted(deltas["rollup_delta_clients"]) == [
        ("c-1", False, HOUR + timedelta(minutes=5), late), ("c-1", True, HOUR + timedelta(minutes=10),
                                                            HOUR + timedelta(minutes=10)),
        ("c-2", False, HOUR + timedelta(minutes=40), HOUR + timedelta(minutes=40))]
    [(_, _, hi)] = [span[1:] for span in deltas["rollup_delta_clients"] if span[:2] == ("c-1", False)]
    assert hi.utcoffset() == timedelta(0)
    assert (HOUR + timedelta(hours=1), False, "/", 1) in deltas["rollup_delta_pages"], "the hour of 10:30 UTC"


def test_a_product_event_without_a_product_and_other_events_count_only_as_events():
    deltas = rollups.deltas([row(1, "product_view"), row(2, "search"), row(3, "purchase", value="5")])
    assert deltas["rollup_delta_products"] == [] and deltas["rollup_delta_pages"] == []
    assert sum(delta[5] for delta in deltas["rollup_delta_events"]) == 3
    assert ("purchase", Decimal("5.00")) in [(delta[1], delta[6]) for delta in deltas["rollup_delta_events"]]
