"""Where dstack's state lives: the ``Storage`` seam and its two implementations.

- ``base``: the ``Storage`` ABC with its contract docstrings;
- ``local``: a folder on this machine (the embedded default);
- ``s3``: an S3 bucket (AWS or any S3-compatible server): client, errors, probe, transfers, CRT.

``open_storage`` is the one factory: it builds a Storage from its typed ``StoreConfig``.
Nothing here imports boto3 or botocore at import time.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from dstack.storage.base import Storage
    from dstack.storage.s3.probe import BucketStatus
    from dstack.store_config import S3StoreConfig, StoreConfig


def open_storage(config: StoreConfig) -> Storage:
    """The Storage a config describes (the inverse of ``Storage.config()``)."""
    from dstack.store_config import LocalStoreConfig

    if isinstance(config, LocalStoreConfig):
        from dstack.storage.local import LocalStorage

        logger.debug("store: the folder %s", config.root)
        return LocalStorage(config.root)
    from dstack.storage.s3.storage import S3Storage

    logger.debug("store: s3://%s/%s (region %s, profile %s, endpoint %s)", config.bucket,
                 config.prefix, config.region, config.profile, config.endpoint_url)  # fmt: skip
    return S3Storage(
        config.bucket,
        region=config.region,
        profile=config.profile,
        endpoint_url=config.endpoint_url,
        prefix=config.prefix,
    )


def default_storage() -> Storage:
    """The state store this machine's config file (and environment) chooses."""
    from dstack import settings

    return open_storage(settings.store_config())


def probe_bucket(config: S3StoreConfig, *, retry_deadline: float | None = None) -> BucketStatus:
    """Whether the bucket exists, where, and whether these credentials can read and write
    it (``s3.probe``), giving up on an unreachable S3 after ``retry_deadline`` seconds."""
    from dstack.storage.s3.storage import S3Storage

    storage = S3Storage(
        config.bucket,
        region=config.region,
        profile=config.profile,
        endpoint_url=config.endpoint_url,
        prefix=config.prefix,
        retry_deadline=retry_deadline,
    )
    return storage.probe_bucket(write=True)


def aws_default_region(profile: str | None) -> str:
    """The AWS profile's (or environment's) region, else ``us-east-1``."""
    from dstack.storage.s3.probe import default_region

    return default_region(profile)


def aws_default_bucket(profile: str | None, region: str) -> str | None:
    """``dstack-<account id>-<region>``; None when AWS cannot say the account."""
    from dstack.storage.s3.probe import default_bucket

    return default_bucket(profile, region)


def aws_credentials_problem(profile: str | None) -> str | None:
    """Why no AWS call can be made with ``profile`` (one line saying what to do), or None."""
    from dstack.storage.s3.probe import credentials_problem

    return credentials_problem(profile)


def aws_profiles() -> list[str]:
    """The profiles of ~/.aws/config and ~/.aws/credentials (none when they cannot be read)."""
    try:
        import boto3

        return list(boto3.session.Session().available_profiles)
    except Exception:  # an unreadable config file: no profiles to offer
        return []
