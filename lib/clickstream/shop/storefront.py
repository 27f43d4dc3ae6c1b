"""The shop's storefront: a server-rendered Starlette app selling the shop_oltp catalogue.

    CLICKSTREAM_OLTP_DSN=postgresql://shop_app:...@127.0.0.1:15433/shop_oltp \\
        python -m clickstream.shop.storefront --port 3200

Pages: home, category pages, product pages, search, cart, checkout, the order confirmation, sign in and sign
out. A visitor is a random id in a signed cookie; their cart is their one open row in `carts`. Signing in
runs Cognito's InitiateAuth on the server; the shopper's email and ID token live in a second signed cookie,
the refresh token in the server-side session it names (this process's memory). Each page hands the ID token
to the tracker, whose batches then go to the API's authorized route; when the API refuses it (401), the
tracker asks POST /account/token for a fresh one (REFRESH_TOKEN_AUTH with the session's refresh token), and
a page whose token expired is refreshed the same way. Placing an order writes orders and
order_items and marks the cart ordered in one transaction, so a second submit finds the order instead of
writing another. It is the only component with the OLTP credentials. Pages load the tracker
(/static/clickstream.js) and call its helpers only when it loaded: shopping never depends on analytics.
"""

from __future__ import annotations

import argparse
import os
from collections import OrderedDict
import re
import secrets
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple, Protocol
from urllib.parse import parse_qsl

import jwt

import psycopg
from itsdangerous import BadSignature, URLSafeSerializer
from psycopg.rows import dict_row
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from clickstream.settings import Settings, project_root

CURRENCY = "USD"
MAX_QUANTITY = 100  # cart_items and order_items allow 1..100 of a product
VISITOR_COOKIE = "cs_visitor"
VISITOR_MAX_AGE = 90 * 24 * 3600
SHOPPER_COOKIE = "cs_shopper"
MAX_SESSIONS = 10_000  # signed-in sessions kept (their refresh tokens); the oldest go first
SESSION_MAX_AGE = 30 * 24 * 3600  # the app client's RefreshTokenValidity (frontend.yaml): 30 days
FEATURED_COUNT = 8
MAX_SEARCH_LENGTH = 100
PRODUCT_ID = re.compile(r"^[A-Z]{3}-[0-9]{3}$")
CATEGORY_PAGES = {  # url slug: (products.category, page title)
    "laptops": ("laptop", "Laptops"),
    "monitors": ("monitor", "Monitors"),
    "accessories": ("accessory", "Accessories"),
}
_PRODUCT_COLUMNS = "product_id, name, category, brand, price, discount_price, url_path"


class SignInError(Exception):
    """Signing in failed; the message is for the shopper."""


class Tokens(NamedTuple):
    id_token: str
    refresh_token: str | None


class Authenticate(Protocol):
    """How shoppers sign in; both raise SignInError."""

    def sign_in(self, email: str, password: str) -> Tokens: ...

    def refresh(self, refresh_token: str) -> str: ...  # a fresh ID token


def frontend_dir() -> Path:
    return project_root() / "frontend"


def unit_price(product: dict[str, Any]) -> Decimal:
    """What one costs: the discount price when there is one."""
    return product["discount_price"] if product["discount_price"] is not None else product["price"]


def money(value: Decimal) -> str:
    """`$1,199.00`."""
    return f"${value:,.2f}"


def tracked_product(product: dict[str, Any]) -> dict[str, Any]:
    """The event contract's `product` object, money as decimal strings."""
    return {"id": product["product_id"], "name": product["name"], "category": product["category"],
            "brand": product["brand"], "price": str(product["price"]),
            "discount_price": None if product["discount_price"] is None else str(product["discount_price"]),
            "url_path": product["url_path"]}


def like_pattern(text: str) -> str:
    """`%text%` for ILIKE, with LIKE's wildcards in `text` matched literally."""
    return "%" + re.sub(r"([\\%_])", r"\\\1", text) + "%"


def parse_quantity(raw: str | None) -> int:
    """A quantity from a form: 1 to MAX_QUANTITY, else HTTP 400."""
    if raw is None or not raw.strip().isdigit() or not 1 <= int(raw) <= MAX_QUANTITY:
        raise HTTPException(400, f"The quantity must be a whole number from 1 to {MAX_QUANTITY}.")
    return int(raw)


