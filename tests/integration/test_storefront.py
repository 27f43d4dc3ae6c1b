"""The storefront (clickstream.shop.storefront) on the test stack's seeded shop_oltp: pages, cart, checkout, and
`clickstream up` running it as the only process with the OLTP credentials."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg
import pytest
from starlette.exceptions import HTTPException
from starlette.testclient import TestClient

from clickstream.local import stack
from clickstream.local.stack import free_port, stop_process, wait_until
from clickstream.shop import storefront
from clickstream.settings import Settings
from clickstream.shop.storefront import create_app, like_pattern, money, parse_quantity

WRITTEN_TABLES = ("carts", "cart_items", "orders", "order_items")


@pytest.fixture(scope="module")
def shop_dsn(local_stack) -> str:
    """shop_app's DSN; the carts and orders the tests write are deleted at the end (test_shop expects none)."""
    dsn = stack.shop_dsn(local_stack)
    with psycopg.connect(dsn) as conn:
        before = {row[0] for row in conn.execute("SELECT cart_id FROM carts")}
    yield dsn
    with psycopg.connect(dsn) as conn, conn.transaction():
        new = [row[0] for row in conn.execute("SELECT cart_id FROM carts") if row[0] not in before]
        conn.execute("DELETE FROM orders WHERE cart_id = ANY(%s)", (new,))
        conn.execute("DELETE FROM carts WHERE cart_id = ANY(%s)", (new,))


@pytest.fixture()
def client(shop_dsn):
    with TestClient(create_app(shop_dsn, secret_key="storefront-test-key")) as client:
        yield client


