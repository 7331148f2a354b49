"""What EC2 instance types cost now in one region: live, cached for an hour, or the catalog's.

- on-demand: the Pricing API's ``GetProducts`` (Linux, shared tenancy, no pre-installed
  software), asked of its us-east-1 endpoint for the region's ``regionCode``;
- spot: ``DescribeSpotPriceHistory`` from now, per availability zone (the latest price of each
  type in each zone); the zones that offer each type on demand come from
  ``DescribeInstanceTypeOfferings``.

A ``PriceBook`` holds the answers for the types asked about. It is kept for an hour in
``<cache>/prices/<region>.json`` (the cache is under DSTACK_HOME). When the calls cannot be made
— no credentials, no network, a policy that denies them — the book is the catalog's
(``source="catalog"``): on-demand list prices and no zones, a spot price being unknown offline.
``scripts/update_catalog.py`` reads on-demand prices through ``on_demand_prices`` too.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dstack.compute.aws.catalog import Catalog

CACHE_SECONDS = 3600
LIVE = "live"
CATALOG = "catalog"
#: the Pricing API answers from a few regions only; this one serves every region's prices
PRICING_REGION = "us-east-1"
_ON_DEMAND_FILTERS = {
    "operatingSystem": "Linux",
    "tenancy": "Shared",
    "preInstalledSw": "NA",
    "capacitystatus": "Used",
}


@dataclass
class PriceBook:
    region: str
    source: str
    #: instance type → USD per hour on demand
    on_demand: dict[str, float] = field(default_factory=dict)
    #: instance type → {availability zone: USD per hour on spot}
    spot: dict[str, dict[str, float]] = field(default_factory=dict)
    #: instance type → the zones that offer it on demand (live only)
    zones: dict[str, list[str]] = field(default_factory=dict)
    fetched_at: float = 0.0
    #: why the catalog's prices are used (empty when live)
    reason: str = ""
    #: the types asked about (a type the Pricing API does not price has no on-demand entry)
    asked: list[str] = field(default_factory=list)

    def covers(self, names: Iterable[str]) -> bool:
        return set(names) <= set(self.asked)


def price_book(
    region: str | None,
    names: list[str],
    catalog: Catalog,
    *,
    profile: str | None = None,
    now: float | None = None,
) -> PriceBook:
    """Live prices of ``names`` in ``region`` (cached an hour), else the catalog's."""
    now = time.time() if now is None else now
    if not region or os.environ.get("DSTACK_OFFLINE_PRICES"):
        why = "no region" if not region else "DSTACK_OFFLINE_PRICES is set"
        return catalog_book(region or "", names, catalog, why)
    cached = _read_cache(region, now)
    if cached is not None and cached.covers(names):
        return cached
    try:
        live = fetch_live(region, names, profile=profile)
    except Exception as exc:  # no credentials, denied, unreachable: the catalog answers
        return catalog_book(region, names, catalog, _why(exc))
    live.fetched_at = now
    live.asked = sorted(names)
    if cached is not None:  # keep what an earlier plan fetched for other types
        live.on_demand = {**cached.on_demand, **live.on_demand}
        live.spot = {**cached.spot, **live.spot}
        live.zones = {**cached.zones, **live.zones}
        live.asked = sorted({*cached.asked, *names})
        live.fetched_at = min(now, cached.fetched_at)
    _write_cache(live)
    return live


def catalog_book(region: str, names: list[str], catalog: Catalog, reason: str) -> PriceBook:
    by_name = {t.name: t for t in catalog.types}
    prices = {name: by_name[name].price for name in names if name in by_name}
    return PriceBook(region=region, source=CATALOG, on_demand=prices, reason=reason)


