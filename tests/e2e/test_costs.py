"""What a run costs, through the `dstack` command as a user types it: the one-V100 plan, the
spot policy and its flags, max_duration and the worst case, max_price and budgets refusing a
run at submit in one line with nothing written, and live prices (moto's spot price history and
offerings, the Pricing stand-in for GetProducts) with the catalog as the fallback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dstack.storage.local import LocalStorage
from tests.e2e.cli import Dstack
from tests.e2e.test_aws_cli import no_aws_env, write_config
from tests.moto_server import DUMMY_AWS_ENV, MotoServer
from tests.pricing_standin import PricingStandIn, start_pricing

WORKFLOWS = """\
workflows:
  - name: v100
    commands: [nvidia-smi]
    max_duration: 2h
    resources:
      gpu: {name: V100, count: 1}
  - name: t4
    commands: [nvidia-smi]
    resources: {gpu: {name: T4}}
"""
AWS = {
    "backend": "aws",
    "aws": {"bucket": "acme-dstack-state", "region": "us-east-1",
            "endpoint_url": "http://127.0.0.1:9"},  # nothing listens: nothing may be sent
    "compute": {"type": "aws"},
}  # fmt: skip


@pytest.fixture
def repo(repo_factory: Any) -> Path:
    return repo_factory({".dstack/workflows.yaml": WORKFLOWS})  # type: ignore[no-any-return]


def plan_json(cli: Dstack, repo: Path, *args: str) -> dict[str, Any]:
    result = cli("run", "--plan", "--json", *args, cwd=repo)
    assert result.code == 0, result.err
    return json.loads(result.out)  # type: ignore[no-any-return]


def test_one_v100_plans_on_p3_2xlarge_with_its_worst_case(dstack_home: Path, repo: Path) -> None:
    cli = Dstack(dstack_home, no_aws_env(dstack_home, AWS_REGION="us-east-1"), whole=True)
    plan = plan_json(cli, repo, "v100")
    [job] = plan["jobs"]
    assert job["instance_type"] == "p3.2xlarge"
    assert job["price_per_hour"] == 3.06 and job["price_source"] == "catalog"
    assert job["offers"][0] == {
        "instance_type": "p3.2xlarge",
        "market": "on-demand",
        "availability_zone": None,
        "price_per_hour": 3.06,
    }
    assert all(o["market"] == "on-demand" for o in job["offers"])  # the default is unchanged
    assert plan["max_cost"] == pytest.approx(6.12)

    text = cli("run", "--plan", "v100", cwd=repo)
    assert text.code == 0, text.err
    assert "max_cost: $3.06/h × 1 node × 2h = $6.12" in text.out
    assert "$3.06/h per node (catalog price" in text.out


def test_spot_policy_key_and_flags(dstack_home: Path, repo: Path) -> None:
    cli = Dstack(dstack_home, no_aws_env(dstack_home, AWS_REGION="us-east-1"), whole=True)
    auto = plan_json(cli, repo, "--spot-policy", "auto", "t4")["jobs"][0]
    markets = [o["market"] for o in auto["offers"]]
    assert markets[0] == "spot" and "on-demand" in markets
    assert markets == sorted(markets, key=lambda m: m != "spot")  # every spot offer first
    assert auto["spot_policy"] == "auto" and auto["market"] == "spot"
    interruptible = plan_json(cli, repo, "-i", "t4")["jobs"][0]
    assert {o["market"] for o in interruptible["offers"]} == {"spot"}
    # 72h, the config's bound, when the workflow sets no max_duration
    default = plan_json(cli, repo, "t4")
    assert default["max_cost"] == pytest.approx(default["jobs"][0]["price_per_hour"] * 72)

    bad = cli("run", "--plan", "--spot-policy", "sometimes", "t4", cwd=repo)
    assert bad.code != 0 and "--spot-policy" in bad.err and "Traceback" not in bad.err


def test_max_price_refuses_at_submit_in_one_line(dstack_home: Path, repo: Path) -> None:
    write_config(dstack_home, AWS)
    cli = Dstack(dstack_home, no_aws_env(dstack_home), whole=True)
    result = cli("run", "--max-price", "1", "v100", cwd=repo)
    assert result.code == 1
    assert result.err.strip().splitlines() == [
        "Error: workflow 'v100': no on-demand offer costs at most max_price $1/h; the cheapest "
        "is p3.2xlarge on-demand in any zone at $3.06/h (catalog prices): raise max_price or "
        "ask for less"
    ]
    assert not (dstack_home / "store").exists() or not list(
        LocalStorage(dstack_home / "store").list_objects("")
    )


def test_per_run_budget_refuses_with_the_arithmetic(dstack_home: Path, repo: Path) -> None:
    write_config(dstack_home, {**AWS, "compute": {"type": "aws", "budget": {"per_run": 100}}})
    # credentials, so that a run within the budget goes on to the (missing) engine
    keys = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    cli = Dstack(dstack_home, no_aws_env(dstack_home, **keys), whole=True)
    plan = cli("run", "--plan", "--max-duration", "40h", "v100", cwd=repo)
    assert plan.code == 0 and "submit refuses this run: this run may cost up to" in plan.out
    allowed = cli("run", "t4", cwd=repo)  # $0.526/h × 72h = $37.87: within the budget
    assert allowed.code == 1 and "Pulumi engine is not installed" in allowed.err
    over = cli("run", "--max-duration", "40h", "v100", cwd=repo)
    assert over.code == 1
    assert over.err.strip().splitlines() == [
        "Error: this run may cost up to $3.06/h × 1 node × 40h = $122.40, over the budget of "
        "$100.00 per run (compute.budget.per_run): lower max_duration or max_price, or ask for "
        "less"
    ]


def test_max_duration_beyond_the_configs_bound_is_refused(dstack_home: Path, repo: Path) -> None:
    cli = Dstack(dstack_home, no_aws_env(dstack_home, AWS_REGION="us-east-1"), whole=True)
    result = cli("run", "--plan", "--max-duration", "100h", "v100", cwd=repo)
    assert result.code == 1
    assert result.err.strip().splitlines() == [
        "Error: workflow 'v100': max_duration 100h is longer than the config's bound of 72h: "
        "ask for less, or raise compute.max_duration_hours in the config"
    ]


@pytest.fixture
def pricing() -> Iterator[PricingStandIn]:
    standin = start_pricing(
        {("us-east-1", "g4dn.xlarge"): 0.526, ("us-east-1", "g4dn.2xlarge"): 0.752}
    )
    try:
        yield standin
    finally:
        standin.stop()


def test_live_prices_in_the_plan_cached_then_catalog_when_denied(
    dstack_home: Path, repo: Path, moto_server: MotoServer, pricing: PricingStandIn
) -> None:
    env = {
        **no_aws_env(dstack_home),
        **DUMMY_AWS_ENV,
        "AWS_ENDPOINT_URL_EC2": moto_server.endpoint_url,
        "AWS_ENDPOINT_URL_PRICING": pricing.endpoint_url,
        "DSTACK_OFFLINE_PRICES": "",  # the suite's switch, lifted
        "DSTACK_CACHE_DIR": str(dstack_home / "cache"),
    }
    cli = Dstack(dstack_home, env)
    job = plan_json(cli, repo, "--spot-policy", "auto", "t4")["jobs"][0]
    assert job["price_source"] == "live"
    spot = [o for o in job["offers"] if o["market"] == "spot"]
    assert spot and all(o["availability_zone"].startswith("us-east-1") for o in spot)
    on_demand = [o for o in job["offers"] if o["market"] == "on-demand"]
    assert {o["price_per_hour"] for o in on_demand if o["instance_type"] == "g4dn.xlarge"} == {
        0.526
    }
    assert (dstack_home / "cache" / "prices" / "us-east-1.json").exists()
    calls = pricing.calls

    again = plan_json(cli, repo, "--spot-policy", "auto", "t4")["jobs"][0]
    assert again["price_source"] == "live" and pricing.calls == calls  # within the hour: cached

    (dstack_home / "cache" / "prices" / "us-east-1.json").unlink()
    pricing.denied = True
    denied = cli("run", "--plan", "t4", cwd=repo)
    assert denied.code == 0, denied.err
    assert "catalog price" in denied.out and "AccessDeniedException" in denied.out
