"""`retry`: the workflow property that starts a job again, as a new attempt of the same run,
after interruptions, errors or a lack of capacity."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, WithJsonSchema, model_validator

from dstack.models import RetryPolicy
from dstack.spec.base import Strict
from dstack.spec.fields import PositiveCount, suggest
from dstack.units import parse_duration

RETRY_EVENTS = ("interruption", "error", "no-capacity")


def _retry_events(value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ValueError(f"expected a list of events ({', '.join(RETRY_EVENTS)})")
    for item in items:
        if item not in RETRY_EVENTS:
            hint = suggest(str(item), RETRY_EVENTS)
            raise ValueError(f"{item!r} is not an event{hint} (events: {', '.join(RETRY_EVENTS)})")
    return list(dict.fromkeys(items))


def _duration(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{value!r} is not a duration like 30m, 2h or 1d")
    seconds = float(value) if not isinstance(value, str) else parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"{value!r} is not a positive duration")
    return seconds


def _idle(value: Any) -> float:
    """``max_idle``: a duration, or ``off`` (0: never stopped for being idle)."""
    if (isinstance(value, str) and value.strip().lower() == "off") or value is False:
        return 0.0
    return _duration(value)


#: ``max_idle``: a duration (``1h``, seconds as a number) or ``off`` (YAML's bare ``off`` is false)
IdleDuration = Annotated[
    float,
    BeforeValidator(_idle),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {"type": "string", "pattern": r"^\s*([oO][fF][fF]|\d+(\.\d+)?\s*[a-zA-Z]*)\s*$"},
                {"const": False},
            ]
        }
    ),
]


class RetrySpec(Strict):
    """`retry`: start the job again, as a new attempt of the same run, after these events.
    `retry: true` retries every event up to 3 times."""

    on: Annotated[list[str], BeforeValidator(_retry_events)] = Field(
        default_factory=lambda: list(RETRY_EVENTS),
        description="Events: interruption, error, no-capacity (default: all)",
    )
    exit_codes: list[int] | None = Field(
        default=None, description="With `error`: only these exit codes are retried"
    )
    limit: PositiveCount = Field(default=3, description="Attempts after the first, at most")
    duration: Annotated[float, BeforeValidator(_duration)] | None = Field(
        default=None, description="No new attempt after this long since submit, e.g. 2h"
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if value is True:
            return {}
        return value

    def to_policy(self) -> RetryPolicy:
        return RetryPolicy(
            on=self.on, exit_codes=self.exit_codes, limit=self.limit, duration=self.duration
        )


def _retry(value: Any) -> Any:
    return None if value is False else ({} if value is True else value)
