"""Choosing an instance type from the shipped catalog: a table of requests."""

from __future__ import annotations

import pytest

from dstack.compute.aws.catalog import Catalog, InstanceType, Request, shortfalls
from dstack.errors import ComputeError

GB = 1024


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        pytest.param(Request(cpu=2, memory_mib=8 * GB), "t3.large", id="cpu only (the defaults)"),
        pytest.param(Request(cpu=16, memory_mib=32 * GB), "c5.4xlarge", id="16 CPUs"),
        pytest.param(Request(cpu=2, memory_mib=8 * GB, gpu_count=1), "g4dn.xlarge", id="gpu: 1"),
        pytest.param(
            Request(cpu=2, memory_mib=8 * GB, gpu_count=8, gpu_name="A100"),
            "p4d.24xlarge",
            id="gpu: {name: A100, count: 8}",
        ),
        pytest.param(
            Request(cpu=2, memory_mib=8 * GB, gpu_count=8, gpu_name="a100", gpu_memory_mib=80 * GB),
            "p4de.24xlarge",
            id="8x A100 80GB (name case-insensitive)",
        ),
        pytest.param(Request(cpu=2, memory_mib=1024 * GB), "r6i.32xlarge", id="memory-heavy 1TB"),
        pytest.param(Request(cpu=2, memory_mib=3000 * GB), "x1e.32xlarge", id="memory-heavy 3TB"),
        pytest.param(
            Request(cpu=2, memory_mib=8 * GB, gpu_count=1, gpu_name="A10G", spot=True),
            "g5.xlarge",
            id="spot-only A10G",
        ),
        pytest.param(
            Request(cpu=2, memory_mib=8 * GB, gpu_count=1, gpu_name="H100", region="us-east-1"),
            "p5.4xlarge",
            id="1 H100 in us-east-1",
        ),
    ],
)
def test_cheapest_type_that_fits(catalog: Catalog, request_: Request, expected: str) -> None:
    chosen = catalog.select(request_)
    assert chosen.name == expected
    assert not shortfalls(chosen, request_)
    cheaper = [t for t in catalog.types if t.price < chosen.price and not shortfalls(t, request_)]
    assert cheaper == []


def test_impossible_request_names_the_closest_types(catalog: Catalog) -> None:
    request = Request(cpu=2, memory_mib=8 * GB, gpu_count=16, gpu_name="A100")
    with pytest.raises(ComputeError) as caught:
        catalog.select(request)
    message = str(caught.value)
    assert "16+ A100 GPU(s)" in message
    assert "p4d.24xlarge (96 vCPU, 1152GB, 8×A100 40GB, $32.7726/h): 8 GPU(s) < 16" in message
    assert "p4de.24xlarge" in message and "scripts/update_catalog.py" in message


def test_spot_only_excludes_types_without_spot() -> None:
    on_demand_only = InstanceType("z1.large", 4, 16 * GB, price=0.01, spot=False)
    spot = InstanceType("z2.large", 4, 16 * GB, price=0.02, spot=True)
    catalog = Catalog([on_demand_only, spot])
    assert catalog.select(Request(cpu=2, memory_mib=8 * GB)).name == "z1.large"
    assert catalog.select(Request(cpu=2, memory_mib=8 * GB, spot=True)).name == "z2.large"
    with pytest.raises(ComputeError, match="no spot offering"):
        Catalog([on_demand_only]).select(Request(cpu=2, memory_mib=8 * GB, spot=True))


def test_region_filter(catalog: Catalog) -> None:
    with pytest.raises(ComputeError, match="not offered in mars-north-1"):
        catalog.select(Request(cpu=2, memory_mib=8 * GB, region="mars-north-1"))


def test_catalog_shape(catalog: Catalog) -> None:
    """Every entry has what selection needs; GPU types name their GPU."""
    assert len(catalog.types) > 50
    for itype in catalog.types:
        assert itype.vcpus > 0 and itype.memory_mib > 0 and itype.price > 0, itype
        assert (itype.gpu_count > 0) == bool(itype.gpu_name), itype
    assert "hand-entered" in catalog.source or "Pricing API" in catalog.source


@pytest.mark.parametrize(
    ("gpu", "expected"),
    [("V100", "p3.2xlarge"), ("T4", "g4dn.xlarge"), ("A10G", "g5.xlarge"), ("L4", "g6.xlarge")],
)
def test_one_gpu_of_each_model_is_one_gpu_type(catalog: Catalog, gpu: str, expected: str) -> None:
    """`gpu: {name: V100, count: 1}` (the 2022 examples) was planned on p3dn.24xlarge, 8× V100
    at ~$31/h: the catalog had no p3.2xlarge."""
    request = Request(cpu=2, memory_mib=8 * GB, gpu_count=1, gpu_name=gpu)
    chosen = catalog.select(request)
    assert chosen.name == expected and chosen.gpu_count == 1


def test_catalog_says_where_it_came_from() -> None:
    import json

    from dstack.compute.aws.catalog import CATALOG_PATH

    head = json.loads(CATALOG_PATH.read_text())
    assert head["spec_source"].startswith("EC2 DescribeInstanceTypes")
    assert "moto" in head["spec_source"]  # no AWS account generated it: it says so
    assert head["price_source"]
    eight = {t["name"] for t in head["types"] if (t["gpu"] or {}).get("name") == "A100"}
    assert eight == {"p4d.24xlarge", "p4de.24xlarge"}
