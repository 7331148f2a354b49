"""``dstack config``'s questions about a bucket: does it exist, in which region, may these
credentials read it and write under the store's prefix."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dstack.storage.s3 import aws_errors
from dstack.storage.s3.errors import REFUSED_CODES, bucket_region

if TYPE_CHECKING:
    from dstack.storage.s3.storage import S3Storage


@dataclass(frozen=True)
class BucketStatus:
    """What ``probe_bucket`` found. ``region`` is None when the server does not say (some
    S3-compatible servers); ``writable`` is None when writing was not tried."""

    exists: bool
    region: str | None = None
    readable: bool = False
    writable: bool | None = None


def probe_bucket(store: S3Storage, *, write: bool = True) -> BucketStatus:
    """Whether the bucket exists, its region, and whether these credentials may read it
    (``HeadBucket``) and, with ``write``, write under the prefix (an object put, then
    deleted). Raises ``StorageError`` only when S3 cannot be asked at all."""
    client = store._client()
    head, error = store._attempt(lambda: client.head_bucket(Bucket=store.bucket))
    region = bucket_region(head if error is None else error)
    if error is not None:
        code, status = aws_errors.error_code(error), aws_errors.http_status(error) or 0
        if code in ("404", "NoSuchBucket", "NotFound"):
            return BucketStatus(exists=False)
        if code in REFUSED_CODES or (region and status in (301, 400)):
            return BucketStatus(exists=True, region=region)  # refused, or elsewhere
        raise store._map_error(error, key=None, if_absent=False) or error
    if not write:
        return BucketStatus(exists=True, region=region, readable=True)
    key = f"dstack-config-check/{uuid.uuid4().hex}"
    put = functools.partial(client.put_object, Bucket=store.bucket, Key=store._key(key), Body=b"")
    _, error = store._attempt(put)
    if error is not None and aws_errors.error_code(error) in REFUSED_CODES:
        return BucketStatus(exists=True, region=region, readable=True, writable=False)
    if error is not None:
        raise store._map_error(error, key=None, if_absent=False) or error
    store.delete(key)
    return BucketStatus(exists=True, region=region, readable=True, writable=True)


def default_region(profile: str | None) -> str:
    """The profile's (or the environment's) region, else ``us-east-1``."""
    try:
        import boto3

        return boto3.session.Session(profile_name=profile).region_name or "us-east-1"
    except Exception:  # no such profile, unreadable config: no default to offer
        return "us-east-1"


def default_bucket(profile: str | None, region: str) -> str | None:
    """``dstack-<account id>-<region>``, as the 2022 tool proposed; None if STS can't say."""
    try:
        import boto3
        from botocore.config import Config

        session = boto3.session.Session(profile_name=profile, region_name=region)
        sts = session.client("sts", config=Config(connect_timeout=3, read_timeout=5))
        account = sts.get_caller_identity()["Account"]
    except Exception:  # no credentials or no network: no default to offer
        return None
    return f"dstack-{account}-{region}"


def credentials_problem(profile: str | None) -> str | None:
    """Why AWS cannot be asked anything with ``profile`` (no such profile, no credentials at
    all), as one line saying what to do; None when boto3 finds credentials. Nothing is sent:
    only the local chain is read (environment, ~/.aws files, and the instance's own role)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ProfileNotFound

    try:
        credentials = boto3.session.Session(profile_name=profile).get_credentials()
    except ProfileNotFound:
        return (
            f"AWS profile {profile!r} not found: check ~/.aws/config or run "
            f"`aws configure --profile {profile}`"
        )
    except BotoCoreError as exc:
        return f"AWS credentials cannot be read: {exc}"
    if credentials is None:
        which = f" for the profile {profile!r}" if profile else ""
        return (
            f"no AWS credentials found{which}: run `aws configure`, or set AWS_PROFILE (or "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        )
    return None
