"""What each cloud job starts on, and the most a run can cost: offers, duration, budget.

``choose`` turns a job into a ``JobChoice``: the request its resources make, the spot policy
in force (``spot_policy``, else spot for ``interruptible``, else on-demand), its ordered offers
(``offers``) priced by a ``prices.PriceBook``, and how long its instance may live
(``max_duration``, at most the config's bound: the instance powers itself off then). The first
offer is the one a run starts on. A run's worst case is ``max_cost`` = Σ price × hours over its
nodes; ``check_budget`` refuses a run whose worst case exceeds the config's ``budget``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dstack.compute.aws.catalog import Catalog, Request
from dstack.compute.aws.offers import Offer, fitting_types, make_offers, no_offer_message
from dstack.compute.aws.prices import PriceBook
from dstack.errors import ComputeError
from dstack.models import JobSpec
from dstack.store_config import AwsComputeConfig

PriceLookup = Callable[[list[str]], PriceBook]


@dataclass
class JobChoice:
    job: JobSpec
    request: Request
    policy: str
    offers: list[Offer]
    book: PriceBook
    max_duration_seconds: int

    @property
    def offer(self) -> Offer:
        """The offer the job starts on."""
        return self.offers[0]

    @property
    def hours(self) -> float:
        return self.max_duration_seconds / 3600

    @property
    def max_cost(self) -> float:
        """The most this node can cost: its price for its whole allowed time."""
        return self.offer.price_per_hour * self.hours


def choose(
    config: AwsComputeConfig,
    catalog: Catalog,
    job: JobSpec,
    request: Request,
    prices: PriceLookup | None = None,
) -> JobChoice:
    """The job's offers; ComputeError when no type fits, max_price leaves none, or
    max_duration exceeds the config's bound. ``prices`` defaults to ``prices.price_book`` in
    the request's region."""
    if prices is None:
        from dstack.compute.aws.prices import price_book

        def prices(names: list[str]) -> PriceBook:
            return price_book(request.region, names, catalog, profile=config.profile)

    policy = job.spot_policy or ("spot" if job.resources.interruptible else "on-demand")
    where = f"workflow '{job.workflow}'"
    try:
        types = fitting_types(catalog, request)
    except ComputeError as exc:
        raise ComputeError(f"{where}: {exc}") from None
    duration = job_duration(config, job)
    book = prices([t.name for t in types])
    offers = make_offers(types, book, policy=policy, max_price=job.max_price)
    if not offers:
        if job.max_price is not None:
            raise ComputeError(no_offer_message(job.workflow, types, book, policy, job.max_price))
        raise ComputeError(
            f"{where}: no type that fits is offered {policy} in {book.region or 'the region'} "
            f"({', '.join(t.name for t in types)}); try another spot_policy"
        )
    return JobChoice(job, request, policy, offers, book, duration)


def job_duration(config: AwsComputeConfig, job: JobSpec) -> int:
    """Seconds the job's instance may live: its ``max_duration``, else the config's bound."""
    bound = config.max_duration_seconds
    if job.max_duration is None:
        return bound
    if job.max_duration > bound:
        raise ComputeError(
            f"workflow '{job.workflow}': max_duration {hours_text(job.max_duration)} is longer "
            f"than the config's bound of {hours_text(bound)}: ask for less, or raise "
            "compute.max_duration_hours in the config"
        )
    return int(job.max_duration)


def run_max_cost(choices: list[JobChoice]) -> float:
    return sum(choice.max_cost for choice in choices)


def cost_arithmetic(choices: list[JobChoice]) -> str:
    """``$3.06/h × 2 nodes × 2h = $12.24``, or a sum of such terms when nodes differ."""
    groups: dict[tuple[float, float], int] = {}
    for choice in choices:
        key = (choice.offer.price_per_hour, choice.hours)
        groups[key] = groups.get(key, 0) + 1
    terms = [
        f"${price:.4g}/h × {count} node{'s' if count != 1 else ''} × {hours_text(hours * 3600)}"
        for (price, hours), count in groups.items()
    ]
    return f"{' + '.join(terms)} = ${run_max_cost(choices):,.2f}"


def check_budget(
    config: AwsComputeConfig, choices: list[JobChoice], *, spent_this_month: float | None
) -> None:
    """ComputeError, with the arithmetic, when the run's worst case exceeds a budget:
    ``per_run``, or what is left of ``per_user_month`` (``spent_this_month`` is what the
    user's earlier runs of the month are counted at)."""
    budget = config.budget
    if budget is None or not choices:
        return
    worst = run_max_cost(choices)
    arithmetic = cost_arithmetic(choices)
    if budget.per_run is not None and worst > budget.per_run:
        raise ComputeError(
            f"this run may cost up to {arithmetic}, over the budget of ${budget.per_run:,.2f} "
            "per run (compute.budget.per_run): lower max_duration or max_price, or ask for less"
        )
    if budget.per_user_month is not None and spent_this_month is not None:
        left = max(0.0, budget.per_user_month - spent_this_month)
        if worst > left:
            raise ComputeError(
                f"this run may cost up to {arithmetic}, more than the ${left:,.2f} left of your "
                f"monthly budget (${budget.per_user_month:,.2f} − ${spent_this_month:,.2f} "
                "counted for your earlier runs this month; compute.budget.per_user_month): "
                "lower max_duration or max_price, or wait for next month"
            )


def hours_text(seconds: float) -> str:
    hours = seconds / 3600
    if hours >= 1 and float(hours).is_integer():
        return f"{int(hours)}h"
    if hours >= 1:
        return f"{hours:.2f}h"
    return f"{seconds / 60:.0f}m"
