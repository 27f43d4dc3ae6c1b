"""Small, deterministic sample events: canonical v1 events and the original workshop tracker's events."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta, timezone

PRODUCTS = [
    {"id": "LAP-001", "name": "Aero 14 Laptop", "category": "laptop", "brand": "Aero", "price": 1299.00,
     "discount_price": 1199.00, "url_path": "/products/aero-14-laptop"},
    {"id": "MON-027", "name": "ViewMax 27\" 4K Monitor", "category": "monitor", "brand": "ViewMax", "price": 429.99,
     "discount_price": None, "url_path": "/products/viewmax-27-4k"},
    {"id": "ACC-105", "name": "Quiet Mechanical Keyboard", "category": "accessory", "brand": "Keyly", "price": 89.50,
     "discount_price": 79.90, "url_path": "/products/quiet-mechanical-keyboard"},
]
SHOP = "https://shop.example.com"


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def canonical_event(
    event_name: str = "product_view", rng: random.Random | None = None, at: datetime | None = None, **overrides
) -> dict:
    """One valid v1 event; `overrides` replace top-level fields.

    Ids come from `rng`: a Random with the same seed as a `canonical_batch` repeats its event ids."""
    rng = rng or random.Random()
    at = at or datetime.now(timezone.utc)
    product = rng.choice(PRODUCTS)
    event = {
        "event_id": _uuid(rng),
        "event_name": event_name,
        "client_ts": at.isoformat(timespec="milliseconds"),
        "sent_ts": (at + timedelta(milliseconds=rng.randint(5, 900))).isoformat(timespec="milliseconds"),
        "client_id": f"c-{rng.getrandbits(48):012x}",
        "session_id": f"s-{rng.getrandbits(48):012x}",
        "user_id": None,
        "user_login_state": "anonymous",
        "page_url": f"{SHOP}{product['url_path']}",
        "page_type": "product",
        "referrer": "https://www.google.com/",
        "utm": {"source": "google", "medium": "cpc", "campaign": "black-friday", "term": None, "content": None},
        "product": dict(product),
        "properties": {},
    }
    if event_name in ("add_to_cart", "remove_from_cart"):
        event.update(quantity=1, cart_id=f"cart-{rng.getrandbits(32):08x}")
    if event_name == "purchase":
        price = product["discount_price"] or product["price"]
        event.update(quantity=1, order_id=f"order-{rng.getrandbits(32):08x}", value=price, currency="USD")
    event.update(overrides)
    return event


def clocked_event(rng: random.Random, client_ts: datetime, sent_ts: datetime | None,
                  event_name: str = "page_view") -> dict:
    """A valid event that happened at `client_ts` and was sent at `sent_ts`, both read from the browser's clock
    (None: the tracker sent no `sent_ts`)."""
    event = canonical_event(event_name, rng, at=client_ts)
    if sent_ts is None:
        del event["sent_ts"]
    else:
        event["sent_ts"] = sent_ts.isoformat(timespec="milliseconds")
    return event


def canonical_batch(size: int, seed: int = 7, at: datetime | None = None) -> list[dict]:
    """`size` valid events of one visit-like mix, the same for the same seed."""
    rng = random.Random(seed)
    names = ["page_view", "product_list_view", "product_view", "product_view", "add_to_cart", "begin_checkout",
             "purchase", "search", "click"]
    return [canonical_event(names[i % len(names)], rng, at) for i in range(size)]


def legacy_event(event_name: str = "add_to_cart_click", event_id: str | None = None, **overrides) -> dict:
    """An event exactly as the original workshop's Next.js tracker sends it (flat camelCase)."""
    product = PRODUCTS[0]
    event = {
        "eventName": event_name,
        "pageUrl": f"{SHOP}{product['url_path']}",
        "referrer": f"{SHOP}/",
        "userId": None,
        "userLoginState": "guest",
        "clientId": "legacy-client-1",
        "sessionId": "legacy-session-1",
        "isFirstVisit": True,
        "product": {
            "id": product["id"], "name": product["name"], "category": product["category"], "brand": product["brand"],
            "price": product["price"], "discountPrice": product["discount_price"], "urlPath": product["url_path"],
        },
        "element": {"tag": "button", "id": "add-to-cart", "role": "button", "text": "Add to cart",
                    "dataset": {"sku": product["id"]}},
    }
    if event_id is not None:
        event["eventId"] = event_id
    event.update(overrides)
    return event
