"""Retrying a call with exponential backoff under a deadline: the one way dstack does it.

Built on tenacity. The runner's state writes and final artifact sync, the log sink's last
upload and the S3 store's transient errors all go through ``retry_until``; what differs between
them is only which errors are worth another attempt, the first and largest wait, and whether
waits are jittered. The last attempt starts at the deadline at the latest; then the last error
is raised. ``sleep`` and ``clock`` are injectable so tests run the schedule without waiting.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception

T = TypeVar("T")
logger = logging.getLogger(__name__)


def retry_until(
    fn: Callable[[], T],
    *,
    retry_on: Callable[[BaseException], bool],
    deadline: float,
    first_wait: float,
    max_wait: float,
    jitter: bool = False,
    what: str = "",
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Call ``fn``; while it raises an error ``retry_on`` accepts, wait and call it again, until
    ``deadline`` seconds have passed since the first attempt, then re-raise the last error.

    Waits double from ``first_wait`` up to ``max_wait``; with ``jitter`` each is drawn
    uniformly below that (full jitter, for many clients sharing one service). Errors
    ``retry_on`` refuses are raised at once. ``what`` names the call in debug logs.
    """
    start = clock()

    def remaining() -> float:
        return deadline - (clock() - start)

    def wait(state: RetryCallState) -> float:
        step = min(max_wait, first_wait * 2 ** (state.attempt_number - 1))
        if jitter:
            step = random.uniform(0, step)
        return max(0.0, min(step, remaining()))

    def stop(state: RetryCallState) -> bool:
        return remaining() <= 0

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        logger.debug(
            "%s failed (attempt %d: %s); retrying in %.2fs",
            what or getattr(fn, "__name__", "call"),
            state.attempt_number,
            error,
            state.upcoming_sleep,
        )

    retrying = Retrying(
        retry=retry_if_exception(retry_on),
        wait=wait,
        stop=stop,
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(fn)


def errors_of(*types: type[BaseException]) -> Callable[[BaseException], bool]:
    """A ``retry_on`` accepting errors of ``types``."""
    return lambda exc: isinstance(exc, types)
