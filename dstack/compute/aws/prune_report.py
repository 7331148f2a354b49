"""What `dstack prune` found and did: one action per stack, instance, security group or role."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class PruneAction:
    kind: str  # stack, instance, security group, role
    target: str
    run: str | None
    why: str
    done: bool = False
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class PruneReport:
    dry_run: bool = False
    actions: list[PruneAction] = field(default_factory=list)
    #: (what, why) left alone because their run is still going
    kept: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
