"""jsonschema-rs, which the contract validates with, and the pure-Python jsonschema validator give the same verdict
on any input: two independent readings of the schema, so a bug in one shows as a disagreement."""

import json
from decimal import Decimal

from hypothesis import given, settings, strategies as st

from clickstream import contract
from clickstream.shop import samples
from reference_validator import reference_validator

TRICKY = st.sampled_from([
    "2026-11-25T10:00:00Z", "2026-11-25T10:00:00", "2026-02-30T10:00:00+07:00", "2026-11-25T23:59:60Z",
    "2026-11-25t10:00:00.123456789+00:00", "2026-11-25 10:00:00Z", "0b7c6f1e-3f0a-4c8e-9d1f-2a6b5c4d3e2f",
    "0B7C6F1E-3F0A-4C8E-9D1F-2A6B5C4D3E2F", "0b7c6f1e3f0a4c8e9d1f2a6b5c4d3e2f", "purchase", "logged_in", "USD",
    "usd", "", "1e3", "12.345", "-0.01", "x" * 2049, Decimal("1E+3"), Decimal("0.10"), Decimal("-0"), 2**53, 1.5,
])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12), st.text(max_size=300),
    st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-10**9, max_value=10**10),
)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                         max_size=4), max_leaves=12)
VALUES = st.one_of(TRICKY, JSON)
CANONICAL = contract.loads(json.dumps(samples.canonical_event("purchase"), default=str))
LEGACY = contract.loads(json.dumps(samples.legacy_event("checkout_complete")))


def python_verdict(definition, instance) -> bool:
    return not any(True for _ in reference_validator(definition).iter_errors(instance))


def mutated(base: dict, path: list[str], value):
    copy = json.loads(json.dumps(base, default=str), parse_float=Decimal)
    node = copy
    for key in path[:-1]:
        node = node.setdefault(key, {}) if isinstance(node.get(key), dict) else node
    node[path[-1]] = value
    return copy


FIELDS = [[k] for k in CANONICAL] + [["product", k] for k in CANONICAL["product"]] + [["utm", "source"], ["extra"]]
LEGACY_FIELDS = [[k] for k in LEGACY] + [["product", k] for k in LEGACY["product"]]


@settings(max_examples=1500, deadline=None, database=None)
@given(st.sampled_from(FIELDS), VALUES)
def test_same_verdict_on_mutated_canonical_events(path, value):
    event = mutated(CANONICAL, path, value)
    assert contract._fast_validator(None).is_valid(event) == python_verdict(None, event)


@settings(max_examples=200, deadline=None, database=None)
@given(st.sampled_from(LEGACY_FIELDS), VALUES)
def test_same_verdict_on_mutated_legacy_events(path, value):
    event = mutated(LEGACY, path, value)
    assert contract._fast_validator("legacy_event").is_valid(event) == python_verdict("legacy_event", event)


@settings(max_examples=200, deadline=None, database=None)
@given(JSON)
def test_same_verdict_on_arbitrary_json(value):
    assert contract._fast_validator(None).is_valid(value) == python_verdict(None, value)