MAX_FORM_BYTES = 16_384  # the shop's forms hold a few short fields


async def form_fields(request: Request) -> dict[str, str]:
    """The fields of a URL-encoded form (the last value of a repeated field); a body over MAX_FORM_BYTES is
    refused as it arrives, never read whole."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, "The form is too large.")
    try:
        return dict(parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=20))
    except (UnicodeDecodeError, ValueError) as error:
        raise HTTPException(400, "The form could not be read.") from error


class Storefront:
    """The pages and the shop_oltp queries behind them (one connection per request)."""

    def __init__(self, oltp_dsn: str, secret_key: str, templates: Path, currency: str = CURRENCY,
                 ingest_url: str | None = None, authenticate: Authenticate | None = None) -> None:
        self.dsn = oltp_dsn
        self.currency = currency
        self.authenticate = authenticate
        self.sessions: OrderedDict[str, str] = OrderedDict()  # session id -> refresh token
        self.cookies = URLSafeSerializer(secret_key, salt="clickstream-storefront-visitor")
        self.shopper_cookies = URLSafeSerializer(secret_key, salt="clickstream-storefront-shopper")
        self.templates = Jinja2Templates(directory=str(templates))
        self.templates.env.filters["money"] = money
        self.templates.env.globals.update(categories=[(slug, title) for slug, (_, title) in CATEGORY_PAGES.items()],
                                          currency=currency, ingest_url=ingest_url)

    def connect(self):
        return psycopg.AsyncConnection.connect(self.dsn, row_factory=dict_row, connect_timeout=10)

    # --- visitors ------------------------------------------------------------------------------
    def visitor(self, request: Request) -> str | None:
        """The visitor id from the signed cookie; None without one; HTTP 400 if it was tampered with."""
        raw = request.cookies.get(VISITOR_COOKIE)
        if raw is None:
            return None
        try:
            value = self.cookies.loads(raw)
        except BadSignature as error:
            raise HTTPException(400, "Your shop cookie is not valid, so it was removed. Please try again.",
                                headers={"set-cookie": f"{VISITOR_COOKIE}=; Max-Age=0; Path=/"}) from error
        if not isinstance(value, str):
            raise HTTPException(400, "Your shop cookie is not valid.")
        return value

    def remember(self, response: Response, visitor: str) -> Response:
        response.set_cookie(VISITOR_COOKIE, self.cookies.dumps(visitor), max_age=VISITOR_MAX_AGE, httponly=True,
                            samesite="lax")
        return response

    # --- shoppers ------------------------------------------------------------------------------
    def shopper_cookie(self, request: Request) -> dict | None:
        """{"email", "id_token", "exp", "session", "event"} from the shopper cookie; None without a valid one."""
        try:
            shopper = self.shopper_cookies.loads(request.cookies.get(SHOPPER_COOKIE, ""))
        except BadSignature:
            return None
        return shopper if isinstance(shopper, dict) else None

    async def shopper(self, request: Request) -> tuple[dict | None, bool]:
        """(the signed-in shopper, whether the ID token was refreshed): a token about to expire is refreshed
        with the session's refresh token; None when signed out or when that fails (the tracker must never
        send a token the API refuses)."""
        shopper = self.shopper_cookie(request)
        if shopper is None or shopper.get("exp", 0) > time.time() + 60:
            return shopper, False
        return await self.refreshed(shopper), True

    async def refreshed(self, shopper: dict) -> dict | None:
        """The shopper with a fresh ID token from Cognito (REFRESH_TOKEN_AUTH); None without a session or when
        Cognito refuses (the session is then forgotten)."""
        refresh_token = self.sessions.get(shopper.get("session", ""))
        if not refresh_token or not self.authenticate:
            return None
        try:
            token = await run_in_threadpool(self.authenticate.refresh, refresh_token)
        except SignInError:
            self.sessions.pop(shopper["session"], None)
            return None
        return {**shopper, "id_token": token, "exp": token_expiry(token)}

    def keep(self, response: Response, shopper: dict) -> Response:
        """The shopper cookie: as long as the session can refresh the ID token, else until the token expires."""
        max_age = SESSION_MAX_AGE if shopper.get("session") else max(0, shopper["exp"] - int(time.time()))
        response.set_cookie(SHOPPER_COOKIE, self.shopper_cookies.dumps(shopper), max_age=max_age, httponly=True,
                            samesite="lax")
        return response

    def remember_session(self, refresh_token: str | None) -> str | None:
        if not refresh_token:
            return None
        session = secrets.token_urlsafe(24)
        self.sessions[session] = refresh_token
        while len(self.sessions) > MAX_SESSIONS:
            self.sessions.popitem(last=False)
        return session

    def sign_in_form(self, request: Request, status_code: int = 200, **context) -> Response:
        return self.templates.TemplateResponse(
            request, "sign_in.html", {"cart_count": None, "shopper": None, "available": bool(self.authenticate),
                                      "page_type": "account", **context}, status_code=status_code)

    async def sign_in_page(self, request: Request) -> Response:
        return self.sign_in_form(request)

    async def sign_in(self, request: Request) -> Response:
        """Cognito's InitiateAuth with the form's email and password; on success the shopper cookie, and the
        next page tracks `login`."""
        fields = await form_fields(request)
        email = fields.get("email", "").strip()
        if not self.authenticate:
            raise HTTPException(400, "Signing in is not available in this shop.")
        try:
            tokens = await run_in_threadpool(self.authenticate.sign_in, email, fields.get("password", ""))
        except SignInError as error:
            return self.sign_in_form(request, 401, error=str(error), email=email)
        return self.keep(RedirectResponse("/", status_code=303), {
            "email": email, "id_token": tokens.id_token, "exp": token_expiry(tokens.id_token),
            "session": self.remember_session(tokens.refresh_token), "event": "login"})

    async def fresh_token(self, request: Request) -> Response:
        """POST /account/token, the tracker's onTokenExpired: {"id_token": ...} refreshed with the session's
        refresh token, or 401 when signed out."""
        shopper = self.shopper_cookie(request)
        shopper = shopper and await self.refreshed(shopper)
        if shopper is None:
            return JSONResponse({"message": "Signed out"}, status_code=401, headers={"cache-control": "no-store"})
        return self.keep(JSONResponse({"id_token": shopper["id_token"]}, headers={"cache-control": "no-store"}),
                         shopper)

    async def sign_out(self, request: Request) -> Response:
        shopper = self.shopper_cookie(request)
        if shopper:
            self.sessions.pop(shopper.get("session") or "", None)
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(SHOPPER_COOKIE)
        return response

    # --- rendering -----------------------------------------------------------------------------
    async def render(self, request: Request, name: str, status_code: int = 200, **context) -> Response:
        """A page with the header's cart count (0 for a visitor without an open cart) and the signed-in shopper
        (whose `login` event, right after signing in, is tracked once)."""
        visitor = self.visitor(request)
        count = 0
        if visitor:
            async with await self.connect() as conn:
                count = await self.cart_count(conn, visitor)
        shopper, refreshed = await self.shopper(request)
        response = self.templates.TemplateResponse(request, name, {**context, "cart_count": count,
                                                                   "shopper": shopper}, status_code=status_code)
        if shopper and (shopper.pop("event", None) or refreshed):
            self.keep(response, shopper)
        return response

    async def error_page(self, request: Request, error: HTTPException) -> Response:
        titles = {400: "That did not work", 404: "Not found", 409: "Already done"}
        response = self.templates.TemplateResponse(
            request, "error.html", {"title": titles.get(error.status_code, "Something went wrong"),
                                    "detail": error.detail, "cart_count": None, "shopper": None},
            status_code=error.status_code)
        for name, value in (error.headers or {}).items():
            response.headers.append(name, value)
        return response

    # --- queries -------------------------------------------------------------------------------
    @staticmethod
    async def products(conn, where: str = "TRUE", params: tuple = (), order: str = "name",
                       limit: int | None = None) -> list[dict]:
        sql = f"SELECT {_PRODUCT_COLUMNS} FROM products WHERE {where} ORDER BY {order}"
        if limit:
            sql += f" LIMIT {int(limit)}"
        cur = await conn.execute(sql, params)
        return await cur.fetchall()

    @staticmethod
    async def open_cart(conn, visitor: str) -> str | None:
        cur = await conn.execute("SELECT cart_id FROM carts WHERE client_id = %s AND status = 'open' "
                                 "ORDER BY created_at LIMIT 1", (visitor,))
        row = await cur.fetchone()
        return row["cart_id"] if row else None

    @staticmethod
    async def cart_count(conn, visitor: str) -> int:
        cur = await conn.execute(
            "SELECT coalesce(sum(i.quantity), 0) AS n FROM carts c JOIN cart_items i USING (cart_id) "
            "WHERE c.client_id = %s AND c.status = 'open'", (visitor,))
        return int((await cur.fetchone())["n"])

    @staticmethod
    async def cart_lines(conn, cart_id: str) -> tuple[list[dict], Decimal]:
        """The cart's products at today's catalogue prices, and their total."""
        cur = await conn.execute(
            f"SELECT i.quantity, {', '.join('p.' + c for c in _PRODUCT_COLUMNS.split(', '))} "
            "FROM cart_items i JOIN products p USING (product_id) WHERE i.cart_id = %s ORDER BY i.added_at, "
            "p.product_id", (cart_id,))
        lines = await cur.fetchall()
        for line in lines:
            line["unit_price"] = unit_price(line)
            line["line_total"] = line["unit_price"] * line["quantity"]
            line["tracked"] = tracked_product(line)
        return lines, sum((line["line_total"] for line in lines), Decimal("0.00"))

    # --- pages ---------------------------------------------------------------------------------
    async def home(self, request: Request) -> Response:
        async with await self.connect() as conn:
            featured = await self.products(conn, "discount_price IS NOT NULL",
                                           order="(price - discount_price) / price DESC, name",
                                           limit=FEATURED_COUNT)
        return await self.render(request, "home.html", products=featured, page_type="home")

    async def category(self, request: Request) -> Response:
        slug = request.path_params["slug"]
        if slug not in CATEGORY_PAGES:
            raise HTTPException(404, "There is no such category.")
        category, title = CATEGORY_PAGES[slug]
        async with await self.connect() as conn:
            products = await self.products(conn, "category = %s", (category,))
        return await self.render(request, "category.html", title=title, category=category, products=products,
                                 page_type="category")

    async def product(self, request: Request) -> Response:
        async with await self.connect() as conn:
            found = await self.products(conn, "url_path = %s", (request.url.path,))
            if not found:
                raise HTTPException(404, "We do not sell that product.")
            product = found[0]
            related = await self.products(conn, "category = %s AND product_id <> %s",
                                          (product["category"], product["product_id"]), limit=4)
        return await self.render(request, "product.html", product=product, tracked=tracked_product(product),
                                 related=related, max_quantity=MAX_QUANTITY, page_type="product")

    async def search(self, request: Request) -> Response:
        query = request.query_params.get("q", "").strip()[:MAX_SEARCH_LENGTH]
        products = []
        if query:
            async with await self.connect() as conn:
                products = await self.products(conn, "name ILIKE %s OR brand ILIKE %s",
                                               (like_pattern(query), like_pattern(query)))
        return await self.render(request, "search.html", query=query, products=products, page_type="search")

    async def cart(self, request: Request) -> Response:
        visitor = self.visitor(request)
        lines, total, cart_id = [], Decimal("0.00"), None
        if visitor:
            async with await self.connect() as conn:
                cart_id = await self.open_cart(conn, visitor)
                if cart_id:
                    lines, total = await self.cart_lines(conn, cart_id)
        return await self.render(request, "cart.html", lines=lines, total=total, cart_id=cart_id, page_type="cart")

    async def add_to_cart(self, request: Request) -> Response:
        visitor = self.visitor(request) or uuid.uuid4().hex
        fields = await form_fields(request)
        product_id = fields.get("product_id", "")
        quantity = parse_quantity(fields.get("quantity", "1"))
        if not PRODUCT_ID.match(product_id):
            raise HTTPException(404, "We do not sell that product.")
        async with await self.connect() as conn, conn.transaction():
            if not await self.products(conn, "product_id = %s", (product_id,)):
                raise HTTPException(404, "We do not sell that product.")
            # one open cart per visitor, even when two adds race
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (visitor,))
            cart_id = await self.open_cart(conn, visitor)
            if cart_id is None:
                cart_id = f"cart-{uuid.uuid4().hex}"
                await conn.execute("INSERT INTO carts (cart_id, client_id) VALUES (%s, %s)", (cart_id, visitor))
            cur = await conn.execute("SELECT quantity FROM cart_items WHERE cart_id = %s AND product_id = %s",
                                     (cart_id, product_id))
            in_cart = await cur.fetchone()
            if in_cart and in_cart["quantity"] + quantity > MAX_QUANTITY:
                raise HTTPException(400, f"A cart holds at most {MAX_QUANTITY} of a product; yours already has "
                                         f"{in_cart['quantity']}.")
            await conn.execute(
                "INSERT INTO cart_items (cart_id, product_id, quantity, unit_price) "
                "SELECT %s, product_id, %s, coalesce(discount_price, price) FROM products WHERE product_id = %s "
                "ON CONFLICT (cart_id, product_id) DO UPDATE SET quantity = cart_items.quantity + EXCLUDED.quantity, "
                "unit_price = EXCLUDED.unit_price",
                (cart_id, quantity, product_id))
            await conn.execute("UPDATE carts SET updated_at = now() WHERE cart_id = %s", (cart_id,))
        return self.remember(RedirectResponse("/cart", status_code=303), visitor)

    async def remove_from_cart(self, request: Request) -> Response:
        visitor = self.visitor(request)
        if visitor:
            async with await self.connect() as conn, conn.transaction():
                await conn.execute(
                    "DELETE FROM cart_items i USING carts c WHERE i.cart_id = c.cart_id AND c.client_id = %s "
                    "AND c.status = 'open' AND i.product_id = %s", (visitor, request.path_params["product_id"]))
        return RedirectResponse("/cart", status_code=303)

    async def checkout(self, request: Request) -> Response:
        visitor = self.visitor(request)
        async with await self.connect() as conn:
            cart_id = await self.open_cart(conn, visitor) if visitor else None
            lines, total = await self.cart_lines(conn, cart_id) if cart_id else ([], Decimal("0.00"))
        if not lines:
            return RedirectResponse("/cart", status_code=303)
        return await self.render(request, "checkout.html", lines=lines, total=total, cart_id=cart_id,
                                 page_type="checkout")

    async def place_order(self, request: Request) -> Response:
        """Write the order of the visitor's cart, once: a second submit finds the order the first one wrote."""
        visitor = self.visitor(request)
        cart_id = (await form_fields(request)).get("cart_id", "")
        if not visitor or not cart_id:
            raise HTTPException(400, "There is no cart to check out.")
        async with await self.connect() as conn, conn.transaction():
            cur = await conn.execute("SELECT status FROM carts WHERE cart_id = %s AND client_id = %s FOR UPDATE",
                                     (cart_id, visitor))
            cart = await cur.fetchone()
            if cart is None:
                raise HTTPException(400, "There is no such cart.")
            if cart["status"] == "ordered":
                cur = await conn.execute("SELECT order_id FROM orders WHERE cart_id = %s", (cart_id,))
                return RedirectResponse(f"/orders/{(await cur.fetchone())['order_id']}", status_code=303)
            if cart["status"] != "open":
                raise HTTPException(409, "This cart can no longer be checked out.")
            lines, total = await self.cart_lines(conn, cart_id)
            if not lines:
                raise HTTPException(400, "Your cart is empty.")
            order_id = f"ord-{uuid.uuid4().hex[:16]}"
            await conn.execute("INSERT INTO orders (order_id, cart_id, currency, total) VALUES (%s, %s, %s, %s)",
                               (order_id, cart_id, self.currency, total))
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO order_items (order_id, product_id, quantity, unit_price) VALUES (%s, %s, %s, %s)",
                    [(order_id, line["product_id"], line["quantity"], line["unit_price"]) for line in lines])
            await conn.execute("UPDATE carts SET status = 'ordered', updated_at = now() WHERE cart_id = %s",
                               (cart_id,))
        return RedirectResponse(f"/orders/{order_id}", status_code=303)

    async def order(self, request: Request) -> Response:
        visitor = self.visitor(request)
        async with await self.connect() as conn:
            cur = await conn.execute(
                "SELECT o.order_id, o.total, o.currency, o.placed_at FROM orders o JOIN carts c USING (cart_id) "
                "WHERE o.order_id = %s AND c.client_id = %s", (request.path_params["order_id"], visitor))
            order = await cur.fetchone()
            if order is None:
                raise HTTPException(404, "There is no such order for you.")
            cur = await conn.execute(
                "SELECT i.quantity, i.unit_price, p.name, p.url_path FROM order_items i "
                "JOIN products p USING (product_id) WHERE i.order_id = %s ORDER BY p.name", (order["order_id"],))
            items = await cur.fetchall()
        return await self.render(request, "order.html", order=order, items=items, page_type="purchase")


