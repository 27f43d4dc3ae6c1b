"""Deterministic traffic of the shop: visitors, sessions, bots and tracker requests, and their ground truth.

    config = SimulationConfig(days=7, visitors=2000, seed=42, start=date(2026, 11, 16))
    for requests in generate(config): ...      # each visitor's requests, exactly as its browser sends them
    truth = ground_truth(config)               # what the warehouse must answer for them

Pure: no I/O. `clickstream.shop.traffic` sends the requests to a target its caller chooses.

Everything comes from `random.Random` seeded with the seed (one generator per visitor), so the same seed and
parameters give byte-identical requests and truth. Times are integer epoch milliseconds; for one event

    client_ts   = when it happened + the visitor's clock skew
    sent_ts     = when its request was sent + the same skew
    received_at = when its request was sent (history mode: the ingest's injected clock)

so the warehouse's event_timestamp, received_at - (sent_ts - client_ts), is the real time of the interaction.
Within a session consecutive events are 1 ms to 20 minutes apart; two sessions of a visitor are at least
45 minutes apart, so the warehouse's 30-minute sessions are exactly the simulated ones. Every event happens
and every request is received inside [start, start + days).
"""

from __future__ import annotations

import bisect
import json
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from functools import cache
from random import Random
from typing import Any
from zoneinfo import ZoneInfo

from clickstream import contract
from clickstream.shop import catalogue
from clickstream.analytics.transform import classify_user_agent, event_timestamp

SHOP_URL = "https://shop.example.com"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
SECOND, MINUTE, HOUR, DAY = 1000, 60_000, 3_600_000, 86_400_000
SESSION_TIMEOUT_MS = 30 * MINUTE  # the warehouse's inactivity gap
MAX_STEP_MS = 20 * MINUTE  # longest pause inside a simulated session
MIN_SESSION_GAP_MS = 45 * MINUTE  # shortest pause between two sessions of a visitor
FLUSH_MS = 5 * SECOND  # the tracker sends its buffer 5 s after the first buffered event, or at page unload
MAX_REQUEST_EVENTS = 25
LATE_MS = HOUR  # a request sent at least this long after an event makes it a late event
END_MARGIN_MS = MINUTE  # no event in the last minute of the window, so every send fits in it
FUNNEL_STEPS = ("product_view", "add_to_cart", "begin_checkout", "purchase")

BOT_SHARE = 0.02  # bot visitors per human visitor
SIGNED_IN_SHARE = 0.3  # visitors with a shop account
SIMULATED_SHOPPERS = 20  # the accounts: shoppers of the shop's user pool, the same for every run (shopper_email)
RETRY_RATE = 0.02  # requests resent because the response was lost
LATE_RATE = 0.01  # requests queued offline and sent 1 to 30 hours later
MALFORMED_RATE = 0.01  # requests carrying one broken event from a buggy page script

P_ADD_TO_CART = 0.042  # per product view
P_PURCHASE = 0.6  # per checkout page

# (user agent, weight): desktop, mobile and tablet browsers; classify_user_agent() calls none of them a bot.
BROWSERS = (
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
     "Safari/537.36", 30),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
     "Safari/537.36 Edg/124.0.0.0", 8),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0", 5),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 "
     "Safari/605.1.15", 12),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36", 3),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.4 Mobile/15E148 Safari/604.1", 20),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile "
     "Safari/537.36", 8),
    ("Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile "
     "Safari/537.36", 8),
    ("Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 "
     "Mobile/15E148 Safari/604.1", 6),
)
CRAWLERS = (
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.6099.129 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
    "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
)
# (utm source, medium, campaigns, referrer, weight); source None: no utm (direct, or organic with a referrer)
SOURCES = (
    ("google", "cpc", ("brand-search", "laptops-generic", "monitors-generic"), "https://www.google.com/", 28),
    ("newsletter", "email", ("weekly-deals", "new-arrivals"), None, 10),
    ("facebook", "social", ("spring-sale", "gaming-setup"), "https://www.facebook.com/", 10),
    (None, None, (), None, 37),
    (None, None, (), "https://www.google.com/", 15),
)
LANDING = {  # first page by medium
    "cpc": (("product", 70), ("category", 30)),
    "email": (("category", 50), ("product", 50)),
    "social": (("product", 80), ("home", 20)),
    None: (("home", 55), ("product", 25), ("category", 20)),
}
CATEGORY_PATHS = {"laptop": "/category/laptops", "monitor": "/category/monitors", "accessory": "/category/accessories"}
SEARCHES = (("gaming laptop", "laptop"), ("macbook air", "laptop"), ("thinkpad", "laptop"), ("4k monitor", "monitor"),
            ("ultrawide", "monitor"), ("27 inch monitor", "monitor"), ("usb-c hub", "accessory"),
            ("webcam", "accessory"), ("mechanical keyboard", "accessory"), ("monitor arm", "accessory"))
