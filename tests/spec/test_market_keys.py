"""The workflow keys and `dstack run` flags of what a run costs: `spot_policy`, `max_price`,
`max_duration`, `on_demand_after`, and `-i`/`interruptible` meaning spot."""

from __future__ import annotations

from typing import Any

import pytest

from dstack.errors import SpecError
from dstack.spec.loader import parse_workflow
from dstack.spec.overrides import RunOverrides, apply_overrides

SOURCE = ".dstack/workflows.yaml"


def workflow(**keys: Any) -> Any:
    return parse_workflow({"name": "train", "commands": ["echo"], **keys}, source=SOURCE)


def test_keys_parse_and_the_default_market_is_unchanged() -> None:
    plain = workflow()
    assert (plain.spot_policy, plain.market_policy, plain.max_price, plain.max_duration) == (
        None, "on-demand", None, None,
    )  # fmt: skip
    assert workflow(resources={"interruptible": True}).market_policy == "spot"
    keyed = workflow(spot_policy="auto", max_price=1.5, max_duration="2h")
    assert (keyed.market_policy, keyed.max_price, keyed.max_duration) == ("auto", 1.5, 7200)
    assert plain.on_demand_after is None
    assert workflow(on_demand_after=2, spot_policy="spot").on_demand_after == 2


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"spot_policy": "cheap"}, "spot_policy"),
        ({"max_price": 0}, "max_price"),
        ({"max_duration": "soon"}, "max_duration"),
        ({"on_demand_after": 0}, "on_demand_after"),
        ({"on_demand_after": "twice"}, "on_demand_after"),
        ({"on_demand_after": 1.5}, "on_demand_after"),
        ({"spot_policy": "on-demand", "resources": {"interruptible": True}}, "give one of them"),
    ],
)
def test_bad_values_are_one_line(keys: dict[str, Any], expected: str) -> None:
    with pytest.raises(SpecError) as caught:
        workflow(**keys)
    message = str(caught.value)
    assert expected in message and "\n" not in message


def test_flags() -> None:
    auto = workflow(spot_policy="auto")
    assert apply_overrides(auto, RunOverrides(interruptible=True)).market_policy == "spot"
    spot = workflow(resources={"interruptible": True})
    flagged = apply_overrides(spot, RunOverrides(spot_policy="on-demand", max_duration="30m"))
    assert flagged.market_policy == "on-demand" and not flagged.resources.interruptible
    assert flagged.max_duration == 1800
    with pytest.raises(SpecError, match=r"^--max-price: "):
        apply_overrides(spot, RunOverrides(max_price=-1))
    assert apply_overrides(spot, RunOverrides(on_demand_after=2)).on_demand_after == 2
    with pytest.raises(SpecError, match=r"^--on-demand-after: "):
        apply_overrides(spot, RunOverrides(on_demand_after=0))