def fetch_live(region: str, names: list[str], *, profile: str | None = None) -> PriceBook:
    """Ask AWS; raises whatever boto3 raises (the caller falls back to the catalog)."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(profile_name=profile, region_name=region)
    if session.get_credentials() is None:  # before loading any client's model: the plan is
        raise LookupError("no AWS credentials")  # offline for a user without an account
    config = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5)
    pricing = session.client("pricing", region_name=PRICING_REGION, config=config)
    ec2 = session.client("ec2", config=config)
    on_demand = on_demand_prices(pricing, region, names)
    return PriceBook(
        region=region,
        source=LIVE,
        on_demand=on_demand,
        spot=spot_prices(ec2, names),
        zones=on_demand_zones(ec2, names),
    )


def on_demand_prices(client: Any, region: str, names: Iterable[str]) -> dict[str, float]:
    """USD per hour of each type the Pricing API prices in ``region`` (one call per type)."""
    prices = {}
    for name in names:
        filters = {"instanceType": name, "regionCode": region, **_ON_DEMAND_FILTERS}
        response = client.get_products(
            ServiceCode="AmazonEC2",
            Filters=[{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in filters.items()],
            MaxResults=10,
        )
        for raw in response.get("PriceList", []):
            product = json.loads(raw) if isinstance(raw, str) else raw
            price = _on_demand_price(product)
            if price:
                prices[name] = price
                break
    return prices


def spot_prices(ec2: Any, names: list[str]) -> dict[str, dict[str, float]]:
    """The current spot price of each type in each zone that offers it."""
    import datetime

    latest: dict[tuple[str, str], tuple[Any, float]] = {}
    paginator = ec2.get_paginator("describe_spot_price_history")
    pages = paginator.paginate(
        InstanceTypes=names,
        ProductDescriptions=["Linux/UNIX", "Linux/UNIX (Amazon VPC)"],
        StartTime=datetime.datetime.now(datetime.UTC),
    )
    for page in pages:
        for item in page.get("SpotPriceHistory", []):
            key = (item["InstanceType"], item["AvailabilityZone"])
            stamp = item.get("Timestamp")
            if key not in latest or (stamp is not None and stamp > latest[key][0]):
                latest[key] = (stamp, float(item["SpotPrice"]))
    result: dict[str, dict[str, float]] = {}
    for (name, zone), (_, price) in sorted(latest.items()):
        result.setdefault(name, {})[zone] = price
    return result


def on_demand_zones(ec2: Any, names: list[str]) -> dict[str, list[str]]:
    zones: dict[str, set[str]] = {}
    paginator = ec2.get_paginator("describe_instance_type_offerings")
    pages = paginator.paginate(
        LocationType="availability-zone",
        Filters=[{"Name": "instance-type", "Values": names}],
    )
    for page in pages:
        for item in page.get("InstanceTypeOfferings", []):
            zones.setdefault(item["InstanceType"], set()).add(item["Location"])
    return {name: sorted(found) for name, found in zones.items()}


def cache_path(region: str) -> Path:
    from dstack.settings import cache_dir

    return cache_dir() / "prices" / f"{region}.json"


def _read_cache(region: str, now: float) -> PriceBook | None:
    try:
        data = json.loads(cache_path(region).read_text())
        book = PriceBook(**data)
    except (OSError, ValueError, TypeError):
        return None
    if book.source != LIVE or not 0 <= now - book.fetched_at < CACHE_SECONDS:
        return None
    return book


def _write_cache(book: PriceBook) -> None:
    path = cache_path(book.region)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(asdict(book), sort_keys=True))
        os.replace(temporary, path)
    except OSError:
        return  # a cache that cannot be written only costs a lookup next time


def _on_demand_price(product: dict[str, Any]) -> float | None:
    for term in product.get("terms", {}).get("OnDemand", {}).values():
        for dimension in term.get("priceDimensions", {}).values():
            value = float(dimension.get("pricePerUnit", {}).get("USD", "0") or 0)
            if value > 0:
                return value
    return None


def _why(exc: Exception) -> str:
    code = (
        getattr(exc, "response", {}).get("Error", {}).get("Code")
        if hasattr(exc, "response")
        else None
    )
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{code}: {text}" if code else text
