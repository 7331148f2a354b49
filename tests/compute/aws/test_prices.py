"""Live prices (moto's DescribeSpotPriceHistory and instance type offerings per zone; the Pricing
stand-in for GetProducts, which moto lacks), the hour's cache, the catalog when denied, and the
offers a job gets from them: their order under each spot policy and ``max_price``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dstack.compute.aws import prices
from dstack.compute.aws.catalog import Catalog, Request
from dstack.compute.aws.offers import fitting_types, make_offers
from dstack.compute.aws.prices import PriceBook, price_book
from tests.moto_server import MotoServer
from tests.pricing_standin import PricingStandIn, start_pricing

NAMES = ["g4dn.xlarge", "g5.xlarge"]
LIST = {("us-east-1", "g4dn.xlarge"): 0.526, ("us-east-1", "g5.xlarge"): 1.006}


@pytest.fixture
def pricing() -> Iterator[PricingStandIn]:
    standin = start_pricing(LIST)
    try:
        yield standin
    finally:
        standin.stop()


@pytest.fixture
def live_env(
    monkeypatch: pytest.MonkeyPatch,
    moto_server: MotoServer,
    pricing: PricingStandIn,
    tmp_path: Path,
) -> PricingStandIn:
    """boto3's own per-service endpoint variables send EC2 to moto and Pricing to the
    stand-in; the suite's offline switch is lifted; the price cache is this test's own."""
    monkeypatch.delenv("DSTACK_OFFLINE_PRICES", raising=False)
    monkeypatch.setenv("DSTACK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", moto_server.endpoint_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", pricing.endpoint_url)
    return pricing


def test_live_prices_per_zone_cached_for_an_hour(live_env: PricingStandIn) -> None:
    catalog = Catalog.load()
    book = price_book("us-east-1", NAMES, catalog, now=1_000_000.0)
    assert book.source == "live" and book.reason == ""
    assert book.on_demand == {"g4dn.xlarge": 0.526, "g5.xlarge": 1.006}
    # moto answers the spot price history per zone of its real offerings data
    spot_zones = set(book.spot["g4dn.xlarge"])
    assert spot_zones and all(zone.startswith("us-east-1") for zone in spot_zones)
    assert set(book.zones["g5.xlarge"]) <= {f"us-east-1{z}" for z in "abcdef"}
    assert live_env.calls == 2  # one GetProducts per type
    assert prices.cache_path("us-east-1").exists()

    again = price_book("us-east-1", NAMES, catalog, now=1_000_000.0 + 3599)
    assert again.source == "live" and again.on_demand == book.on_demand
    assert live_env.calls == 2  # from the cache
    later = price_book("us-east-1", NAMES, catalog, now=1_000_000.0 + 3601)
    assert later.source == "live" and live_env.calls == 4  # an hour on: asked again


def test_denied_pricing_falls_back_to_the_catalog(
    live_env: PricingStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    live_env.denied = True
    catalog = Catalog.load()
    book = price_book("us-east-1", NAMES, catalog)
    assert book.source == "catalog"
    assert "AccessDeniedException" in book.reason
    shipped = {t.name: t.price for t in catalog.types}
    assert book.on_demand == {name: shipped[name] for name in NAMES}
    assert not prices.cache_path("us-east-1").exists()  # a fallback is never cached


def _live_book() -> PriceBook:
    return PriceBook(
        region="us-east-1",
        source="live",
        on_demand={"g4dn.xlarge": 0.526, "g5.xlarge": 1.006},
        spot={
            "g4dn.xlarge": {"us-east-1a": 0.30, "us-east-1b": 0.21},
            "g5.xlarge": {"us-east-1a": 0.45},
        },
        zones={"g4dn.xlarge": ["us-east-1a", "us-east-1b"], "g5.xlarge": ["us-east-1a"]},
    )


def _gpu_types() -> list:
    return fitting_types(Catalog.load(), Request(cpu=2, memory_mib=8192, gpu_count=1))


def test_auto_tries_every_spot_offer_then_on_demand_cheapest_first() -> None:
    types = [t for t in _gpu_types() if t.name in ("g4dn.xlarge", "g5.xlarge")]
    offers = make_offers(types, _live_book(), policy="auto")
    assert [(o.instance_type, o.market, o.availability_zone, o.price_per_hour) for o in offers] == [
        ("g4dn.xlarge", "spot", "us-east-1b", 0.21),
        ("g4dn.xlarge", "spot", "us-east-1a", 0.30),
        ("g5.xlarge", "spot", "us-east-1a", 0.45),
        ("g4dn.xlarge", "on-demand", "us-east-1a", 0.526),
        ("g4dn.xlarge", "on-demand", "us-east-1b", 0.526),
        ("g5.xlarge", "on-demand", "us-east-1a", 1.006),
    ]
    on_demand = make_offers(types, _live_book(), policy="on-demand")
    assert {o.market for o in on_demand} == {"on-demand"}
    spot = make_offers(types, _live_book(), policy="spot", max_price=0.25)
    assert [(o.instance_type, o.availability_zone) for o in spot] == [("g4dn.xlarge", "us-east-1b")]
    assert make_offers(types, _live_book(), policy="on-demand", max_price=0.5) == []


def test_offline_spot_is_priced_at_on_demand_in_any_zone() -> None:
    catalog = Catalog.load()
    types = _gpu_types()
    book = prices.catalog_book("us-east-1", [t.name for t in types], catalog, "offline")
    offers = make_offers(types, book, policy="auto")
    first = offers[0]
    assert (first.market, first.availability_zone) == ("spot", None)
    assert first.price_per_hour == min(t.price for t in types if t.spot)
    assert offers[len(offers) // 2].market == "on-demand"
