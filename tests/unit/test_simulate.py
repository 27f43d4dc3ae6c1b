"""The traffic simulator: determinism, the behaviours of a real shop, and a ground truth recomputed here."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import urlsplit

import pytest

from clickstream import contract
from clickstream.shop import catalogue, simulate
from clickstream.shop.simulate import SimulationConfig
from clickstream.analytics.transform import classify_user_agent

START = date(2026, 11, 16)  # a Monday
MS = timedelta(milliseconds=1)


@pytest.fixture(scope="module")
def config() -> SimulationConfig:
    return SimulationConfig(start=START, days=14, visitors=3000, seed=42)


@pytest.fixture(scope="module")
def visitors(config) -> list[list[simulate.Request]]:
    return list(simulate.generate(config))


@pytest.fixture(scope="module")
def truth(config, visitors) -> dict:
    truth = simulate.Truth(config)
    for requests in visitors:
        truth.add(requests)
    return truth.as_dict()


@pytest.fixture(scope="module")
def accepted(config, visitors) -> list[dict]:
    """Each valid event once (first sent copy), with its time as the warehouse computes it, recomputed here."""
    seen, events = set(), []
    for requests in visitors:
        for request in sorted(requests, key=lambda r: r.sent_ms):
            received = datetime(1970, 1, 1, tzinfo=timezone.utc) + request.sent_ms * MS
            for event in request.events:
                if contract.validate_event(event) or event["event_id"] in seen:
                    continue
                seen.add(event["event_id"])
                client = datetime.fromisoformat(event["client_ts"])
                sent = datetime.fromisoformat(event["sent_ts"])
                events.append({**event, "at": received - (sent - client), "received": received,
                               "bot": request.visitor >= config.visitors, "user_agent": request.user_agent})
    return events


def humans(accepted):
    return [event for event in accepted if not event["bot"]]


def sessions_of(events) -> list[list[dict]]:
    """30-minute sessions per client_id, computed independently of simulate._split_sessions."""
    by_client = defaultdict(list)
    for event in events:
        by_client[event["client_id"]].append(event)
    sessions = []
    for client_events in by_client.values():
        client_events.sort(key=lambda e: e["at"])
        current = [client_events[0]]
        for previous, event in zip(client_events, client_events[1:]):
            if event["at"] - previous["at"] > timedelta(minutes=30):
                sessions.append(current)
                current = []
            current.append(event)
        sessions.append(current)
    return sessions


def as_bytes(visitors) -> bytes:
    return "\n".join(contract.dumps([r.sent_ms, r.user_agent, r.source_ip, r.request_id, str(r.object_id), r.retry_of,
                                     list(r.events)]) for requests in visitors for r in requests).encode()


# --- determinism -------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_requests_and_truth_and_another_seed_does_not():
    small = SimulationConfig(start=START, days=2, visitors=150, seed=7)
    first, second = list(simulate.generate(small)), list(simulate.generate(small))
    assert as_bytes(first) == as_bytes(second)
    assert simulate.ground_truth(small).dumps() == simulate.ground_truth(small).dumps()
    other = SimulationConfig(start=START, days=2, visitors=150, seed=8)
    assert as_bytes(list(simulate.generate(other))) != as_bytes(first)
    assert simulate.ground_truth(other).dumps() != simulate.ground_truth(small).dumps()


def test_visitor_ranges_give_the_same_requests_as_the_whole_run():
    small = SimulationConfig(start=START, days=2, visitors=150, seed=7)
    whole = list(simulate.generate(small))
    total = small.visitors + small.bots
    parts = [list(simulate.generate(small, range(lo, min(lo + 40, total)))) for lo in range(0, total, 40)]
    assert as_bytes([visitor for part in parts for visitor in part]) == as_bytes(whole)
    with pytest.raises(ValueError, match="outside"):
        list(simulate.generate(small, [total]))


def test_default_start_is_the_days_ending_yesterday():
    assert simulate.default_start(7, today=date(2026, 11, 23)) == START
    with pytest.raises(ValueError):
        SimulationConfig(start=START, days=0)


# --- shape of the traffic ----------------------------------------------------------------------------------


def test_weekdays_are_busier_than_weekends_and_evenings_than_nights(accepted):
    per_day = Counter(event["at"].date() for event in humans(accepted))
    weekday = [n for day, n in per_day.items() if day.weekday() < 5]
    weekend = [n for day, n in per_day.items() if day.weekday() >= 5]
    assert len(weekday) == 10 and len(weekend) == 4
    assert sum(weekday) / len(weekday) > 1.2 * sum(weekend) / len(weekend)
    per_hour = Counter(event["at"].hour for event in humans(accepted))
    assert min(per_hour[h] for h in (19, 20, 21)) > 3 * max(per_hour[h] for h in (2, 3, 4, 5))


def test_product_popularity_is_skewed(accepted):
    views = Counter(e["product"]["id"] for e in humans(accepted) if e["event_name"] == "product_view")
    ranked = [n for _, n in views.most_common()]
    assert len(ranked) == len(catalogue.products())  # every product is seen ...
    assert sum(ranked[:7]) > 0.4 * sum(ranked)  # ... but the top 10% get the most views
    assert ranked[0] > 10 * ranked[-1]


def test_funnel_rates_are_realistic(truth):
    steps = [step["sessions"] for step in truth["funnel"]]
    assert [step["step"] for step in truth["funnel"]] == ["product_view", "add_to_cart", "begin_checkout", "purchase"]
    assert steps[1] > 300  # a large enough sample for the ranges below
    assert 0.07 <= steps[1] / steps[0] <= 0.13
    assert 0.40 <= steps[2] / steps[1] <= 0.60
    assert 0.55 <= steps[3] / steps[2] <= 0.78


def test_returning_visitors_signed_in_users_and_traffic_sources(accepted, config):
    events = humans(accepted)
    sessions = sessions_of(events)
    per_visitor = Counter(session[0]["client_id"] for session in sessions)
    returning = sum(n > 1 for n in per_visitor.values()) / len(per_visitor)
    assert len(per_visitor) == config.visitors and 0.25 <= returning <= 0.55
    signed_in = [s for s in sessions if any(e["user_id"] for e in s)]
    assert 0.15 <= len(signed_in) / len(sessions) <= 0.4
    for event in events:
        assert (event["user_login_state"] == "logged_in") == (event["user_id"] is not None)
    shoppers = {simulate.shopper_email(n) for n in range(simulate.SIMULATED_SHOPPERS)}
    claimed = Counter(event["user_id"] for event in events if event["user_id"])
    assert set(claimed) <= shoppers and len(claimed) > simulate.SIMULATED_SHOPPERS / 2
    sources = Counter((e["utm"] or {}).get("source") and (e["utm"]["source"], e["utm"]["medium"]) for e in events)
    assert set(sources) == {None, ("google", "cpc"), ("newsletter", "email"), ("facebook", "social")}


def test_bots_are_crawlers_for_the_warehouse_and_humans_are_not(visitors, config):
    for requests in visitors:
        for request in requests:
            is_bot, device = classify_user_agent(request.user_agent)
            assert is_bot == (request.visitor >= config.visitors), request.user_agent
            assert device == "bot" if is_bot else device in ("desktop", "mobile", "tablet")


def test_bots_view_many_pages_fast(accepted):
    bot_sessions = sessions_of([e for e in accepted if e["bot"]])
    human_sessions = sessions_of(humans(accepted))
    assert bot_sessions and all(len(s) >= 16 for s in bot_sessions)
    assert sum(map(len, bot_sessions)) / len(bot_sessions) > 5 * sum(map(len, human_sessions)) / len(human_sessions)
    assert all(b["at"] - a["at"] <= timedelta(seconds=5) for s in bot_sessions for a, b in zip(s, s[1:]))


# --- the invariants the warehouse relies on ----------------------------------------------------------------


def test_simulated_sessions_are_the_warehouse_sessions(accepted, config):
    window = (datetime(2026, 11, 16, tzinfo=timezone.utc), datetime(2026, 11, 30, tzinfo=timezone.utc))
    by_session = defaultdict(list)
    for event in accepted:
        by_session[(event["client_id"], event["session_id"])].append(event)
        assert window[0] <= event["at"] < window[1] and window[0] <= event["received"] < window[1]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)", event["client_ts"])
    for events in by_session.values():
        events.sort(key=lambda e: e["at"])
        assert all(MS <= b["at"] - a["at"] <= timedelta(minutes=20) for a, b in zip(events, events[1:]))
    per_client = defaultdict(list)
    for (client, _), events in by_session.items():
        per_client[client].append((events[0]["at"], events[-1]["at"]))
    for spans in per_client.values():
        spans.sort()
        assert all(b[0] - a[1] >= timedelta(minutes=45) for a, b in zip(spans, spans[1:]))
    assert len(sessions_of(accepted)) == len(by_session)


def test_retries_resend_the_same_event_ids_later(visitors):
    retries = 0
    for requests in visitors:
        by_id = {r.request_id: r for r in requests}
        for request in requests:
            if request.retry_of:
                retries += 1
                original = by_id[request.retry_of]
                assert [e["event_id"] for e in request.events] == [e["event_id"] for e in original.events]
                assert [e["client_ts"] for e in request.events] == [e["client_ts"] for e in original.events]
                assert request.sent_ms >= original.sent_ms and request.object_id != original.object_id
    assert retries > 100


def test_late_events_are_sent_hours_after_they_happened(accepted, truth):
    late = [e for e in accepted if e["received"] - e["at"] >= timedelta(hours=1)]
    assert len(late) == truth["late_events"] > 50
    for event in late:
        delay = datetime.fromisoformat(event["sent_ts"]) - datetime.fromisoformat(event["client_ts"])
        assert timedelta(hours=1) <= delay <= timedelta(hours=30, seconds=10)


def test_malformed_events_are_rejected_by_the_contract(visitors, truth):
    reasons = Counter()
    sent = 0
    for requests in visitors:
        for request in requests:
            for event in request.events:
                sent += 1
                normalized, errors = contract.normalize_event(event, request.received_at)
                if normalized is None:
                    reasons[re.sub(r"[:\[].*", "", errors[0])] += 1
    assert sum(reasons.values()) == truth["malformed_sent"] and 0 < truth["malformed_sent"] < 0.02 * sent
    assert {"$.client_ts", "$.product.price", "$.event_name", "$"} <= set(reasons)  # "$": client_id missing


def test_events_match_the_catalogue_and_the_purchase_rules(accepted):
    products = {p["id"]: p for p in catalogue.products()}
    orders = defaultdict(list)
    for event in accepted:
        product = event["product"]
        if product:
            assert product == products[product["id"]]
        if event["event_name"] == "product_view":
            assert event["page_type"] == "product" and urlsplit(event["page_url"]).path == product["url_path"]
        if event["event_name"] == "purchase":
            assert event["value"] == catalogue.unit_price(product) * event["quantity"] and event["currency"] == "USD"
            orders[event["order_id"]].append(product["id"])
    assert orders and all(len(ids) == len(set(ids)) for ids in orders.values())
    assert any(len(ids) > 1 for ids in orders.values())


# --- the ground truth --------------------------------------------------------------------------------------


def test_truth_equals_counts_recomputed_from_the_accepted_events(accepted, truth, config):
    events, bots = humans(accepted), [e for e in accepted if e["bot"]]
    counts = defaultdict(Counter)
    hourly = Counter()
    products = defaultdict(lambda: {"views": 0, "add_to_cart": 0, "purchases": 0, "revenue": Decimal(0)})
    for event in events:
        counts[event["at"].strftime("%Y-%m-%d")][event["event_name"]] += 1
        hourly[event["at"].strftime("%Y-%m-%dT%H")] += 1
        name, product = event["event_name"], event["product"]
        if name in ("product_view", "add_to_cart", "purchase"):
            products[product["id"]][{"product_view": "views", "add_to_cart": "add_to_cart",
                                     "purchase": "purchases"}[name]] += 1
            products[product["id"]]["revenue"] += event.get("value") or 0
    sessions = sessions_of(events)
    funnel = [0, 0, 0, 0]
    for session in sessions:
        after = datetime.min.replace(tzinfo=timezone.utc)
        for k, step in enumerate(simulate.FUNNEL_STEPS):
            times = [e["at"] for e in session if e["event_name"] == step and e["at"] > after]
            if not times:
                break
            after = min(times)
            funnel[k] += 1
    assert truth["events"] == len(events)
    assert truth["event_counts"] == {day: dict(c) for day, c in counts.items()}
    assert truth["hourly_utc"] == dict(hourly)
    assert truth["funnel"] == [{"step": s, "sessions": n} for s, n in zip(simulate.FUNNEL_STEPS, funnel)]
    assert truth["products"] == {pid: {**c, "revenue": f"{c['revenue']:.2f}"} for pid, c in products.items()}
    assert truth["sessions"] == {
        "sessions": len(sessions), "bounces": sum(len(s) == 1 for s in sessions), "visitors": config.visitors,
        "signed_in_sessions": sum(any(e["user_id"] for e in s) for s in sessions)}
    assert truth["bots"] == {"sessions": len(sessions_of(bots)), "events": len(bots)}
    sent_valid = sum(1 for requests in simulate.generate(config) for r in requests for e in r.events
                     if not contract.validate_event(e))
    assert truth["duplicates_sent"] == sent_valid - len(accepted) > 0
    assert (truth["seed"], truth["start"], truth["days"], truth["visitors"]) == (42, "2026-11-16", 14, 3000)


def report_from_truth(truth: dict) -> dict:
    """A report shaped like analytics.report's that gives exactly the truth's answers."""
    return {
        "daily_event_counts": truth["event_counts"],
        "funnel": [{**step, "conversion": None, "drop_off": None} for step in truth["funnel"]],
        "top_products": [{"product_id": pid, "product_name": "x", **counts} for pid, counts in truth["products"].items()],
        "sessions": {**truth["sessions"], "bounce_rate": 0.1},
    }


def test_report_mismatches_is_empty_for_the_truth_and_names_each_difference(truth):
    report = report_from_truth(truth)
    assert simulate.report_mismatches(report, truth) == []
    report["funnel"][-1]["sessions"] += 1
    report["top_products"][0]["revenue"] = "0.01"
    mismatches = simulate.report_mismatches(report, truth)
    assert [line.split(":")[0] for line in mismatches] == ["funnel", "products"]
