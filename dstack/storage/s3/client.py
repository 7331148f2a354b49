"""The botocore S3 client of an ``S3Storage``: made from botocore alone (boto3's session would add
0.15-0.2 s of imports to every command), S3's timestamps left unparsed, and the service model
loaded once per process and shared with forked children."""

from __future__ import annotations

from typing import Any

from dstack.errors import StorageError

#: enough for 16 tree workers, each of which may run a managed transfer
POOL_CONNECTIONS = 50


def make_client(
    *,
    where: str,
    profile: str | None,
    region: str | None,
    endpoint_url: str | None,
    connect_timeout: float,
    read_timeout: float,
) -> tuple[Any, Any]:
    """(an S3 client, the credentials it signs with, or None when there are none)."""
    import botocore.session
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ProfileNotFound

    config = Config(
        retries={"max_attempts": 2, "mode": "standard"},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=POOL_CONNECTIONS,
        tcp_keepalive=True,
        user_agent_extra="dstack",
        s3={"addressing_style": "path"} if endpoint_url else None,
    )
    try:
        core = botocore.session.get_session()
        # S3's timestamps (LastModified…) are never used here: kept as text, they cost
        # nothing, where parsing them is most of the CPU of reading a 1,000-key listing
        core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=str)
        # the service model, parsed once per process and inherited by forked runners
        core.register_component("data_loader", _shared_loader(core))
        if profile:
            core.set_config_variable("profile", profile)
        client = core.create_client(
            "s3", region_name=region, endpoint_url=endpoint_url, config=config
        )
        return client, core.get_credentials()
    except ProfileNotFound as exc:
        raise StorageError(
            f"AWS profile {profile!r} not found: check ~/.aws/config or run "
            f"`aws configure --profile {profile}`"
        ) from exc
    except (BotoCoreError, ValueError) as exc:
        raise StorageError(f"cannot set up S3 for {where}: {exc}") from exc


_LOADER: Any = None


def _shared_loader(core: Any) -> Any:
    """One botocore data loader per process (it only caches parsed JSON models, so a forked
    child may keep using its parent's): making a client then costs ~15 ms, not ~150 ms."""
    global _LOADER
    if _LOADER is None:
        _LOADER = core.get_component("data_loader")
    return _LOADER
