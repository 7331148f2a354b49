"""AWS compute's constants and where its Pulumi state lives.

The ``compute`` section of ``~/.dstack/config.yaml`` is typed as
``dstack.store_config.AwsComputeConfig`` (every key, with its default and description, is in
the generated config reference: docs/reference/config.md). Every field has a default except
the region, which comes from ``aws.region``, ``AWS_REGION`` or ``AWS_DEFAULT_REGION`` (never a
built-in guess).
"""

from __future__ import annotations

from dstack.errors import ConfigError
from dstack.store_config import AwsComputeConfig, S3StoreConfig

__all__ = ["PORT_BASE", "PROJECT", "PULUMI_STATE_FOLDER", "AwsComputeConfig", "state_backend_url"]

PROJECT = "dstack"
#: the folder of the store (a key prefix) that holds the Pulumi project's state
PULUMI_STATE_FOLDER = "pulumi"
#: ports asked for by a workflow are opened at these numbers on its instance
PORT_BASE = 10000


def state_backend_url(storage_config: S3StoreConfig, region: str | None) -> str:
    """The Pulumi project's state backend: a folder of the state bucket itself.

    ``s3://<bucket>/<store prefix>/pulumi?region=…``, plus ``endpoint``/path-style options
    for an S3-compatible store. Pulumi keeps each stack at
    ``<that>/.pulumi/stacks/dstack/<stack>.json``, so anyone with the bucket can list and
    destroy them (``dstack prune``).
    """
    if not isinstance(storage_config, S3StoreConfig):
        raise ConfigError("AWS compute needs the S3 state store: run `dstack config`")
    bucket = storage_config.bucket
    prefix = storage_config.prefix.strip("/")
    folder = f"{prefix}/{PULUMI_STATE_FOLDER}" if prefix else PULUMI_STATE_FOLDER
    query = []
    if region or storage_config.region:
        query.append(f"region={storage_config.region or region}")
    endpoint = storage_config.endpoint_url
    if endpoint:
        host = str(endpoint).split("://", 1)[-1].rstrip("/")
        query.append(f"endpoint={host}")
        query.append("s3ForcePathStyle=true")
        if str(endpoint).startswith("http://"):
            query.append("disableSSL=true")
    if storage_config.profile:
        query.append(f"profile={storage_config.profile}")
    return f"s3://{bucket}/{folder}" + (f"?{'&'.join(query)}" if query else "")
