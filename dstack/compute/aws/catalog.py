"""The instance catalog shipped with dstack, and choosing the cheapest type for a job.

``dstack/data/instances.json`` lists, per EC2 instance type: vCPUs, memory, GPUs (name, count,
memory each), the on-demand price per hour, whether spot is offered, and the regions that offer
it. ``scripts/update_catalog.py`` regenerates it from the AWS APIs.

A request (the job's ``resources``) is met by a type with at least the vCPUs, memory, GPU count
and GPU memory asked for, the GPU model asked for (case and punctuation aside: ``a100`` is
``A100``), spot when the job is interruptible, offered in the region. Among those, the cheapest
wins (then fewer vCPUs, then the name). When none qualifies, the error names the closest types
and what each lacks.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dstack.errors import ComputeError
from dstack.models import Resources

CATALOG_PATH = Path(__file__).resolve().parents[2] / "data" / "instances.json"
_CLOSEST = 3


@dataclass(frozen=True)
class InstanceType:
    name: str
    vcpus: int
    memory_mib: int
    price: float
    spot: bool
    regions: tuple[str, ...] = ()
    gpu_name: str | None = None
    gpu_count: int = 0
    gpu_memory_mib: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InstanceType:
        gpu = data.get("gpu") or {}
        return cls(
            name=data["name"],
            vcpus=int(data["vcpus"]),
            memory_mib=int(data["memory_mib"]),
            price=float(data["price"]),
            spot=bool(data.get("spot")),
            regions=tuple(data.get("regions") or ()),
            gpu_name=gpu.get("name"),
            gpu_count=int(gpu.get("count") or 0),
            gpu_memory_mib=int(gpu.get("memory_mib") or 0),
        )

    def describe(self) -> str:
        """``g5.xlarge (4 vCPU, 16GB, 1×A10G 24GB, $1.006/h)``"""
        parts = [f"{self.vcpus} vCPU", _size(self.memory_mib)]
        if self.gpu_count:
            parts.append(f"{self.gpu_count}×{self.gpu_name} {_size(self.gpu_memory_mib)}")
        parts.append(f"${self.price:g}/h")
        return f"{self.name} ({', '.join(parts)})"


@dataclass(frozen=True)
class Request:
    """What a job needs from an instance."""

    cpu: int
    memory_mib: int
    gpu_count: int = 0
    gpu_name: str | None = None
    gpu_memory_mib: int | None = None
    spot: bool = False
    region: str | None = None

    @classmethod
    def from_resources(
        cls,
        resources: Resources,
        *,
        region: str | None,
        default_cpu: int = 2,
        default_memory_mib: int = 8192,
    ) -> Request:
        """The job's resources, with the defaults for what it leaves out (a machine too small
        to install Python packages helps nobody)."""
        gpu_count = resources.gpu_count or (1 if resources.gpu_name else 0)
        return cls(
            cpu=resources.cpu or default_cpu,
            memory_mib=resources.memory_mib or default_memory_mib,
            gpu_count=gpu_count,
            gpu_name=resources.gpu_name,
            gpu_memory_mib=resources.gpu_memory_mib,
            spot=resources.interruptible,
            region=region,
        )

    def describe(self) -> str:
        # sizes are binary: say so with the MiB, as a 2022 user read `64GB` as 61,035 MiB
        memory = f"{_size(self.memory_mib)}+ memory ({self.memory_mib:,} MiB)"
        parts = [f"{self.cpu}+ vCPU", memory]
        if self.gpu_count:
            gpu = f"{self.gpu_count}+ {self.gpu_name or 'any'} GPU(s)"
            if self.gpu_memory_mib:
                gpu += f" of {_size(self.gpu_memory_mib)}+"
            parts.append(gpu)
        if self.spot:
            parts.append("spot")
        if self.region:
            parts.append(f"in {self.region}")
        return ", ".join(parts)


class Catalog:
    """Instance types, and the choice of one for a request."""

    def __init__(self, types: Sequence[InstanceType], *, source: str = "") -> None:
        self.types = list(types)
        self.source = source

    @classmethod
    def load(cls, path: Path | None = None) -> Catalog:
        return _load(str(path or CATALOG_PATH))

    def select(self, request: Request) -> InstanceType:
        """The cheapest type that meets ``request``; ComputeError naming the closest if none."""
        fitting = [t for t in self.types if not shortfalls(t, request)]
        if fitting:
            return min(fitting, key=lambda t: (t.price, t.vcpus, t.name))
        raise ComputeError(self.no_fit_message(request))

    def closest(self, request: Request, count: int = _CLOSEST) -> list[InstanceType]:
        """The types that miss ``request`` by the fewest requirements, cheapest first."""
        ranked = sorted(
            self.types, key=lambda t: (len(shortfalls(t, request)), _gap(t, request), t.price)
        )
        return ranked[:count]

    def no_fit_message(self, request: Request) -> str:
        near = "; ".join(
            f"{t.describe()}: {', '.join(shortfalls(t, request))}" for t in self.closest(request)
        )
        return (
            f"no AWS instance type in dstack's catalog has {request.describe()}; "
            f"the closest are {near}. Ask for less in `resources`, or refresh the catalog "
            "(scripts/update_catalog.py)"
        )


def shortfalls(itype: InstanceType, request: Request) -> list[str]:
    """What ``itype`` lacks to meet ``request`` (empty when it meets it)."""
    missing = []
    if itype.vcpus < request.cpu:
        missing.append(f"{itype.vcpus} vCPU < {request.cpu}")
    if itype.memory_mib < request.memory_mib:
        missing.append(f"{_size(itype.memory_mib)} memory < {_size(request.memory_mib)}")
    if request.gpu_count:
        if itype.gpu_count < request.gpu_count:
            missing.append(f"{itype.gpu_count} GPU(s) < {request.gpu_count}")
        if request.gpu_name and _norm(itype.gpu_name) != _norm(request.gpu_name):
            missing.append(f"GPU {itype.gpu_name or 'none'} is not {request.gpu_name}")
        if request.gpu_memory_mib and itype.gpu_memory_mib < request.gpu_memory_mib:
            missing.append(
                f"GPU memory {_size(itype.gpu_memory_mib)} < {_size(request.gpu_memory_mib)}"
            )
    if request.spot and not itype.spot:
        missing.append("no spot offering")
    if request.region and itype.regions and request.region not in itype.regions:
        missing.append(f"not offered in {request.region}")
    return missing


@functools.lru_cache(maxsize=4)
def _load(path: str) -> Catalog:
    try:
        data = json.loads(Path(path).read_text())
        types = [InstanceType.from_dict(item) for item in data["types"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ComputeError(f"the instance catalog {path} cannot be read ({exc})") from exc
    return Catalog(types, source=str(data.get("price_source") or ""))


def _gap(itype: InstanceType, request: Request) -> float:
    """How far short ``itype`` falls, summed as ratios (0 when it has enough of everything)."""
    gap = max(0.0, 1 - itype.vcpus / request.cpu)
    gap += max(0.0, 1 - itype.memory_mib / request.memory_mib)
    if request.gpu_count:
        gap += max(0.0, 1 - itype.gpu_count / request.gpu_count)
        if request.gpu_memory_mib:
            gap += max(0.0, 1 - itype.gpu_memory_mib / request.gpu_memory_mib)
    return gap


def _norm(name: str | None) -> str:
    return re.sub(r"[^a-z0-9]", "", (name or "").lower())


def _size(mib: int) -> str:
    if mib >= 1024 and mib % 1024 == 0:
        return f"{mib // 1024}GB"
    if mib >= 1024:
        return f"{mib / 1024:.1f}GB"
    return f"{mib}MB"