def query(dsn: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchall()


def row_counts(dsn: str) -> dict[str, int]:
    return {table: query(dsn, f"SELECT count(*) FROM {table}")[0][0] for table in WRITTEN_TABLES}


def product_ids(html: str) -> list[str]:
    return re.findall(r'<li class="card" data-product-id="([A-Z]{3}-\d{3})"', html)


def cart_count(html: str) -> int:
    return int(re.search(r'data-cart-count="(\d+)"', html).group(1))


def add(client: TestClient, product_id: str, quantity) -> httpx.Response:
    return client.post("/cart/items", data={"product_id": product_id, "quantity": str(quantity)})


def test_home_features_the_biggest_discounts_with_their_prices(client, shop_dsn):
    featured = query(shop_dsn, "SELECT product_id, name, price, discount_price FROM products "
                               "WHERE discount_price IS NOT NULL ORDER BY (price - discount_price) / price DESC, name "
                               "LIMIT %s", (storefront.FEATURED_COUNT,))
    page = client.get("/")
    assert page.status_code == 200
    assert product_ids(page.text) == [row[0] for row in featured]
    for _, name, price, discount_price in featured:
        assert name in html.unescape(page.text) and money(discount_price) in page.text and money(price) in page.text
    for title in ("Laptops", "Monitors", "Accessories"):
        assert f">{title}</a>" in page.text
    assert '<a class="cart-link" href="/cart">Cart</a>' in page.text and cart_count(page.text) == 0
    assert '<script src="/static/clickstream.js" defer></script>' in page.text


@pytest.mark.parametrize("slug, category", [("laptops", "laptop"), ("monitors", "monitor"),
                                            ("accessories", "accessory")])
def test_a_category_page_lists_that_category_at_oltp_prices(client, shop_dsn, slug, category):
    rows = query(shop_dsn, "SELECT product_id, name, coalesce(discount_price, price) FROM products "
                           "WHERE category = %s ORDER BY name", (category,))
    page = client.get(f"/category/{slug}")
    assert page.status_code == 200
    assert product_ids(page.text) == [row[0] for row in rows]
    prices = dict(re.findall(r'data-product-id="([A-Z]{3}-\d{3})".*?data-price="([\d.]+)"', page.text, re.S))
    assert {pid: Decimal(price) for pid, price in prices.items()} == {pid: price for pid, _, price in rows}
    assert f'trackOnLoad("product_list_view", "{category}")' in page.text
    assert client.get("/category/phones").status_code == 404


def test_a_product_page_shows_the_product_and_tracks_its_view_only_if_the_tracker_loaded(client, shop_dsn):
    name, price, discount_price, url_path = query(
        shop_dsn, "SELECT name, price, discount_price, url_path FROM products WHERE product_id = 'LAP-001'")[0]
    page = client.get(url_path)
    assert page.status_code == 200
    assert f"<h1>{name}</h1>" in page.text
    assert money(discount_price) in page.text and money(price) in page.text
    assert '<button type="submit" class="primary">Add to cart</button>' in page.text
    assert 'trackOnLoad("product_view", {"brand": ' in page.text and f'"price": "{price}"' in page.text
    assert "if (window.clickstream &&" in page.text
    missing = client.get("/products/no-such-thing")
    assert missing.status_code == 404 and "We do not sell that product." in missing.text


def test_search_finds_by_name_and_treats_wildcards_literally(client, shop_dsn):
    expected = [row[0] for row in query(shop_dsn, "SELECT product_id FROM products WHERE name ILIKE %s "
                                                  "OR brand ILIKE %s ORDER BY name", ("%zenbook%",) * 2)]
    assert expected and product_ids(client.get("/search", params={"q": "ZenBook"}).text) == expected
    assert product_ids(client.get("/search", params={"q": "%"}).text) == []
    assert "Nothing matches" in client.get("/search", params={"q": "no such gadget"}).text
    hostile = client.get("/search", params={"q": "</script><script>alert(1)</script>"}).text
    assert "<script>alert(1)" not in hostile and 'trackOnLoad("search", "\\u003c/script\\u003e' in hostile


def test_adding_to_the_cart_updates_the_count_and_the_cart(client, shop_dsn):
    page = add(client, "MON-001", 2)
    assert page.status_code == 200 and page.url.path == "/cart"
    assert cart_count(page.text) == 2
    add(client, "MON-001", 1)
    page = client.get("/")
    assert cart_count(page.text) == 3
    price = query(shop_dsn, "SELECT coalesce(discount_price, price) FROM products WHERE product_id = 'MON-001'")[0][0]
    assert f'data-total="{price * 3}"' in client.get("/cart").text
    assert cart_count(client.post("/cart/items/MON-001/remove").text) == 0


def test_checkout_writes_one_order_once(client, shop_dsn):
    add(client, "LAP-001", 1)
    add(client, "ACC-001", 3)
    checkout = client.get("/checkout")
    assert '<button type="submit" class="primary">Place order</button>' in checkout.text
    cart_id = re.search(r'name="cart_id" value="([^"]+)"', checkout.text).group(1)
    prices = dict(query(shop_dsn, "SELECT product_id, coalesce(discount_price, price) FROM products "
                                  "WHERE product_id IN ('LAP-001', 'ACC-001')"))
    total = prices["LAP-001"] + 3 * prices["ACC-001"]
    assert f'value: "{total}"' in checkout.text  # begin_checkout's value, a decimal string

    placed = client.post("/checkout", data={"cart_id": cart_id})
    order_id = placed.url.path.removeprefix("/orders/")
    assert placed.status_code == 200 and order_id in placed.text and cart_count(placed.text) == 0
    assert f'track("purchase", "{order_id}", "{total}", "USD")' in placed.text
    assert query(shop_dsn, "SELECT order_id, total, currency FROM orders WHERE cart_id = %s", (cart_id,)) == [
        (order_id, total, "USD")]
    assert sorted(query(shop_dsn, "SELECT product_id, quantity, unit_price FROM order_items WHERE order_id = %s",
                        (order_id,))) == [("ACC-001", 3, prices["ACC-001"]), ("LAP-001", 1, prices["LAP-001"])]
    assert query(shop_dsn, "SELECT status FROM carts WHERE cart_id = %s", (cart_id,)) == [("ordered",)]

    before = row_counts(shop_dsn)
    again = client.post("/checkout", data={"cart_id": cart_id})
    assert again.url.path == f"/orders/{order_id}"
    assert row_counts(shop_dsn) == before
    assert client.get("/checkout").url.path == "/cart"  # nothing left to check out


def test_an_order_is_shown_only_to_its_visitor(client, shop_dsn):
    add(client, "ACC-002", 1)
    cart_id = re.search(r'name="cart_id" value="([^"]+)"', client.get("/checkout").text).group(1)
    order_path = client.post("/checkout", data={"cart_id": cart_id}).url.path
    client.cookies.clear()
    assert client.get(order_path).status_code == 404


@pytest.mark.parametrize("product_id, quantity, status, message", [
    ("ZZZ-999", 1, 404, "We do not sell that product."),
    ("'; DROP TABLE orders; --", 1, 404, "We do not sell that product."),
    ("LAP-001", 0, 400, "from 1 to 100"),
    ("LAP-001", 101, 400, "from 1 to 100"),
    ("LAP-001", 10**30, 400, "from 1 to 100"),
    ("LAP-001", "two", 400, "from 1 to 100"),
])
def test_bad_cart_input_gets_a_clear_page_and_writes_nothing(client, shop_dsn, product_id, quantity, status, message):
    before = row_counts(shop_dsn)
    page = add(client, product_id, quantity)
    assert page.status_code == status and message in page.text and 'class="error"' in page.text
    assert row_counts(shop_dsn) == before


def test_more_than_a_hundred_of_a_product_is_refused(client, shop_dsn):
    add(client, "ACC-003", 60)
    page = add(client, "ACC-003", 41)
    assert page.status_code == 400 and "already has 60" in page.text
    assert cart_count(client.get("/cart").text) == 60


def test_a_tampered_cookie_gets_400_writes_nothing_and_is_removed(client, shop_dsn):
    add(client, "ACC-004", 1)
    signed = client.cookies.get(storefront.VISITOR_COOKIE)
    client.cookies.set(storefront.VISITOR_COOKIE, signed[:-2] + ("AA" if not signed.endswith("AA") else "BB"))
    before = row_counts(shop_dsn)
    page = add(client, "ACC-004", 1)
    assert page.status_code == 400 and "cookie is not valid" in page.text
    assert page.headers["set-cookie"].startswith(f"{storefront.VISITOR_COOKIE}=; Max-Age=0")
    assert row_counts(shop_dsn) == before


def test_another_visitors_cart_cannot_be_checked_out(client, shop_dsn):
    add(client, "ACC-005", 1)
    cart_id = re.search(r'name="cart_id" value="([^"]+)"', client.get("/checkout").text).group(1)
    client.cookies.clear()
    add(client, "ACC-006", 1)  # a cookie of another visitor
    before = row_counts(shop_dsn)
    page = client.post("/checkout", data={"cart_id": cart_id})
    assert page.status_code == 400 and "no such cart" in page.text
    assert row_counts(shop_dsn) == before


def test_the_module_runs_the_app_under_uvicorn(shop_dsn, tmp_path):
    help_text = subprocess.run([sys.executable, "-m", "clickstream.shop.storefront", "--help"],
                               capture_output=True, text=True, timeout=60)
    assert help_text.returncode == 0 and "--port" in help_text.stdout and "CLICKSTREAM_OLTP_DSN" in help_text.stdout
    port, log_file = free_port(), tmp_path / "storefront.log"
    with open(log_file, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "clickstream.shop.storefront", "--port", str(port),
                                    "--ingest-url", "http://127.0.0.1:9/clickstream"],
                                   env={**os.environ, "CLICKSTREAM_OLTP_DSN": shop_dsn}, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: stack.http_ok(url + "/"), "the storefront", log_file, process)
        home = httpx.get(url + "/")
        css = httpx.get(url + "/static/storefront.css")
        assert home.status_code == 200 and "Featured deals" in home.text
        assert 'window.clickstreamConfig = {endpoint: "http://127.0.0.1:9/clickstream", onTokenExpired: refreshIdToken}' in home.text
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    finally:
        stop_process(process.pid, timeout=10)
    assert process.poll() is not None


