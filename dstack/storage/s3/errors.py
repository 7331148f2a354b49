"""How ``S3Storage`` words every failure: botocore's exceptions (and the CRT's, turned into them by
``s3_crt``) mapped to dstack errors, one line each, naming the store and what to do."""

from __future__ import annotations

from typing import Any

from dstack.errors import AlreadyExistsError, DstackError, NotFoundError, StorageError
from dstack.storage.s3 import aws_errors

CONFLICT_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})
NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
REFUSED_CODES = frozenset({"403", "AccessDenied", "Forbidden", "AllAccessDisabled"})


def map_error(
    exc: BaseException,
    *,
    where: str,
    bucket: str,
    deadline: float,
    key: str | None,
    if_absent: bool,
) -> DstackError | None:
    """The dstack error for ``exc`` met by an operation on ``key`` of the store ``where``;
    None for an error that is not S3's (a bug: left to propagate)."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    exc = aws_errors.unwrap(exc)
    why = aws_errors.brief(exc)
    if isinstance(exc, ClientError):
        code = aws_errors.error_code(exc) or ""
        if if_absent and key is not None and code in CONFLICT_CODES:
            return AlreadyExistsError(key)
        if key is not None and code in NOT_FOUND_CODES:
            return NotFoundError(key)
        if code == "NoSuchBucket":
            return StorageError(f"bucket {bucket} does not exist: run `dstack config`")
        if code in aws_errors.ACCESS_CODES:
            return StorageError(
                f"no access to {where} ({code}): check your AWS credentials/profile"
            )
        if aws_errors.is_transient(exc):
            return StorageError(
                f"the S3 state store {where} kept failing for {deadline:g}s "
                f"({why}): retry later or check your endpoint"
            )
        return StorageError(f"the S3 state store {where} refused a request ({why})")
    if isinstance(exc, NoCredentialsError):
        return StorageError("no AWS credentials found: set AWS_PROFILE or run `aws configure`")
    if aws_errors.is_transient(exc):
        return StorageError(
            f"the S3 state store {where} did not answer for {deadline:g}s "
            f"({why}): check your network or endpoint"
        )
    if isinstance(exc, BotoCoreError):
        return StorageError(f"the S3 state store {where} failed ({why})")
    if isinstance(exc, OSError):
        return StorageError(f"cannot transfer {key} of {where}: {exc}")
    return None


def bucket_region(source: Any) -> str | None:
    """The ``x-amz-bucket-region`` of a HeadBucket response or error, if the server sent it."""
    response = getattr(aws_errors.unwrap(source), "response", source)
    if not isinstance(response, dict):
        return None
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    region = headers.get("x-amz-bucket-region") or response.get("BucketRegion")
    return str(region) if region else None