def token_expiry(token: str) -> int:
    """The exp of an ID token straight from Cognito (the storefront's own, so its signature is not checked)."""
    return jwt.decode(token, options={"verify_signature": False})["exp"]


def create_app(oltp_dsn: str, secret_key: str | None = None, ingest_url: str | None = None,
               templates: Path | None = None, static: Path | None = None, currency: str = CURRENCY,
               authenticate: Authenticate | None = None) -> Starlette:
    """The storefront on shop_oltp (a DSN of shop_app); its pages' tracker sends to `ingest_url` (none: the
    tracker's own default); shoppers sign in with `authenticate` (none: signing in is not available).
    Without `secret_key` a random one signs the cookies, so carts are forgotten when the process restarts."""
    shop = Storefront(oltp_dsn, secret_key or secrets.token_urlsafe(32), templates or frontend_dir() / "templates",
                      currency, ingest_url, authenticate)
    routes = [
        Route("/", shop.home),
        Route("/category/{slug}", shop.category),
        Route("/products/{slug}", shop.product),
        Route("/search", shop.search),
        Route("/cart", shop.cart),
        Route("/cart/items", shop.add_to_cart, methods=["POST"]),
        Route("/cart/items/{product_id}/remove", shop.remove_from_cart, methods=["POST"]),
        Route("/checkout", shop.checkout, methods=["GET"]),
        Route("/checkout", shop.place_order, methods=["POST"]),
        Route("/orders/{order_id}", shop.order),
        Route("/account/sign-in", shop.sign_in_page, methods=["GET"]),
        Route("/account/sign-in", shop.sign_in, methods=["POST"]),
        Route("/account/sign-out", shop.sign_out, methods=["POST"]),
        Route("/account/token", shop.fresh_token, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(static or frontend_dir() / "static")), name="static"),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: shop.error_page})


