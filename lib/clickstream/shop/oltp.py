"""The shop's OLTP database shop_oltp: its schema (sql/oltp migrations) and seed data, applied as shop_app.

`seed(dsn)` creates the tables (owned by shop_app, which connects with `dsn`) and upserts the catalogue and
the customers the traffic simulator signs in as (cust-00001 ...). Running it again changes nothing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from clickstream.shop import catalogue
from clickstream.settings import project_root

CUSTOMER_COUNT = 1000
FIRST_NAMES = ("Alex", "Bao", "Camille", "Diego", "Emma", "Farah", "Giulia", "Hana", "Ivan", "Jonas", "Kim", "Linh",
               "Mateo", "Nora", "Omar", "Priya", "Quentin", "Rosa", "Sven", "Thao", "Uma", "Victor", "Wen", "Yusuf")
LAST_NAMES = ("Anders", "Bui", "Costa", "Dubois", "Evans", "Fischer", "Garcia", "Ho", "Ito", "Jensen", "Kowalski",
              "Le", "Martin", "Nguyen", "Okafor", "Patel", "Rossi", "Schmidt", "Tran", "Varga", "Weber", "Yilmaz")
COUNTRIES = ("US", "US", "US", "GB", "DE", "FR", "VN", "VN", "CA", "AU", "NL", "JP")


def migrations_dir() -> Path:
    return project_root() / "sql" / "oltp"


def customer_id(number: int) -> str:
    """`cust-00042` for 42 (1-based)."""
    return f"cust-{number:05d}"


@cache
def customers(count: int = CUSTOMER_COUNT) -> tuple[tuple[str, str, str, str], ...]:
    """(customer_id, email, full_name, country) of the seeded customers; the same at every call."""
    rng = random.Random("clickstream-customers")
    rows = []
    for number in range(1, count + 1):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        email = f"{first}.{last}.{number}@example.com".lower()
        rows.append((customer_id(number), email, f"{first} {last}", rng.choice(COUNTRIES)))
    return tuple(rows)


@dataclass(frozen=True)
class SeedResult:
    migrations: list[str]
    products: int
    customers: int
    changed: int  # rows inserted or updated now; 0 when the database already matched

    def describe(self) -> str:
        applied = f"applied OLTP migrations {', '.join(self.migrations)}; " if self.migrations else ""
        return (f"{applied}shop_oltp: {self.products} products, {self.customers} customers "
                f"({self.changed} rows inserted or updated)")


_UPSERT_PRODUCT = """
INSERT INTO products AS p (product_id, name, category, brand, price, discount_price, url_path)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (product_id) DO UPDATE SET
    name = EXCLUDED.name, category = EXCLUDED.category, brand = EXCLUDED.brand, price = EXCLUDED.price,
    discount_price = EXCLUDED.discount_price, url_path = EXCLUDED.url_path, updated_at = now()
WHERE (p.name, p.category, p.brand, p.price, p.discount_price, p.url_path)
    IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.category, EXCLUDED.brand, EXCLUDED.price, EXCLUDED.discount_price,
                      EXCLUDED.url_path)
"""
_UPSERT_CUSTOMER = """
INSERT INTO customers AS c (customer_id, email, full_name, country) VALUES (%s, %s, %s, %s)
ON CONFLICT (customer_id) DO UPDATE SET email = EXCLUDED.email, full_name = EXCLUDED.full_name,
    country = EXCLUDED.country
WHERE (c.email, c.full_name, c.country) IS DISTINCT FROM (EXCLUDED.email, EXCLUDED.full_name, EXCLUDED.country)
"""


def seed(dsn: str) -> SeedResult:
    """Apply the OLTP migrations and upsert the catalogue and the customers, connected as shop_app."""
    import psycopg  # here, not at the top: the traffic simulator imports this module for customer ids only

    from clickstream.analytics import warehouse  # its migrate() applies any directory of NNNN_*.sql files

    applied = warehouse.migrate(dsn, migrations_dir())
    rows = [tuple(product[name] for name in catalogue.FIELDS) for product in catalogue.products()]
    changed = 0
    with psycopg.connect(dsn, connect_timeout=10) as conn, conn.transaction():
        with conn.cursor() as cur:
            for statement, params in ((_UPSERT_PRODUCT, rows), (_UPSERT_CUSTOMER, customers())):
                for row in params:
                    cur.execute(statement, row)
                    changed += cur.rowcount
    return SeedResult(applied, len(rows), len(customers()), changed)