def test_like_pattern_quantity_and_money_helpers():
    assert like_pattern("50%_off\\") == "%50\\%\\_off\\\\%"
    assert parse_quantity(" 7 ") == 7 and parse_quantity("100") == 100
    for bad in ("0", "101", "-1", "1.5", "", None):
        with pytest.raises(HTTPException, match="from 1 to 100"):
            parse_quantity(bad)
    assert money(Decimal("1199.5")) == "$1,199.50"


# --- `clickstream up` runs it --------------------------------------------------------------------
def process_environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


def test_up_runs_the_storefront_and_status_shows_its_url(local_stack, shop_dsn):
    result = subprocess.run([sys.executable, "-m", "clickstream.cli", "status", "--json"], capture_output=True,
                            text=True, timeout=120)
    status = json.loads(result.stdout)
    assert result.returncode == 0 and status["services"]["storefront"]["healthy"] is True
    assert status["storefront_url"] == f"http://127.0.0.1:{local_stack.storefront_port}"
    with httpx.Client(base_url=status["storefront_url"], follow_redirects=True) as browser:
        home = browser.get("/")
        assert home.status_code == 200
        assert f'window.clickstreamConfig = {{endpoint: "{status["ingest_url"]}", onTokenExpired: refreshIdToken}}' in home.text
        browser.post("/cart/items", data={"product_id": "MON-002", "quantity": "1"})
        cart_id = re.search(r'name="cart_id" value="([^"]+)"', browser.get("/checkout").text).group(1)
        order_id = browser.post("/checkout", data={"cart_id": cart_id}).url.path.removeprefix("/orders/")
    assert query(shop_dsn, "SELECT count(*) FROM orders WHERE order_id = %s AND cart_id = %s",
                 (order_id, cart_id)) == [(1,)]


def test_only_the_storefront_process_has_the_oltp_credentials(local_stack):
    password = json.loads((local_stack.home / "credentials" / "oltp.json").read_text())["shop_app"]
    services = stack.read_state(local_stack)["services"]
    storefront_env = process_environ(services["storefront"]["pid"])
    assert password in storefront_env["CLICKSTREAM_OLTP_DSN"]
    for name in ("aws", "api"):
        assert password not in "\n".join(process_environ(services[name]["pid"]).values()), name
    assert password not in " ".join(services["storefront"]["cmdline"])


def test_down_stops_the_storefront_by_pid():
    with stack.private_stack() as settings:
        svc = stack.read_state(settings)["services"]["storefront"]
        assert stack.owns(settings, "storefront", svc) and stack.http_ok(settings.storefront_url + "/")
        assert "storefront" in stack.down(settings)
        assert not stack.owns(settings, "storefront", svc) and not stack.http_ok(settings.storefront_url + "/")


def test_a_huge_form_is_refused_and_writes_nothing(client, shop_dsn):
    before = row_counts(shop_dsn)
    response = client.post("/cart/items", content=b"product_id=" + b"x" * 1_000_000,
                           headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 413 and "too large" in response.text
    assert row_counts(shop_dsn) == before
