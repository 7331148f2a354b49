"""AWS compute's constants and where its Pulumi state lives.

The ``compute`` section of ``~/.dstack/config.yaml`` is typed as
``dstack.store_config.AwsComputeConfig``. Every field has a default except the region, which
comes from ``aws.region``, ``AWS_REGION`` or ``AWS_DEFAULT_REGION`` (never a built-in guess).
``dstack config --backend aws`` writes the section with the bootstrap stack's outputs
(``bootstrap``). Example::

    compute:
      type: aws                       # local (the default) or aws
      instance_profile: null          # the bootstrap's shared profile, or null for a role per run
      ami_id: null                    # default: resolved from the SSM public parameters below
      root_volume_gb: 100
      max_duration_hours: 72          # the instance powers itself off after this, whatever runs
      store_timeout_minutes: 20       # ...or when it could not reach the store for this long
      caller_ip: null                 # for `ports`: default $DSTACK_CALLER_IP, else looked up
      subnet_id: null
      vpc_id: null
      default_cpu: 2
      default_memory: 8GB
      tags: {team: ml}                # at most 43, no aws: or dstack: keys
      role_path: null                 # IAM fences of the roles dstack creates: a path,
      role_name_prefix: null          # a name prefix,
      permissions_boundary: null      # and a boundary policy ARN (README: "Running on AWS")
      bootstrap: {stack: bootstrap, bucket_name: ..., instance_profile_name: ..., ...}
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
