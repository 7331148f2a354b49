"""Where jobs run: the ``Compute`` seam and its two implementations.

- ``base``: the ``Compute`` ABC with its contract docstrings, and what a cloud plan is;
- ``local``: this machine (a detached, supervised runner per job);
- ``aws``: an EC2 instance per job, declared as an ephemeral Pulumi stack.

``open_compute`` is the one factory: it builds a Compute from its typed ``ComputeConfig``, so
services never name a cloud. ``cloud_compute`` is the cloud a user would send runs to (for
`dstack run --plan`, `dstack prune` and `dstack config --create` on a machine whose runs stay
local). Nothing here imports boto3 or pulumi at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dstack.compute.base import Compute
    from dstack.store_config import ComputeConfig


def open_compute(config: ComputeConfig) -> Compute:
    """The Compute a config describes."""
    from dstack.store_config import AwsComputeConfig

    if isinstance(config, AwsComputeConfig):
        from dstack.compute.aws.compute import AwsCompute

        return AwsCompute(config)
    from dstack.compute.local import LocalCompute

    return LocalCompute()


def default_compute() -> Compute:
    """AWS when the config file's ``compute`` section says ``type: aws`` (written by
    `dstack config --backend aws`), this machine otherwise."""
    from dstack import settings

    return open_compute(settings.compute_config())


def cloud_compute(current: Compute | None = None) -> Compute:
    """The cloud compute: ``current`` when it is one, else the one the config file's
    ``compute`` section describes (as if it said ``type: aws``)."""
    from dstack import settings
    from dstack.store_config import AwsComputeConfig, parse_compute

    if current is not None and current.is_cloud:
        return current
    config: dict[str, Any] = settings.load_config()
    section = config.get("compute") or {}
    if isinstance(section, dict):
        section = {**section, "type": "aws"}
    parsed = parse_compute(section, settings.aws_section(config))
    assert isinstance(parsed, AwsComputeConfig)
    compute = open_compute(parsed)
    if current is not None:
        compute.reporter = current.reporter
    return compute
