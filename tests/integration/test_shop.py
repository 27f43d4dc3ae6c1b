"""`clickstream up` seeds the shop's OLTP database shop_oltp as shop_app."""

import psycopg

from clickstream.shop import catalogue, oltp
from clickstream.local import stack


def test_up_seeds_the_catalogue_and_customers_owned_by_shop_app(local_stack):
    with psycopg.connect(stack.shop_dsn(local_stack)) as conn:
        per_category = dict(conn.execute("SELECT category, count(*) FROM products GROUP BY 1").fetchall())
        owners = dict(conn.execute("SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'").fetchall())
        customers = conn.execute("SELECT count(*), min(customer_id), max(customer_id) FROM customers").fetchone()
        laptop = conn.execute("SELECT price, discount_price, url_path FROM products WHERE product_id = 'LAP-001'").fetchone()
    assert set(per_category) == set(catalogue.CATEGORIES) and sum(per_category.values()) >= 60
    assert {"products", "customers", "carts", "cart_items", "orders", "order_items"} <= set(owners)
    assert set(owners.values()) == {"shop_app"}
    assert customers == (oltp.CUSTOMER_COUNT, "cust-00001", oltp.customer_id(oltp.CUSTOMER_COUNT))
    expected = next(p for p in catalogue.products() if p["id"] == "LAP-001")
    assert laptop == (expected["price"], expected["discount_price"], expected["url_path"])


def test_seeding_again_changes_nothing(local_stack):
    dsn = stack.shop_dsn(local_stack)
    with psycopg.connect(dsn) as conn:
        before = conn.execute("SELECT xmin::text, * FROM products ORDER BY product_id").fetchall()
        orders = conn.execute("SELECT count(*) FROM orders").fetchone()
    result = oltp.seed(dsn)
    assert (result.migrations, result.changed) == ([], 0)
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT xmin::text, * FROM products ORDER BY product_id").fetchall() == before
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == orders, "seeding writes no orders"
