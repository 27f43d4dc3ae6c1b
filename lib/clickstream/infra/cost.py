"""What the private subnets' way out costs per month: a NAT gateway, or the VPC endpoints this design uses.

The analytics tier (the DW instance and the ETL Lambda in the private subnets) needs S3 (raw events, the
DW bundle, OS packages) and a few AWS APIs (SSM, SSM messages, EC2 messages for Session Manager; Secrets
Manager for the DW password). It gets them either

- through a NAT gateway in a public subnet (and then it also has a route to the whole internet), or
- through VPC endpoints, as cloudformation/network.yaml does: one S3 *gateway* endpoint (free) and four
  *interface* endpoints (ssm, ssmmessages, ec2messages, secretsmanager), each in two AZs.

Assumptions, all in the price data (lib/clickstream/data/aws_prices.json, with the region, the source and
the date the prices were read):
- a month is 730 hours (AWS's own convention: 8,760 h / 12), resources run all month;
- a NAT gateway bills per hour it exists, per GB it processes (both directions, whatever the destination,
  S3 included unless a gateway endpoint takes that traffic) and for its public IPv4 address per hour;
- an interface endpoint bills per AZ it is in, per hour, and per GB it processes (the first-PB tier);
- a gateway endpoint (S3) bills nothing, per hour or per GB;
- left out on both sides: internet egress, cross-AZ transfer, S3 requests and storage (the same for both).

Every function returns rows (DataFrame-friendly dicts): option, item, quantity, unit, unit_price_usd,
monthly_usd. `pandas.DataFrame(rows)` shows them; `totals(rows)` sums per option.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

DEFAULT_REGION = "us-east-1"
INTERFACE_ENDPOINTS = ("ssm", "ssmmessages", "ec2messages", "secretsmanager")  # network.yaml's
AZS = 2
PRICE_FIELDS = ("nat_gateway_hour", "nat_gateway_gb", "public_ipv4_hour", "interface_endpoint_az_hour",
                "interface_endpoint_gb", "gateway_endpoint_hour", "gateway_endpoint_gb")


class CostError(ValueError):
    """A region without prices, or a negative quantity."""


@dataclass(frozen=True)
class RegionPrices:
    region: str
    name: str
    hours_per_month: float
    read_on: str
    sources: dict[str, str]
    nat_gateway_hour: float
    nat_gateway_gb: float
    public_ipv4_hour: float
    interface_endpoint_az_hour: float
    interface_endpoint_gb: float
    gateway_endpoint_hour: float
    gateway_endpoint_gb: float


@lru_cache
def price_data() -> dict[str, Any]:
    return json.loads(resources.files("clickstream").joinpath("data/aws_prices.json").read_text(encoding="utf-8"))


def regions() -> list[str]:
    return sorted(price_data()["regions"])


def prices(region: str = DEFAULT_REGION) -> RegionPrices:
    data = price_data()
    if region not in data["regions"]:
        raise CostError(f"no prices for {region}; known: {', '.join(regions())} (lib/clickstream/data/aws_prices.json)")
    entry = data["regions"][region]
    return RegionPrices(region=region, name=entry["name"], hours_per_month=data["hours_per_month"],
                        read_on=data["read_on"], sources=dict(data["sources"]),
                        **{name: float(entry[name]) for name in PRICE_FIELDS})


def _row(option: str, item: str, quantity: float, unit: str, unit_price: float) -> dict:
    return {"option": option, "item": item, "quantity": quantity, "unit": unit, "unit_price_usd": unit_price,
            "monthly_usd": round(quantity * unit_price, 4)}


def _check(**quantities: float) -> None:
    for name, value in quantities.items():
        if value < 0:
            raise CostError(f"{name} must not be negative ({value})")


def nat_gateway_monthly(s3_gb: float, api_gb: float, region: str = DEFAULT_REGION, nat_gateways: int = 1,
                        s3_gateway_endpoint: bool = False) -> list[dict]:
    """A NAT design: `nat_gateways` NAT gateways (1, or 1 per AZ for availability), each with a public IPv4
    address; all GB through them, except S3's if `s3_gateway_endpoint` (the free S3 endpoint added)."""
    _check(s3_gb=s3_gb, api_gb=api_gb, nat_gateways=nat_gateways)
    p = prices(region)
    option = "NAT gateway" + (" + S3 gateway endpoint" if s3_gateway_endpoint else "")
    hours = nat_gateways * p.hours_per_month
    rows = [
        _row(option, "NAT gateway hours", hours, "hour", p.nat_gateway_hour),
        _row(option, "NAT public IPv4 address hours", hours, "hour", p.public_ipv4_hour),
        _row(option, "NAT data processed (AWS APIs)", api_gb, "GB", p.nat_gateway_gb),
    ]
    if s3_gateway_endpoint:
        rows.append(_row(option, "S3 through the gateway endpoint", s3_gb, "GB", p.gateway_endpoint_gb))
    else:
        rows.append(_row(option, "NAT data processed (S3)", s3_gb, "GB", p.nat_gateway_gb))
    return rows


def vpc_endpoints_monthly(s3_gb: float, api_gb: float, region: str = DEFAULT_REGION,
                          interface_endpoints: int = len(INTERFACE_ENDPOINTS), azs: int = AZS) -> list[dict]:
    """This architecture: the S3 gateway endpoint (free) and `interface_endpoints` interface endpoints in
    `azs` AZs; `api_gb` is the traffic through the interface endpoints (SSM sessions, Secrets Manager)."""
    _check(s3_gb=s3_gb, api_gb=api_gb, interface_endpoints=interface_endpoints, azs=azs)
    p = prices(region)
    option = "VPC endpoints"
    return [
        _row(option, "S3 gateway endpoint hours", p.hours_per_month, "hour", p.gateway_endpoint_hour),
        _row(option, "S3 through the gateway endpoint", s3_gb, "GB", p.gateway_endpoint_gb),
        _row(option, f"interface endpoint AZ-hours ({interface_endpoints} endpoints x {azs} AZs)",
             interface_endpoints * azs * p.hours_per_month, "AZ-hour", p.interface_endpoint_az_hour),
        _row(option, "interface endpoint data processed", api_gb, "GB", p.interface_endpoint_gb),
    ]


def compare(s3_gb: float, api_gb: float, region: str = DEFAULT_REGION, nat_gateways: int = 1) -> list[dict]:
    """The rows of the three designs: NAT only, NAT plus the free S3 gateway endpoint, and this design."""
    return [*nat_gateway_monthly(s3_gb, api_gb, region, nat_gateways),
            *nat_gateway_monthly(s3_gb, api_gb, region, nat_gateways, s3_gateway_endpoint=True),
            *vpc_endpoints_monthly(s3_gb, api_gb, region)]


def totals(rows: list[dict]) -> dict[str, float]:
    """Monthly USD per option, in the rows' order."""
    result: dict[str, float] = {}
    for row in rows:
        result[row["option"]] = round(result.get(row["option"], 0.0) + row["monthly_usd"], 2)
    return result


def break_even_s3_gb(api_gb: float = 0.0, region: str = DEFAULT_REGION, nat_gateways: int = 1) -> float:
    """S3 GB/month above which this design is cheaper than a NAT gateway carrying everything."""
    nat_fixed = totals(nat_gateway_monthly(0, api_gb, region, nat_gateways))["NAT gateway"]
    endpoints = totals(vpc_endpoints_monthly(0, api_gb, region))["VPC endpoints"]
    return max(0.0, round((endpoints - nat_fixed) / prices(region).nat_gateway_gb, 1))
