"""Where dstack keeps things on this machine, and which state store it uses.

Paths are functions, not constants, so tests (and users) can point ``DSTACK_HOME`` elsewhere
at any time. ``~/.dstack/config.yaml`` chooses the state store; environment variables override
it for CI use.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dstack.backends.base import Storage
from dstack.errors import ConfigError

DEFAULT_MAX_CODE_SIZE = 100 * 1024 * 1024


def dstack_home() -> Path:
    """``$DSTACK_HOME``, or ``~/.dstack``."""
    value = os.environ.get("DSTACK_HOME")
    return Path(value).expanduser() if value else Path.home() / ".dstack"


def config_path() -> Path:
    return dstack_home() / "config.yaml"


def local_store_root() -> Path:
    """The folder of the local state store."""
    return dstack_home() / "store"


def cache_dir() -> Path:
    """Machine-local caches (interpreter probes, virtualenvs, downloaded artifacts):
    ``$DSTACK_CACHE_DIR``, or ``cache`` under the dstack home."""
    value = os.environ.get("DSTACK_CACHE_DIR")
    return Path(value).expanduser() if value else dstack_home() / "cache"


def work_dir() -> Path:
    """Where local runners make each job's own working directory."""
    return dstack_home() / "work"


def runner_log_dir() -> Path:
    """Where local runners write their own diagnostics (not the job's output)."""
    return dstack_home() / "runners"


def max_code_size() -> int:
    """The largest code archive a run may ship, in bytes (``DSTACK_MAX_CODE_SIZE``)."""
    raw = os.environ.get("DSTACK_MAX_CODE_SIZE")
    if not raw:
        return DEFAULT_MAX_CODE_SIZE
    from dstack.units import parse_size_bytes

    try:
        return parse_size_bytes(raw)
    except ValueError as exc:
        raise ConfigError(f"DSTACK_MAX_CODE_SIZE: {exc}") from None


def load_config() -> dict[str, Any]:
    """The parsed config file, or an empty dict when there is none."""
    path = config_path()
    if not path.exists():
        return {}
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc}); fix or delete it") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping; fix or delete it")
    return data


def storage_config() -> dict[str, Any]:
    """The state store this machine uses, as a ``storage_from_config`` description."""
    config = load_config()
    backend = config.get("backend", "local")
    if backend == "local":
        return {"type": "local", "root": str(local_store_root())}
    raise ConfigError(f"{config_path()}: unknown backend {backend!r}; run `dstack config`")


def storage_from_config(config: dict[str, Any]) -> Storage:
    """Build a Storage from its ``config()`` description."""
    kind = config.get("type")
    if kind == "local":
        from dstack.backends.local_storage import LocalStorage

        return LocalStorage(Path(config["root"]))
    if kind == "s3":
        from dstack.backends.s3_storage import S3Storage

        if not config.get("bucket"):
            raise ConfigError("the S3 state store has no bucket: run `dstack config`")
        return S3Storage(
            config["bucket"],
            region=config.get("region"),
            profile=config.get("profile"),
            endpoint_url=config.get("endpoint_url"),
            prefix=config.get("prefix") or "",
        )
    raise ConfigError(f"unknown storage type {kind!r}")


def default_storage() -> Storage:
    return storage_from_config(storage_config())