LOCAL_OFFSETS = (420, 60, -300, 330, -480)  # minutes; most trackers send UTC ("Z")
# Relative traffic by UTC hour, on weekdays and at weekends, and by day of week (Monday first).
WEEKDAY_HOURS = (0.8, 0.5, 0.35, 0.3, 0.3, 0.4, 0.7, 1.2, 1.8, 2.4, 2.8, 3.0,
                 3.2, 3.0, 2.8, 2.7, 2.8, 3.0, 3.3, 3.8, 4.2, 4.0, 3.0, 1.8)
WEEKEND_HOURS = (1.0, 0.7, 0.45, 0.35, 0.3, 0.3, 0.4, 0.6, 1.0, 1.6, 2.2, 2.6,
                 2.8, 2.8, 2.7, 2.6, 2.6, 2.7, 2.9, 3.1, 3.3, 3.1, 2.5, 1.6)
DAY_WEIGHTS = (1.0, 1.0, 1.0, 0.97, 0.9, 0.68, 0.72)


def default_start(days: int, today: date | None = None) -> date:
    """The first day of the `days` days that end yesterday (UTC)."""
    today = today or datetime.now(timezone.utc).date()
    return today - timedelta(days=days)


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate: `visitors` human browsers over `days` UTC days from `start`, plus BOT_SHARE bots."""

    start: date
    days: int = 7
    visitors: int = 2000
    seed: int = 42

    def __post_init__(self) -> None:
        if self.days < 1 or self.visitors < 1:
            raise ValueError("days and visitors must be at least 1")

    @property
    def bots(self) -> int:
        return max(1, round(self.visitors * BOT_SHARE))

    @property
    def start_ms(self) -> int:
        return _ms(datetime(self.start.year, self.start.month, self.start.day, tzinfo=timezone.utc))

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.days * DAY


@dataclass(frozen=True)
class Request:
    """One POST /clickstream of one browser: its events exactly as sent, when, and the server's view of it."""

    visitor: int
    sent_ms: int
    events: tuple[dict[str, Any], ...]
    user_agent: str
    source_ip: str
    request_id: str
    object_id: uuid.UUID
    retry_of: str | None = None  # request_id of the request this one resends

    @property
    def received_at(self) -> datetime:
        return _datetime(self.sent_ms)

    def shifted(self, shift_ms: int) -> Request:
        """This request `shift_ms` later: send time and every parseable timestamp (a broken one stays broken)."""
        def move(text: str) -> str:
            try:
                moment = contract.parse_timestamp(text)
            except ValueError:
                return text
            return _timestamp(_ms(moment) + shift_ms, int(moment.utcoffset() // timedelta(minutes=1)))

        events = tuple({**e, "client_ts": move(e["client_ts"]), "sent_ts": move(e["sent_ts"])} for e in self.events)
        return replace(self, sent_ms=self.sent_ms + shift_ms, events=events)


def _ms(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)


def _datetime(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def _timestamp(ms: int, offset_minutes: int = 0) -> str:
    """RFC 3339 with milliseconds: `...Z`, or the local time with its offset."""
    moment = _datetime(ms + offset_minutes * MINUTE)
    text = f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}"
    if not offset_minutes:
        return text + "Z"
    sign, minutes = ("+" if offset_minutes > 0 else "-"), abs(offset_minutes)
    return f"{text}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _uuid(rng: Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


# --- the shop as the simulator sees it ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Catalogue:
    """Products with a popularity (Zipf-like over a seed-dependent order) per category and overall."""

    products: tuple[dict[str, Any], ...]
    by_category: dict[str | None, tuple[tuple[dict[str, Any], ...], tuple[float, ...]]]

    def pick(self, rng: Random, category: str | None = None) -> dict[str, Any]:
        items, cumulative = self.by_category[category]
        return items[bisect.bisect_right(cumulative, rng.random() * cumulative[-1])]


@cache
def _catalogue(seed: int) -> _Catalogue:
    products = catalogue.products()
    ranked = list(products)
    Random(f"{seed}:popularity").shuffle(ranked)
    weight = {product["id"]: 1 / (rank + 1) ** 1.1 for rank, product in enumerate(ranked)}
    by_category = {}
    for category in (None, *catalogue.CATEGORIES):
        items = tuple(p for p in ranked if category in (None, p["category"]))
        cumulative, total = [], 0.0
        for product in items:
            total += weight[product["id"]]
            cumulative.append(total)
        by_category[category] = (items, tuple(cumulative))
    return _Catalogue(tuple(products), by_category)


@cache
def _hour_weights(start: date, days: int) -> tuple[float, ...]:
    """Cumulative weights of the window's hours (weekday/weekend shape times the day of week's weight)."""
    cumulative, total = [], 0.0
    for day in range(days):
        dow = (start + timedelta(days=day)).weekday()
        for weight in (WEEKDAY_HOURS if dow < 5 else WEEKEND_HOURS):
            total += weight * DAY_WEIGHTS[dow]
            cumulative.append(total)
    return tuple(cumulative)


def _session_start(rng: Random, config: SimulationConfig) -> int:
    cumulative = _hour_weights(config.start, config.days)
    hour = bisect.bisect_right(cumulative, rng.random() * cumulative[-1])
    return config.start_ms + hour * HOUR + rng.randrange(HOUR)


def _choice(rng: Random, weighted: Sequence[tuple[Any, float]]) -> Any:
    return rng.choices([value for value, _ in weighted], [weight for _, weight in weighted])[0]


# --- visitors and their sessions ----------------------------------------------------------------------------


@dataclass
class _Visitor:
    index: int
    client_id: str
    user_agent: str
    source_ip: str
    skew_ms: int
    offset_minutes: int
    customer: str | None
    is_bot: bool


@dataclass
class _Timeline:
    """The events of one session as they happen: (time, fields, starts a page load)."""

    rng: Random
    end_ms: int
    now: int
    events: list[tuple[int, dict[str, Any], bool]] = field(default_factory=list)
    over: bool = False

    def emit(self, gap_ms: int, fields: dict[str, Any], page_load: bool = False) -> bool:
        """Add an event `gap_ms` (1 ms to 20 min) after the previous one; False once the window is over."""
        self.now += min(max(gap_ms, 1), MAX_STEP_MS) if self.events else 0
        if self.now >= self.end_ms - END_MARGIN_MS:
            self.over = True
        if not self.over:
            self.events.append((self.now, fields, page_load))
        return not self.over

    def dwell(self, median_s: float = 25) -> int:
        """Time on a page before the next click: log-normal, 2 s to 20 minutes."""
        return int(min(max(self.rng.lognormvariate(0, 0.9) * median_s * SECOND, 2 * SECOND), MAX_STEP_MS))


def _new_visitor(rng: Random, index: int, is_bot: bool) -> _Visitor:
    skew_kind = rng.random()
    if is_bot or skew_kind < 0.8:
        skew = 0 if is_bot else round(rng.gauss(0, 1500))
    elif skew_kind < 0.95:
        skew = rng.choice((-1, 1)) * rng.randint(2 * SECOND, 10 * MINUTE)
    else:
        skew = rng.choice((-1, 1)) * rng.randint(HOUR, 6 * HOUR)
    customer = None
    if not is_bot and rng.random() < SIGNED_IN_SHARE:
        customer = shopper_email(rng.randrange(SIMULATED_SHOPPERS))
    return _Visitor(
        index=index,
        client_id=f"{'b' if is_bot else 'c'}-{rng.getrandbits(64):016x}",
        user_agent=rng.choice(CRAWLERS) if is_bot else _choice(rng, BROWSERS),
        source_ip=f"{rng.choice((24, 73, 81, 93, 113, 171, 203))}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
        skew_ms=skew,
        offset_minutes=rng.choice(LOCAL_OFFSETS) if not is_bot and rng.random() < 0.12 else 0,
        customer=customer,
        is_bot=is_bot,
    )


def shopper_email(number: int) -> str:
    """The email of simulated shopper `number` (0 to SIMULATED_SHOPPERS - 1), a user of the shop's user pool.
    A signed-in visitor's events carry it as their user_id claim; the traffic's sender proves it with the
    shopper's Cognito identity, so the stored user_id is the shopper's sub."""
    return f"simulated-shopper-{number:02d}@shop.example.com"


def _product_fields(product: dict[str, Any]) -> dict[str, Any]:
    return {name: product[name] for name in catalogue.FIELDS}


def _human_session(rng: Random, visitor: _Visitor, shop_catalogue: _Catalogue, start_ms: int, end_ms: int,
                   first_visit: bool) -> list[tuple[int, dict[str, Any], bool]]:
    """One visit: landing page by traffic source, browsing, cart, checkout and purchase with realistic drop-off."""
    timeline = _Timeline(rng, end_ms, start_ms)
    source, medium, campaigns, referrer, _ = _choice(rng, [(s, s[-1]) for s in SOURCES])
    utm = {"source": source, "medium": medium, "campaign": rng.choice(campaigns), "term": None,
           "content": None} if source else None
    signed_in = visitor.customer is not None and rng.random() < 0.85
    session_id = f"s-{rng.getrandbits(64):016x}"
    cart_id = f"cart-{rng.getrandbits(48):012x}"
    cart: dict[str, tuple[dict[str, Any], int]] = {}
    state = {"referrer": referrer, "signed_in": signed_in}

    def fields(name: str, url: str, page_type: str, **extra: Any) -> dict[str, Any]:
        event = {
            "event_name": name, "client_id": visitor.client_id, "session_id": session_id,
            "user_id": visitor.customer if state["signed_in"] else None,
            "user_login_state": "logged_in" if state["signed_in"] else "anonymous",
            "page_url": url, "page_type": page_type, "referrer": state["referrer"], "utm": utm, "product": None,
        }
        event.update(extra)
        event["properties"] = {"is_first_visit": first_visit, **event.get("properties", {})}
        return event

    def page(url: str, page_type: str, gap: int, detail: tuple[str, dict] | None = None) -> bool:
        if not timeline.events and utm:
            url += f"?utm_source={utm['source']}&utm_medium={utm['medium']}&utm_campaign={utm['campaign']}"
        ok = timeline.emit(gap, fields("page_view", url, page_type), page_load=True)
        if ok and detail:
            ok = timeline.emit(rng.randint(30, 600), fields(detail[0], url, page_type, **detail[1]))
        state["referrer"] = url.split("?")[0]
        return ok

    where = _choice(rng, LANDING[medium])
    category: str | None = None
    gap = 0
    for _ in range(40):
        if where == "home":
            if not page(f"{SHOP_URL}/", "home", gap):
                break
            where = _choice(rng, (("category", 45), ("search", 15), ("product", 15), ("exit", 25)))
        elif where == "category":
            category = rng.choice(catalogue.CATEGORIES) if category is None or rng.random() < 0.2 else category
            url = f"{SHOP_URL}{CATEGORY_PATHS[category]}"
            if not page(url, "category", gap, ("product_list_view", {"properties": {"category": category}})):
                break
            where = _choice(rng, (("product", 72), ("search", 5), ("category", 5), ("exit", 18)))
        elif where == "search":
            query, category = rng.choice(SEARCHES)
            url = f"{SHOP_URL}/search?q={query.replace(' ', '+')}"
            if not page(url, "search", gap, ("search", {"properties": {"query": query}})):
                break
            where = _choice(rng, (("product", 75), ("exit", 25)))
        elif where == "product":
            product = shop_catalogue.pick(rng, category if category and rng.random() < 0.8 else None)
            category = product["category"]
            url = f"{SHOP_URL}{product['url_path']}"
            if not page(url, "product", gap, ("product_view", {"product": _product_fields(product)})):
                break
            if rng.random() < 0.03:
                timeline.emit(rng.randint(3, 40) * SECOND, fields(rng.choice(("add_to_wishlist", "share")), url,
                                                                  "product", product=_product_fields(product)))
            if rng.random() < P_ADD_TO_CART:
                quantity = 1 if product["category"] != "accessory" or rng.random() < 0.75 else rng.randint(2, 3)
                ok = timeline.emit(rng.randint(5, 90) * SECOND, fields(
                    "add_to_cart", url, "product", product=_product_fields(product), quantity=quantity,
                    cart_id=cart_id))
                if not ok:
                    break
                previous = cart.get(product["id"], (product, 0))[1]
                cart[product["id"]] = (product, previous + quantity)
                where = _choice(rng, (("cart", 68), ("product", 12), ("category", 7), ("exit", 13)))
            else:
                where = _choice(rng, (("product", 34), ("category", 24), ("search", 7), ("home", 4), ("exit", 31),
                                      ("cart", 6 if cart else 0)))
        elif where == "cart":
            if not page(f"{SHOP_URL}/cart", "cart", gap):
                break
            if cart and rng.random() < 0.08:
                product, quantity = cart.pop(rng.choice(sorted(cart)))
                timeline.emit(rng.randint(3, 30) * SECOND, fields(
                    "remove_from_cart", f"{SHOP_URL}/cart", "cart", product=_product_fields(product),
                    quantity=quantity, cart_id=cart_id))
            where = _choice(rng, (("checkout", 76 if cart else 0), ("product", 9), ("exit", 15)))
        elif where == "checkout":
            if visitor.customer and not state["signed_in"] and rng.random() < 0.5:
                if not page(f"{SHOP_URL}/account/login", "account", gap):
                    break
                state["signed_in"] = True
                timeline.emit(rng.randint(8, 60) * SECOND, fields("login", f"{SHOP_URL}/account/login", "account"))
                gap = rng.randint(1, 4) * SECOND
            if not page(f"{SHOP_URL}/checkout", "checkout", gap, ("begin_checkout", {"cart_id": cart_id})):
                break
            if rng.random() < P_PURCHASE:
                url = f"{SHOP_URL}/checkout/confirmation"
                if not page(url, "checkout", rng.randint(60, 600) * SECOND):
                    break
                order_id = f"order-{rng.getrandbits(48):012x}"
                for product, quantity in cart.values():
                    price = catalogue.unit_price(product)
                    timeline.emit(rng.randint(1, 5), fields(
                        "purchase", url, "checkout", product=_product_fields(product), quantity=quantity,
                        cart_id=cart_id, order_id=order_id, value=price * quantity, currency="USD"))
                cart, cart_id = {}, f"cart-{rng.getrandbits(48):012x}"
                where = _choice(rng, (("exit", 85), ("home", 15)))
            else:
                where = _choice(rng, (("exit", 70), ("cart", 30)))
        if where == "exit" or timeline.over:
            break
        gap = timeline.dwell()
    return timeline.events


def _bot_session(rng: Random, visitor: _Visitor, shop_catalogue: _Catalogue, start_ms: int,
                 end_ms: int) -> list[tuple[int, dict[str, Any], bool]]:
    """A crawl: many pages a second or a few apart, products in catalogue order from a random one."""
    timeline = _Timeline(rng, end_ms, start_ms)
    session_id = f"s-{rng.getrandbits(64):016x}"
    products = shop_catalogue.products
    first = rng.randrange(len(products))
    referrer = None
    pages = [("home", None)] + [("category", c) for c in catalogue.CATEGORIES]
    pages += [("product", products[(first + i) % len(products)]) for i in range(rng.randint(8, 40))]
    for kind, item in pages:
        url = f"{SHOP_URL}/" if kind == "home" else (
            f"{SHOP_URL}{CATEGORY_PATHS[item]}" if kind == "category" else f"{SHOP_URL}{item['url_path']}")
        base = {"client_id": visitor.client_id, "session_id": session_id, "user_id": None,
                "user_login_state": "anonymous", "page_url": url, "page_type": kind, "referrer": referrer,
                "utm": None, "product": None, "properties": {}}
        if not timeline.emit(rng.randint(800, 5000), {**base, "event_name": "page_view"}, page_load=True):
            break
        if kind == "product":
            timeline.emit(rng.randint(20, 200), {**base, "event_name": "product_view", "product": _product_fields(item)})
        elif kind == "category":
            timeline.emit(rng.randint(20, 200), {**base, "event_name": "product_list_view"})
        referrer = url
    return timeline.events


# --- requests -----------------------------------------------------------------------------------------------


def _batches(rng: Random, events: list[tuple[int, dict[str, Any], bool]], end_ms: int) -> list[tuple[int, list]]:
    """(send time, events) as the tracker flushes its buffer: 5 s after the first buffered event, at each page
    unload (just before the next page load) and when the buffer is full."""
    batches: list[tuple[int, list]] = []
    buffer: list[tuple[int, dict[str, Any]]] = []
    deadline = 0
    for at, fields, page_load in events:
        if buffer and (at > deadline or page_load or len(buffer) >= MAX_REQUEST_EVENTS):
            batches.append((min(deadline, at - 1), buffer))
            buffer = []
        if not buffer:
            deadline = at + FLUSH_MS
        buffer.append((at, fields))
    if buffer:
        batches.append((min(deadline, buffer[-1][0] + rng.randint(200, 4000), end_ms - 1), buffer))
    return batches


def _malformed(rng: Random, event: dict[str, Any], shop_catalogue: _Catalogue) -> dict[str, Any]:
    """A broken copy of `event` (a new id) that the ingest must reject."""
    broken = {**event, "event_id": str(_uuid(rng))}
    kind = rng.randrange(4)
    if kind == 0:
        del broken["client_id"]
    elif kind == 1:
        broken["event_name"] = rng.choice(("pageview", "addToCart", "product-view"))
    elif kind == 2:
        product = _product_fields(shop_catalogue.pick(rng))
        broken["product"] = {**product, "price": -product["price"]}
    else:
        broken["client_ts"] = broken["client_ts"][:10] + " " + broken["client_ts"][11:19]  # no offset
    return broken


def _visitor_requests(config: SimulationConfig, index: int) -> list[Request]:
    is_bot = index >= config.visitors
    rng = Random(f"{config.seed}:{'bot' if is_bot else 'visitor'}:{index}")
    visitor = _new_visitor(rng, index, is_bot)
    shop_catalogue = _catalogue(config.seed)
    end_ms = config.end_ms
    if is_bot:
        count = rng.randint(1, max(1, config.days // 2))
        starts = sorted(config.start_ms + rng.randrange(config.days * DAY) for _ in range(count))
    else:
        count = 1
        while count < 12 and rng.random() < 0.4:
            count += 1
        starts = sorted(_session_start(rng, config) for _ in range(count))
    requests: list[Request] = []
    previous_end: int | None = None
    for number, start in enumerate(starts):
        if previous_end is not None:
            start = max(start, previous_end + MIN_SESSION_GAP_MS + rng.randrange(10 * MINUTE))
        if start >= end_ms - END_MARGIN_MS:
            break
        if is_bot:
            visitor.client_id = f"b-{rng.getrandbits(64):016x}"  # crawlers keep no storage between crawls
            events = _bot_session(rng, visitor, shop_catalogue, start, end_ms)
        else:
            events = _human_session(rng, visitor, shop_catalogue, start, end_ms, first_visit=number == 0)
        if not events:
            continue
        previous_end = events[-1][0]
        for sent_ms, batch in _batches(rng, events, end_ms):
            requests.extend(_requests(rng, visitor, sent_ms, batch, end_ms, shop_catalogue))
    return requests


def _requests(rng: Random, visitor: _Visitor, sent_ms: int, batch: list[tuple[int, dict[str, Any]]], end_ms: int,
              shop_catalogue: _Catalogue) -> list[Request]:
    """The request of one flushed buffer, sometimes sent late, with a broken event, or resent."""
    if not visitor.is_bot and rng.random() < LATE_RATE:
        sent_ms = min(sent_ms + rng.randint(HOUR, 30 * HOUR), end_ms - 1)
    skew, offset = visitor.skew_ms, visitor.offset_minutes
    events = []
    for at, fields in batch:
        event = {"event_id": str(_uuid(rng)), "client_ts": _timestamp(at + skew, offset),
                 "sent_ts": _timestamp(sent_ms + skew, offset), **fields}
        events.append(event)
    if not visitor.is_bot and rng.random() < MALFORMED_RATE:
        events.insert(rng.randrange(len(events) + 1), _malformed(rng, rng.choice(events), shop_catalogue))
    request = Request(visitor.index, sent_ms, tuple(events), visitor.user_agent, visitor.source_ip,
                      str(_uuid(rng)), _uuid(rng))
    if rng.random() >= RETRY_RATE:
        return [request]
    resent_ms = min(sent_ms + rng.randint(2, 30) * SECOND, end_ms - 1)
    resent = tuple({**event, "sent_ts": _timestamp(resent_ms + skew, offset)} for event in events)
    return [request, Request(visitor.index, resent_ms, resent, visitor.user_agent, visitor.source_ip,
                             str(_uuid(rng)), _uuid(rng), retry_of=request.request_id)]


def generate(config: SimulationConfig, indexes: Iterable[int] | None = None) -> Iterator[list[Request]]:
    """The requests of each visitor (humans first, then bots), each visitor's in the order it made them.

    `indexes` (default all: range(visitors + bots), humans 0..visitors-1, then the bots) picks visitors; each
    visitor's requests depend only on the configuration and its index, so ranges of it can be made apart."""
    total = config.visitors + config.bots
    for index in range(total) if indexes is None else indexes:
        if not 0 <= index < total:
            raise ValueError(f"visitor index {index} is outside 0..{total - 1}")
        yield _visitor_requests(config, index)


# --- ground truth -------------------------------------------------------------------------------------------


@dataclass
class Truth:
    """What the warehouse must answer for the accepted events: fed one visitor's requests at a time."""

    config: SimulationConfig
    events: int = 0
    stored: int = 0  # accepted event copies, duplicates included: what the raw objects hold
    event_counts: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    hourly: Counter = field(default_factory=Counter)
    funnel: list[int] = field(default_factory=lambda: [0] * len(FUNNEL_STEPS))
    products: dict[str, dict[str, Any]] = field(default_factory=dict)
    sessions: Counter = field(default_factory=Counter)
    bots: Counter = field(default_factory=Counter)
    duplicates: int = 0
    malformed: int = 0
    late: int = 0

    def add(self, requests: Iterable[Request]) -> None:
        """Validate each sent event as the ingest does, keep the first stored copy of each id, and count."""
        seen: set[str] = set()
        by_client: dict[str, list[tuple[datetime, dict[str, Any]]]] = defaultdict(list)
        bot_clients: set[str] = set()
        for request in sorted(requests, key=lambda r: r.sent_ms):
            received_at = request.received_at
            is_bot = classify_user_agent(request.user_agent)[0]
            for event in request.events:
                normalized, _ = contract.normalize_event(event, received_at)
                if normalized is None:
                    self.malformed += 1
                    continue
                self.stored += 1
                if event["event_id"] in seen:
                    self.duplicates += 1
                    continue
                seen.add(event["event_id"])
                client_ts = contract.parse_timestamp(event["client_ts"])
                sent_ts = contract.parse_timestamp(event["sent_ts"])
                if sent_ts - client_ts >= timedelta(milliseconds=LATE_MS):
                    self.late += 1
                by_client[event["client_id"]].append((event_timestamp(client_ts, sent_ts, received_at), event))
                if is_bot:
                    bot_clients.add(event["client_id"])
        for client_id, events in by_client.items():
            events.sort(key=lambda item: item[0])
            sessions = _split_sessions(events)
            if client_id in bot_clients:
                self.bots["sessions"] += len(sessions)
                self.bots["events"] += len(events)
                continue
            self.sessions["visitors"] += 1
            for session in sessions:
                self._count_session(session)

    def _count_session(self, session: list[tuple[datetime, dict[str, Any]]]) -> None:
        self.sessions["sessions"] += 1
        self.sessions["bounces"] += len(session) == 1
        self.sessions["signed_in_sessions"] += any(event.get("user_id") for _, event in session)
        step, last = 0, None
        for at, event in session:
            name = event["event_name"]
            self.events += 1
            self.event_counts[f"{at:%Y-%m-%d}"][name] += 1
            self.hourly[f"{at:%Y-%m-%dT%H}"] += 1
            if step < len(FUNNEL_STEPS) and name == FUNNEL_STEPS[step] and (last is None or at > last):
                step, last = step + 1, at
            product = event.get("product")
            if product and name in ("product_view", "add_to_cart", "purchase"):
                counts = self.products.setdefault(
                    product["id"], {"views": 0, "add_to_cart": 0, "purchases": 0, "revenue": Decimal("0.00")})
                key = {"product_view": "views", "add_to_cart": "add_to_cart", "purchase": "purchases"}[name]
                counts[key] += 1
                if name == "purchase":
                    counts["revenue"] += Decimal(str(event["value"]))
        for reached in range(step):
            self.funnel[reached] += 1

    def as_dict(self) -> dict[str, Any]:
        """The ground-truth JSON of /tmp/issue4_spec.md (humans only, bots apart)."""
        return {
            "seed": self.config.seed, "start": self.config.start.isoformat(), "days": self.config.days,
            "visitors": self.config.visitors, "events": self.events,
            "event_counts": {day: dict(sorted(counts.items())) for day, counts in sorted(self.event_counts.items())},
            "funnel": [{"step": step, "sessions": n} for step, n in zip(FUNNEL_STEPS, self.funnel)],
            "products": {pid: {**c, "revenue": f"{c['revenue']:.2f}"} for pid, c in sorted(self.products.items())},
            "sessions": {key: self.sessions[key] for key in ("sessions", "bounces", "visitors", "signed_in_sessions")},
            "bots": {"sessions": self.bots["sessions"], "events": self.bots["events"]},
            "duplicates_sent": self.duplicates, "malformed_sent": self.malformed, "late_events": self.late,
            "hourly_utc": dict(sorted(self.hourly.items())),
        }

    def dumps(self) -> str:
        return json.dumps(self.as_dict(), indent=2) + "\n"


def report_mismatches(report: dict[str, Any], truth: dict[str, Any]) -> list[str]:
    """How a report (`clickstream.analytics.questions.report` over the simulated days, UTC, bots excluded) differs
    from the truth: one line per differing answer; empty when every answer is exact."""
    checks = {
        "events per name and day": (report["daily_event_counts"], truth["event_counts"]),
        "funnel": ([(s["step"], s["sessions"]) for s in report["funnel"]],
                   [(s["step"], s["sessions"]) for s in truth["funnel"]]),
        "products": ({p["product_id"]: {k: p[k] for k in ("views", "add_to_cart", "purchases", "revenue")}
                      for p in report["top_products"]}, truth["products"]),
        "sessions": ({k: report["sessions"][k] for k in truth["sessions"]}, truth["sessions"]),
    }
    return [f"{name}: the warehouse says {got}, the truth is {expected}"
            for name, (got, expected) in checks.items() if got != expected]


def truth_heatmap(truth: dict[str, Any], first: date, last: date, tz: str = "UTC") -> dict[tuple[int, int], int]:
    """The truth's events of the dates `first` to `last` in `tz`, per (day of week, hour) there: the cells with
    events of the peak_activity answer (its `hourly_utc` counts, each UTC hour moved to its local cell)."""
    zone = ZoneInfo(tz)
    lo = datetime.combine(first, time.min, zone)
    hi = datetime.combine(last + timedelta(days=1), time.min, zone)
    cells: Counter[tuple[int, int]] = Counter()
    for hour, events in truth["hourly_utc"].items():
        moment = datetime.strptime(hour, "%Y-%m-%dT%H").replace(tzinfo=timezone.utc)
        if lo <= moment < hi:
            local = moment.astimezone(zone)
            cells[local.weekday(), local.hour] += events
    return dict(cells)


def _split_sessions(events: list[tuple[datetime, Any]]) -> list[list[tuple[datetime, Any]]]:
    """Sessions as the warehouse computes them: a new one after more than 30 minutes without an event."""
    sessions: list[list[tuple[datetime, Any]]] = []
    gap = timedelta(milliseconds=SESSION_TIMEOUT_MS)
    for item in events:
        if not sessions or item[0] - sessions[-1][-1][0] > gap:
            sessions.append([])
        sessions[-1].append(item)
    return sessions


def ground_truth(config: SimulationConfig) -> Truth:
    """The truth of a configuration without sending anything (what `traffic.send` computes while it sends)."""
    truth = Truth(config)
    for requests in generate(config):
        truth.add(requests)
    return truth
