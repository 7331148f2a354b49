"""Where dstack keeps things on this machine, and which state store it uses.

Paths are functions, not constants, so tests (and users) can point ``DSTACK_HOME`` elsewhere
at any time. ``~/.dstack/config.yaml`` (written by `dstack config`, mode 0600) chooses the state
store, and ``DSTACK_AWS_*`` variables override its ``aws`` section for CI; the file's keys are
typed in ``dstack.store_config`` (docs/reference/config.md). ``store_config()`` and
``compute_config()`` are the only readers. Credentials never live here: they come from the AWS
chain. Nothing here imports boto3.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dstack.errors import ConfigError
from dstack.store_config import (
    AwsSection,
    ComputeConfig,
    LocalStoreConfig,
    S3StoreConfig,
    StoreConfig,
    parse_aws_section,
    parse_compute,
)

DEFAULT_MAX_CODE_SIZE = 100 * 1024 * 1024


def dstack_home() -> Path:
    """``$DSTACK_HOME``, or ``~/.dstack``."""
    value = os.environ.get("DSTACK_HOME")
    # absolute: the runner starts in another folder than the command that set it
    return Path(value).expanduser().absolute() if value else Path.home() / ".dstack"


def config_path() -> Path:
    return dstack_home() / "config.yaml"


def local_store_root() -> Path:
    """The folder of the local state store."""
    return dstack_home() / "store"


def cache_dir() -> Path:
    """Machine-local caches (interpreter probes, virtualenvs, downloaded artifacts):
    ``$DSTACK_CACHE_DIR``, or ``cache`` under the dstack home."""
    value = os.environ.get("DSTACK_CACHE_DIR")
    return Path(value).expanduser().absolute() if value else dstack_home() / "cache"


def work_dir() -> Path:
    """Where local runners make each job's own working directory."""
    return dstack_home() / "work"


def runner_log_dir() -> Path:
    """Where local runners write their own diagnostics (not the job's output)."""
    return dstack_home() / "runners"


def runner_output_path(repo_id: str, job_id: str) -> Path:
    """The file a local runner's stdout and stderr go to."""
    return runner_log_dir() / f"{repo_id.replace('/', '_')}.{job_id}.log"


def runner_log_path(repo_id: str, job_id: str) -> Path:
    """The runner's ``logging`` file, beside its output (``dstack.diagnostics``)."""
    return runner_output_path(repo_id, job_id).with_suffix(".runner.log")


def max_code_size() -> int:
    """The largest code snapshot a run may ship, in bytes (``DSTACK_MAX_CODE_SIZE``)."""
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

    from dstack.yamlload import safe_load

    try:
        data = safe_load(path.read_text()) or {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc}); fix or delete it") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"{path}{where}: cannot be read (invalid YAML: {problem}); fix or delete it"
        ) from exc
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
#: overrides how long S3 calls are retried before an outage is an error (seconds)
RETRY_DEADLINE_ENV = "DSTACK_S3_RETRY_DEADLINE"


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


def aws_section(config: dict[str, Any] | None = None) -> AwsSection:
    """The ``aws`` section of the config file with the environment overrides applied."""
    config = load_config() if config is None else config
    try:
        section = parse_aws_section(config.get("aws"))
    except ConfigError as exc:
        raise ConfigError(f"{config_path()}: {exc}") from None
    overrides = {
        key: os.environ[env] for key, env in AWS_ENV_OVERRIDES.items() if os.environ.get(env)
    }
    return section.model_copy(update=overrides) if overrides else section


def backend(config: dict[str, Any] | None = None) -> str:
    """``local`` or ``aws``: the config file's choice, or ``aws`` when ``DSTACK_AWS_S3_BUCKET``
    is set (an environment bucket alone switches to S3, for CI)."""
    if os.environ.get(AWS_ENV_OVERRIDES["bucket"]):
        return "aws"
    config = load_config() if config is None else config
    name = config.get("backend") or "local"
    if name not in BACKENDS:
        raise ConfigError(
            f"{config_path()}: unknown backend {name!r} (expected local or aws); "
            "run `dstack config`"
        )
    return str(name)


def store_config(config: dict[str, Any] | None = None) -> StoreConfig:
    """The state store this machine uses."""
    config = load_config() if config is None else config
    if backend(config) == "local":
        return LocalStoreConfig(root=local_store_root())
    aws = aws_section(config)
    if not aws.bucket:
        raise ConfigError(
            f"{config_path()}: the aws backend has no bucket; run "
            "`dstack config --backend aws --bucket NAME` or set DSTACK_AWS_S3_BUCKET"
        )
    return S3StoreConfig(
        bucket=aws.bucket,
        region=aws.region,
        profile=aws.profile,
        endpoint_url=aws.endpoint_url,
        prefix=aws.prefix or "",
    )


def compute_config(config: dict[str, Any] | None = None) -> ComputeConfig:
    """Where jobs run: the ``compute`` section (this machine when there is none)."""
    config = load_config() if config is None else config
    try:
        return parse_compute(config.get("compute"), aws_section(config))
    except ConfigError as exc:
        raise ConfigError(f"{config_path()}: {exc}") from None
