"""A job's offers: the (instance type, market, zone, price) it could run on, in the order tried.

The types come from the catalog: every type that meets the job's request (``catalog.shortfalls``
names what one lacks), the ``MAX_TYPES`` cheapest by list price. Each is priced by a
``prices.PriceBook``: live, an offer per zone that offers it (spot: that zone's spot price;
on-demand: the region's price); from the catalog, one offer per market with no zone, a spot
offer priced at the on-demand price (the most a spot instance costs: dstack's spot requests are
capped there) since a spot price is not known offline.

The spot policy chooses the markets: ``spot`` (spot offers only), ``on-demand``, or ``auto``
(every spot offer first, then every on-demand one). Within a market the cheapest comes first.
``max_price`` (USD per hour per node) drops dearer offers; none left is a ``ComputeError``.
"""

from __future__ import annotations

from dataclasses import dataclass

from dstack.compute.aws.catalog import Catalog, InstanceType, Request, shortfalls
from dstack.compute.aws.prices import PriceBook
from dstack.errors import ComputeError

SPOT = "spot"
ON_DEMAND = "on-demand"
AUTO = "auto"
SPOT_POLICIES = (SPOT, ON_DEMAND, AUTO)
#: how many fitting types (the cheapest by list price) a job's offers are made of
MAX_TYPES = 8


@dataclass(frozen=True)
class Offer:
    instance: InstanceType
    market: str
    #: None when the prices are the catalog's (any zone of the configured subnet/VPC)
    availability_zone: str | None
    price_per_hour: float

    @property
    def instance_type(self) -> str:
        return self.instance.name

    def as_dict(self) -> dict[str, object]:
        return {
            "instance_type": self.instance.name,
            "market": self.market,
            "availability_zone": self.availability_zone,
            "price_per_hour": self.price_per_hour,
        }

    def describe(self) -> str:
        zone = self.availability_zone or "any zone"
        return f"{self.instance.name} {self.market} in {zone} at ${self.price_per_hour:.4g}/h"


def markets(policy: str) -> tuple[str, ...]:
    """The markets a policy tries, in order."""
    if policy == AUTO:
        return (SPOT, ON_DEMAND)
    if policy in (SPOT, ON_DEMAND):
        return (policy,)
    raise ComputeError(f"spot_policy {policy!r}: use one of {', '.join(SPOT_POLICIES)}")


def fitting_types(catalog: Catalog, request: Request) -> list[InstanceType]:
    """The ``MAX_TYPES`` cheapest catalog types that meet the request (spot aside: the market
    is the policy's business), cheapest first; ComputeError naming the closest if none."""
    plain = Request(**{**request.__dict__, "spot": False})
    fitting = [t for t in catalog.types if not shortfalls(t, plain)]
    if not fitting:
        raise ComputeError(catalog.no_fit_message(request))
    fitting.sort(key=lambda t: (t.price, t.vcpus, t.name))
    return fitting[:MAX_TYPES]


def make_offers(
    types: list[InstanceType],
    book: PriceBook,
    *,
    policy: str,
    max_price: float | None = None,
) -> list[Offer]:
    """Every offer of ``types`` in the policy's markets, ordered; ``max_price`` applied."""
    ordered: list[Offer] = []
    for market in markets(policy):
        found = [o for t in types for o in _offers_of(t, market, book)]
        found.sort(key=lambda o: (o.price_per_hour, o.instance.name, o.availability_zone or ""))
        ordered.extend(found)
    if max_price is None:
        return ordered
    return [o for o in ordered if o.price_per_hour <= max_price]


def no_offer_message(
    workflow: str, types: list[InstanceType], book: PriceBook, policy: str, max_price: float
) -> str:
    """Why ``max_price`` left nothing: the cheapest offer there was."""
    every = make_offers(types, book, policy=policy)
    cheapest = f"; the cheapest is {every[0].describe()}" if every else ""
    return (
        f"workflow '{workflow}': no {policy} offer costs at most max_price "
        f"${max_price:g}/h{cheapest} ({book.source} prices): raise max_price or ask for less"
    )


def _offers_of(itype: InstanceType, market: str, book: PriceBook) -> list[Offer]:
    if market == SPOT and not itype.spot:
        return []
    if book.source != "live":
        price = book.on_demand.get(itype.name, itype.price)
        return [Offer(itype, market, None, price)]
    if market == SPOT:
        zones = book.spot.get(itype.name, {})
        return [Offer(itype, SPOT, zone, price) for zone, price in sorted(zones.items())]
    price_od = book.on_demand.get(itype.name)
    if price_od is None:
        return []
    zones_od = book.zones.get(itype.name) or [None]  # type: ignore[list-item]
    return [Offer(itype, ON_DEMAND, zone, price_od) for zone in zones_od]
