"""Telling transient AWS failures from final ones, and retrying the transient ones under a deadline.

Shared by every AWS backend (the S3 state store, EC2 compute). Nothing here maps AWS errors
to dstack errors — each backend does that with its own wording — and botocore is imported only
when an error is being classified, never when this module is imported.

Transient: throttling (``SlowDown``, ``Throttling``, ``RequestLimitExceeded``, HTTP 429/503),
any 5xx, and dropped or refused connections (botocore ``EndpointConnectionError``,
``ConnectionClosedError``, ``ReadTimeoutError``…, urllib3 ``ProtocolError``). TLS errors are not
transient: retrying a bad certificate for a minute only hides it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any, TypeVar

from dstack import backoff
from dstack.errors import ConfigError

T = TypeVar("T")

THROTTLING_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "BandwidthLimitExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
        "InternalError",
        "OperationAborted",
        "503",
    }
)
ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "403",
        "Forbidden",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "UnrecognizedClientException",
        "UnauthorizedOperation",
    }
)

#: first backoff step and largest single wait between attempts, in seconds (full jitter)
BACKOFF_BASE = 0.1
BACKOFF_MAX = 5.0


def unwrap(exc: BaseException) -> BaseException:
    """The underlying error of a managed-transfer ``RetriesExceededError`` (or ``exc``)."""
    seen = 0
    while seen < 5 and getattr(exc, "last_exception", None) is not None:
        exc = exc.last_exception  # type: ignore[attr-defined]
        seen += 1
    return exc


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a ``ClientError`` (``"NoSuchKey"``, ``"404"``…), else None."""
    response = getattr(unwrap(exc), "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code")
    return str(code) if code else None


def http_status(exc: BaseException) -> int | None:
    response = getattr(unwrap(exc), "response", None)
    if not isinstance(response, dict):
        return None
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status else None


def brief(exc: BaseException) -> str:
    """One line naming the error: ``"SlowDown: Please reduce…"`` or ``"EndpointConnectionError: …"``."""
    exc = unwrap(exc)
    code = error_code(exc)
    if code is not None:
        response: dict[str, Any] = getattr(exc, "response", {})
        message = response.get("Error", {}).get("Message") or ""
        text = f"{code}: {message}" if message else code
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


def is_connection_error(exc: BaseException) -> bool:
    """A refused, dropped or timed-out connection (not an answer from AWS)."""
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError, IncompleteReadError, SSLError
    from urllib3.exceptions import ProtocolError

    exc = unwrap(exc)
    if isinstance(exc, SSLError):
        return False
    return isinstance(
        exc, (BotoConnectionError, HTTPClientError, IncompleteReadError, ProtocolError)
    )


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same request later may succeed."""
    exc = unwrap(exc)
    code = error_code(exc)
    if code is not None:
        status = http_status(exc) or 0
        return code in THROTTLING_CODES or status == 429 or status >= 500
    return is_connection_error(exc)


def call_with_deadline(fn: Callable[[], T], deadline: float) -> T:
    """Call ``fn``, retrying transient errors with exponential backoff and full jitter until
    ``deadline`` seconds have passed since the first attempt; then re-raise the last error.

    Final errors are raised at once. The last attempt starts at the deadline at the latest, so
    the whole call takes about ``deadline`` plus one attempt (bounded by the client's timeouts).
    """
    return backoff.retry_until(
        fn, retry_on=is_transient, deadline=deadline, first_wait=BACKOFF_BASE,
        max_wait=BACKOFF_MAX, jitter=True, what="AWS request",
    )  # fmt: skip


def deadline_setting(value: float | None, env: str, default: float) -> float:
    """A retry deadline in seconds: ``value`` if given, else ``$env``, else ``default``.

    ``ConfigError`` if the one used is not a finite number >= 0.
    """
    raw: str | float | None = value if value is not None else os.environ.get(env)
    if raw is None or raw == "":
        return default
    try:
        number = float(raw)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number < 0:
        source = "retry_deadline" if value is not None else env
        raise ConfigError(f"{source}: expected a number of seconds >= 0, got {raw!r}")
    return number
