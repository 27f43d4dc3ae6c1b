"""The NAT vs VPC endpoints cost model: its arithmetic against hand-computed figures, and its price data."""

from __future__ import annotations

import re
from datetime import date

import pytest

from clickstream.infra import cost


def test_nat_gateway_month_by_hand():
    # us-east-1, 1 NAT: 730 h x 0.045 = 32.85; its IPv4 730 h x 0.005 = 3.65; (100 + 10) GB x 0.045 = 4.95
    rows = cost.nat_gateway_monthly(s3_gb=100, api_gb=10)
    assert [r["monthly_usd"] for r in rows] == [32.85, 3.65, 0.45, 4.5]
    assert cost.totals(rows) == {"NAT gateway": 41.45}


def test_vpc_endpoints_month_by_hand():
    # 4 interface endpoints x 2 AZs x 730 h x 0.01 = 58.40; 10 GB x 0.01 = 0.10; the S3 gateway endpoint: 0
    rows = cost.vpc_endpoints_monthly(s3_gb=100, api_gb=10)
    assert cost.totals(rows) == {"VPC endpoints": 58.5}
    assert next(r for r in rows if r["unit"] == "AZ-hour")["quantity"] == 5840


def test_compare_and_break_even_by_hand():
    # 2,000 GB S3: NAT 32.85 + 3.65 + 2,010 x 0.045 = 126.95; NAT + S3 endpoint 36.50 + 0.45 = 36.95
    assert cost.totals(cost.compare(2000, 10)) == {"NAT gateway": 126.95, "NAT gateway + S3 gateway endpoint": 36.95,
                                                  "VPC endpoints": 58.5}
    # endpoints 58.40 vs NAT 36.50 + 0.045 x GB: equal at 21.90 / 0.045 = 486.7 GB
    assert cost.break_even_s3_gb() == 486.7


def test_singapore_prices_and_two_nat_gateways():
    # ap-southeast-1, a NAT per AZ: 2 x 730 x (0.059 + 0.005) = 93.44; 50 GB x 0.059 = 2.95
    assert cost.totals(cost.nat_gateway_monthly(50, 0, "ap-southeast-1", nat_gateways=2)) == {"NAT gateway": 96.39}
    # 8 AZ-endpoints x 730 x 0.013 = 75.92
    assert cost.totals(cost.vpc_endpoints_monthly(50, 0, "ap-southeast-1")) == {"VPC endpoints": 75.92}


def test_unknown_region_and_negative_traffic_are_refused():
    with pytest.raises(cost.CostError, match="no prices for eu-west-9"):
        cost.prices("eu-west-9")
    with pytest.raises(cost.CostError, match="s3_gb must not be negative"):
        cost.nat_gateway_monthly(-1, 0)


def test_price_data_names_its_sources_date_and_every_price():
    data = cost.price_data()
    assert data["currency"] == "USD" and data["hours_per_month"] == 730
    assert date.fromisoformat(data["read_on"]) <= date.today()
    assert all(re.fullmatch(r"https://(aws\.amazon\.com|docs\.aws\.amazon\.com)/\S+", url) for url in data["sources"].values())
    assert {"us-east-1", "ap-southeast-1"} <= set(data["regions"])
    for region, entry in data["regions"].items():
        assert set(cost.PRICE_FIELDS) <= set(entry), region
        assert all(isinstance(entry[name], (int, float)) and entry[name] >= 0 for name in cost.PRICE_FIELDS)
        assert entry["gateway_endpoint_hour"] == entry["gateway_endpoint_gb"] == 0  # the S3 gateway endpoint is free
