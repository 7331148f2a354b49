"""Where dstack keeps things on this machine, and which state store it uses.

Paths are functions, not constants, so tests (and users) can point ``DSTACK_HOME`` elsewhere
at any time. ``~/.dstack/config.yaml`` (written by `dstack config`, mode 0600) chooses the state
store; environment variables override it for CI use::

    backend: aws                 # or local (the default: a folder under DSTACK_HOME)
    aws:
      bucket: dstack-123456789012-eu-west-1    # DSTACK_AWS_S3_BUCKET (alone switches to aws)
      region: eu-west-1                        # DSTACK_AWS_REGION
      profile: team                            # DSTACK_AWS_PROFILE
      endpoint_url: http://minio:9000          # DSTACK_AWS_ENDPOINT_URL (S3-compatible servers)
      subnet: subnet-0abc                      # for cloud compute
      prefix: dstack                           # optional key prefix inside the bucket

Credentials never live here: they come from the AWS chain (environment, profile, instance role).
Nothing in this module imports boto3.
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


#: environment variables that override the ``aws`` section of the config file (for CI)
AWS_ENV_OVERRIDES = {
    "bucket": "DSTACK_AWS_S3_BUCKET",
    "region": "DSTACK_AWS_REGION",
    "profile": "DSTACK_AWS_PROFILE",
    "endpoint_url": "DSTACK_AWS_ENDPOINT_URL",
}
BACKENDS = ("local", "aws")
_AWS_KEYS = ("bucket", "region", "profile", "subnet", "endpoint_url", "prefix")


def save_config(data: dict[str, Any]) -> Path:
    """Write ``data`` as the config file, atomically and readable by its owner only (0600)."""
    import tempfile

    import yaml

    path = config_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".yaml", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:  # mkstemp makes it 0600 already
                yaml.safe_dump(data, f, sort_keys=False)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path


def aws_settings(config: dict[str, Any] | None = None) -> dict[str, str | None]:
    """The ``aws`` section of the config file with the environment overrides applied; every key
    of ``bucket``, ``region``, ``profile``, ``subnet``, ``endpoint_url``, ``prefix`` present."""
    config = load_config() if config is None else config
    section = config.get("aws") or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{config_path()}: `aws` must be a mapping; run `dstack config`")
    unknown = sorted(set(section) - set(_AWS_KEYS))
    if unknown:
        raise ConfigError(
            f"{config_path()}: unknown key aws.{unknown[0]} "
            f"(expected one of {', '.join(_AWS_KEYS)}); fix it or run `dstack config`"
        )
    values: dict[str, str | None] = {k: _text(section.get(k)) for k in _AWS_KEYS}
    for key, env in AWS_ENV_OVERRIDES.items():
        if os.environ.get(env):
            values[key] = os.environ[env]
    return values


def backend() -> str:
    """``local`` or ``aws``: the config file's choice, or ``aws`` when ``DSTACK_AWS_S3_BUCKET``
    is set (an environment bucket alone switches to S3, for CI)."""
    if os.environ.get(AWS_ENV_OVERRIDES["bucket"]):
        return "aws"
    name = load_config().get("backend") or "local"
    if name not in BACKENDS:
        raise ConfigError(
            f"{config_path()}: unknown backend {name!r} (expected local or aws); "
            "run `dstack config`"
        )
    return str(name)


def storage_config() -> dict[str, Any]:
    """The state store this machine uses, as a ``storage_from_config`` description."""
    if backend() == "local":
        return {"type": "local", "root": str(local_store_root())}
    aws = aws_settings()
    if not aws["bucket"]:
        raise ConfigError(
            f"{config_path()}: the aws backend has no bucket; run "
            "`dstack config --backend aws --bucket NAME` or set DSTACK_AWS_S3_BUCKET"
        )
    return {
        "type": "s3",
        "bucket": aws["bucket"],
        "region": aws["region"],
        "profile": aws["profile"],
        "endpoint_url": aws["endpoint_url"],
        "prefix": aws["prefix"] or "",
    }


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


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
