"""The shop's catalogue (package data) and the seeded customers."""

import re
from decimal import Decimal

from clickstream.shop import catalogue, oltp


def test_catalogue_has_realistic_products_in_three_categories():
    products = catalogue.products()
    assert len(products) >= 60
    assert {p["category"] for p in products} == set(catalogue.CATEGORIES)
    assert min(sum(p["category"] == c for p in products) for c in catalogue.CATEGORIES) >= 15
    assert len({p["id"] for p in products}) == len({p["url_path"] for p in products}) == len(products)
    for product in products:
        assert re.fullmatch(r"(LAP|MON|ACC)-\d{3}", product["id"]) and product["id"][:3] == product["category"][:3].upper()
        assert re.fullmatch(r"/products/[a-z0-9-]+", product["url_path"])
        assert isinstance(product["price"], Decimal) and product["price"] == product["price"].quantize(Decimal("0.01"))
        assert product["discount_price"] is None or Decimal(0) < product["discount_price"] < product["price"]
        assert catalogue.unit_price(product) == (product["discount_price"] or product["price"])
    assert sum(p["discount_price"] is not None for p in products) >= 10
    assert len({p["brand"] for p in products}) >= 10


def test_products_returns_copies():
    catalogue.products()[0]["price"] = Decimal("0.01")
    assert catalogue.products()[0]["price"] != Decimal("0.01")


def test_customers_are_deterministic_with_unique_emails():
    customers = oltp.customers()
    assert len(customers) == oltp.CUSTOMER_COUNT and customers[0][0] == "cust-00001"
    assert len({c[1] for c in customers}) == len(customers)
    assert oltp.customers.__wrapped__() == customers
