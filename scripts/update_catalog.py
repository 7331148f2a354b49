"""Regenerate dstack's instance catalog (``dstack/data/instances.json``) from the AWS APIs.

    .venv/bin/python scripts/update_catalog.py [--regions us-east-1,eu-west-1] [--families g5,p4d]
        [--price-region us-east-1] [--endpoint-url URL ...] [--pricing-endpoint-url URL]
        [--out FILE] [--prices-from FILE] [--spec-note TEXT]

- specs from EC2 ``describe_instance_types`` (vCPUs, memory, GPUs with their memory, whether
  spot is supported), x86_64 and not bare metal, for the families below;
- where each type is offered, from ``describe_instance_type_offerings`` per region;
- on-demand Linux prices (shared tenancy, no pre-installed software) from the Pricing API's
  ``get_products`` in ``--price-region`` (``dstack.compute.aws.prices.on_demand_prices``, the
  reader `dstack run` uses for live prices).

``--endpoint-url`` points the EC2 calls at a server other than AWS (tests use moto on
127.0.0.1); given more than once, each is a source of EC2 data and the first that lists a type
describes it. ``--pricing-endpoint-url`` does the same for the Pricing API (default: the first
``--endpoint-url``). When the Pricing API cannot answer, prices are kept from ``--prices-from``
(a catalog, or ``{"price_source": ..., "prices": {type: USD}}``; default: the current catalog)
and the file says so in ``price_source``; a type with no price anywhere is left out (offers
need one). Credentials come from the AWS chain; nothing is written unless everything was read.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # dstack's own price reader, from this checkout
DEFAULT_OUT = ROOT / "dstack" / "data" / "instances.json"
FAMILIES = (
    "t3", "m5", "m6i", "m7i", "c5", "c6i", "c7i", "r5", "r6i", "r7i", "x1", "x1e",
    "g4dn", "g5", "g6", "g6e", "p3", "p3dn", "p4d", "p4de", "p5", "p5e",
)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regions", help="comma-separated; default: every region EC2 lists")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--price-region", default="us-east-1")
    parser.add_argument(
        "--endpoint-url", action="append", default=[],
        help="an EC2 endpoint other than AWS's (tests); repeat for more sources, first wins",
    )  # fmt: skip
    parser.add_argument("--pricing-endpoint-url", help="the Pricing API's (tests)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--prices-from", type=Path, help="fallback prices (default: --out)")
    parser.add_argument("--spec-note", default="", help="said after spec_source in the file")
    args = parser.parse_args(argv)

    import boto3

    session = boto3.session.Session(region_name=args.price_region)
    families = {f.strip() for f in args.families.split(",") if f.strip()}
    wildcards = [{"Name": "instance-type", "Values": [f"{f}.*" for f in sorted(families)]}]
    specs: dict[str, dict[str, Any]] = {}
    offered: dict[str, set[str]] = {}
    for endpoint in args.endpoint_url or [None]:
        ec2 = session.client("ec2", endpoint_url=endpoint)
        found = {
            item["InstanceType"]: item
            for item in _paginate(
                ec2, "describe_instance_types", "InstanceTypes", Filters=wildcards
            )
            if _wanted(item, families) and item["InstanceType"] not in specs
        }
        regions = (
            [r.strip() for r in args.regions.split(",") if r.strip()]
            if args.regions
            else sorted(r["RegionName"] for r in ec2.describe_regions()["Regions"])
        )
        offered.update(_offerings(session, regions, endpoint, set(found)))
        specs.update(found)
    prices, price_source = _prices(session, args, sorted(specs))
    types = []
    missing = []
    for name in sorted(specs, key=_sort_key):
        price = prices.get(name)
        if price is None:
            missing.append(name)
            continue
        types.append(_entry(specs[name], price, sorted(offered.get(name, ()))))
    catalog = {
        "version": 1,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "price_region": args.price_region,
        "currency": "USD",
        "price_source": price_source,
        "spec_source": "EC2 DescribeInstanceTypes"
        + (f" ({args.spec_note})" if args.spec_note else "")
        + (
            f" at {', '.join(args.endpoint_url)}"
            if args.endpoint_url and not args.spec_note
            else ""
        ),
        "types": types,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dump_catalog(catalog))
    print(f"{args.out}: {len(types)} instance types, prices from {price_source}")
    if missing:
        print(f"left out (no price): {', '.join(missing)}", file=sys.stderr)
    return 0


def dump_catalog(catalog: dict[str, Any]) -> str:
    """The catalog as JSON with one line per instance type (readable, small diffs)."""
    head = {k: v for k, v in catalog.items() if k != "types"}
    lines = [json.dumps(head, sort_keys=True)[:-1] + ', "types": [']
    rows = [json.dumps(t, sort_keys=True) for t in catalog["types"]]
    lines.extend(f"  {row}," for row in rows[:-1])
    lines.extend(f"  {row}" for row in rows[-1:])
    lines.append("]}")
    return "\n".join(lines) + "\n"


def _wanted(item: dict[str, Any], families: set[str]) -> bool:
    name = item["InstanceType"]
    archs = item.get("ProcessorInfo", {}).get("SupportedArchitectures", [])
    bare = item.get("BareMetal") or "metal" in name.split(".", 1)[1]  # older data lacks the flag
    return name.split(".")[0] in families and "x86_64" in archs and not bare


def _entry(item: dict[str, Any], price: float, regions: list[str]) -> dict[str, Any]:
    gpus = item.get("GpuInfo", {}).get("Gpus") or []
    gpu = None
    if gpus:
        first = gpus[0]
        gpu = {
            "name": first.get("Name", ""),
            "count": sum(int(g.get("Count", 0)) for g in gpus),
            "memory_mib": int(first.get("MemoryInfo", {}).get("SizeInMiB", 0)),
        }
    return {
        "name": item["InstanceType"],
        "vcpus": int(item["VCpuInfo"]["DefaultVCpus"]),
        "memory_mib": int(item["MemoryInfo"]["SizeInMiB"]),
        "gpu": gpu,
        "price": round(price, 5),
        "spot": "spot" in item.get("SupportedUsageClasses", []),
        "regions": regions,
    }


def _offerings(
    session: Any, regions: Iterable[str], endpoint_url: str | None, names: set[str]
) -> dict[str, set[str]]:
    offered: dict[str, set[str]] = {}
    for region in regions:
        client = session.client("ec2", region_name=region, endpoint_url=endpoint_url)
        for item in _paginate(
            client, "describe_instance_type_offerings", "InstanceTypeOfferings",
            LocationType="region",
        ):  # fmt: skip
            if item["InstanceType"] in names:
                offered.setdefault(item["InstanceType"], set()).add(region)
    return offered


def _prices(session: Any, args: argparse.Namespace, names: list[str]) -> tuple[dict, str]:
    """Prices from the Pricing API, or from the fallback file if the API cannot answer."""
    try:
        where = f" at {args.pricing_endpoint_url}" if args.pricing_endpoint_url else ""
        source = f"AWS Pricing API ({args.price_region}){where}"
        return _api_prices(session, args, names), source
    except Exception as exc:  # the API is absent (test servers) or refused us
        fallback = args.prices_from or args.out
        said = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        print(f"the Pricing API did not answer ({said}); prices kept from {fallback}")
        if not fallback.exists():
            return {}, "none"
        previous = json.loads(fallback.read_text())
        kept = {t["name"]: float(t["price"]) for t in previous.get("types", [])}
        kept.update({name: float(price) for name, price in previous.get("prices", {}).items()})
        return kept, str(previous.get("price_source") or fallback.name)


def _api_prices(session: Any, args: argparse.Namespace, names: list[str]) -> dict[str, float]:
    from botocore.config import Config

    from dstack.compute.aws.prices import PRICING_REGION, on_demand_prices

    client = session.client(
        "pricing",
        region_name=PRICING_REGION,
        endpoint_url=args.pricing_endpoint_url or next(iter(args.endpoint_url), None),
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )
    return on_demand_prices(client, args.price_region, names)


def _paginate(client: Any, operation: str, key: str, **kwargs: Any) -> Iterable[dict[str, Any]]:
    paginator = client.get_paginator(operation)
    for page in paginator.paginate(**kwargs):
        yield from page.get(key, [])


def _sort_key(name: str) -> tuple[str, int]:
    family, size = name.split(".", 1)
    order = ["nano", "micro", "small", "medium", "large", "xlarge"]
    if size in order:
        rank = order.index(size)
    else:
        rank = len(order) + int(size.replace("xlarge", "") or 1)
    return family, rank


if __name__ == "__main__":
    sys.exit(main())
