"""``scripts/update_catalog.py`` run against moto's EC2 (``describe_instance_types``,
``describe_instance_type_offerings``) on 127.0.0.1. moto has no Pricing API, so this also
shows the fallback: prices kept from the current catalog, and the file saying so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.moto_server import DUMMY_AWS_ENV, MotoServer
from tests.pricing_standin import start_pricing

ROOT = Path(__file__).resolve().parents[3]


def test_regenerates_specs_from_describe_instance_types(
    moto_server: MotoServer, tmp_path: Path
) -> None:
    out = tmp_path / "instances.json"
    env = {**os.environ, **DUMMY_AWS_ENV}
    result = subprocess.run(
        [
            sys.executable, str(ROOT / "scripts" / "update_catalog.py"),
            "--endpoint-url", moto_server.endpoint_url,
            "--regions", "us-east-1,eu-west-1",
            "--families", "t3,g5,p4d",
            "--prices-from", str(ROOT / "dstack" / "data" / "instances.json"),
            "--out", str(out),
        ],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "prices kept from" in result.stdout
    catalog = json.loads(out.read_text())
    types = {t["name"]: t for t in catalog["types"]}
    assert {name.split(".")[0] for name in types} == {"t3", "g5", "p4d"}
    assert types["p4d.24xlarge"]["gpu"] == {"name": "A100", "count": 8, "memory_mib": 40960}
    assert types["p4d.24xlarge"]["vcpus"] == 96 and types["p4d.24xlarge"]["memory_mib"] == 1179648
    assert types["t3.large"]["gpu"] is None and types["t3.large"]["spot"] is True
    assert set(types["g5.xlarge"]["regions"]) <= {"us-east-1", "eu-west-1"}
    assert "us-east-1" in types["g5.xlarge"]["regions"]
    shipped = {
        t["name"]: t["price"]
        for t in json.loads((ROOT / "dstack/data/instances.json").read_text())["types"]
    }
    assert types["g5.xlarge"]["price"] == shipped["g5.xlarge"]
    assert catalog["spec_source"].startswith("EC2 DescribeInstanceTypes")
    # the regenerated file is one the selection code reads
    from dstack.compute.aws.catalog import Catalog, Request

    chosen = Catalog.load(out).select(Request(cpu=2, memory_mib=8192, gpu_count=1))
    assert chosen.name == "g5.xlarge"


def test_prices_come_from_the_pricing_api(moto_server: MotoServer, tmp_path: Path) -> None:
    """The Pricing API's answer (the stand-in for it: moto has none) becomes the prices; a type
    it does not price is left out, and the file names its source."""
    out = tmp_path / "instances.json"
    pricing = start_pricing(
        {("us-east-1", "g4dn.xlarge"): 0.5, ("us-east-1", "g4dn.2xlarge"): 0.75}
    )
    try:
        result = subprocess.run(
            [
                sys.executable, str(ROOT / "scripts" / "update_catalog.py"),
                "--endpoint-url", moto_server.endpoint_url,
                "--pricing-endpoint-url", pricing.endpoint_url,
                "--regions", "us-east-1", "--families", "g4dn", "--out", str(out),
            ],
            env={**os.environ, **DUMMY_AWS_ENV}, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        pricing.stop()
    assert result.returncode == 0, result.stderr
    catalog = json.loads(out.read_text())
    assert catalog["price_source"].startswith("AWS Pricing API (us-east-1)")
    prices = {t["name"]: t["price"] for t in catalog["types"]}
    assert prices == {"g4dn.xlarge": 0.5, "g4dn.2xlarge": 0.75}
    assert "left out (no price): g4dn.4xlarge" in result.stderr
    assert pricing.calls >= 2