class CognitoSignIn:
    """Shoppers sign in with the target's user pool (clickstream.shop.shoppers)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def sign_in(self, email: str, password: str) -> Tokens:
        from clickstream.shop import shoppers

        try:
            result = shoppers.sign_in(self.settings, email, password)
        except shoppers.CognitoError as error:
            raise SignInError(str(error)) from error
        return Tokens(result["IdToken"], result.get("RefreshToken"))

    def refresh(self, refresh_token: str) -> str:
        from clickstream.shop import shoppers

        try:
            return shoppers.refresh_id_token(self.settings, refresh_token)
        except shoppers.CognitoError as error:
            raise SignInError(str(error)) from error


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--oltp-dsn", default=os.environ.get("CLICKSTREAM_OLTP_DSN"),
                        help="DSN of shop_app on shop_oltp [env CLICKSTREAM_OLTP_DSN]")
    parser.add_argument("--ingest-url", default=os.environ.get("CLICKSTREAM_INGEST_URL"),
                        help="where the pages' tracker sends events, e.g. http://127.0.0.1:3100/clickstream "
                             "[env CLICKSTREAM_INGEST_URL]")
    args = parser.parse_args()
    if not args.oltp_dsn:
        parser.error("the OLTP DSN is needed: --oltp-dsn or CLICKSTREAM_OLTP_DSN")
    app = create_app(args.oltp_dsn, os.environ.get("CLICKSTREAM_STOREFRONT_SECRET"), args.ingest_url,
                     authenticate=CognitoSignIn(Settings.from_env()))
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
