"""The shop's catalogue (package data `data/catalogue.csv`): the OLTP seeding and the traffic simulator read it."""

from __future__ import annotations

import csv
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any

CATEGORIES = ("laptop", "monitor", "accessory")
FIELDS = ("id", "name", "category", "brand", "price", "discount_price", "url_path")


@cache
def _products() -> tuple[dict[str, Any], ...]:
    text = resources.files("clickstream").joinpath("data/catalogue.csv").read_text(encoding="utf-8")
    rows = []
    for row in csv.DictReader(text.splitlines()):
        if tuple(row) != FIELDS:
            raise ValueError(f"catalogue.csv must have the columns {', '.join(FIELDS)}")
        rows.append({**row, "price": Decimal(row["price"]),
                     "discount_price": Decimal(row["discount_price"]) if row["discount_price"] else None})
    return tuple(rows)


def products() -> list[dict[str, Any]]:
    """Every product as {id, name, category, brand, price, discount_price (None when none), url_path}, prices
    as Decimal; a new list of new dicts at each call (the parsed file is cached)."""
    return [dict(product) for product in _products()]


def unit_price(product: dict[str, Any]) -> Decimal:
    """What a customer pays for one: the discount price when there is one, else the price."""
    return product["discount_price"] if product["discount_price"] is not None else product["price"]
