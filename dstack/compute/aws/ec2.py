"""The few EC2 calls dstack makes itself (everything else goes through Pulumi).

- whether a runner's instance is alive (``dstack ps`` asks this, so the client is built with
  short timeouts and no retries, and answers are cached for a few seconds);
- terminating instances (``dstack stop -x``; the last sweep after a failed clean-up);
- finding the instances and security groups tagged with a state store — its bucket *and* its
  key prefix (several stores share a bucket, and run names are unique per store only) — for
  `dstack prune` and the sweep after a run.

boto3 is imported when the first call is made; every botocore error leaves as ``ComputeError``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from dstack.errors import ComputeError
from dstack.storage.s3 import aws_errors
from stacks import tags as tagging

T = TypeVar("T")
LIVE_STATES = frozenset({"pending", "running", "stopping", "stopped"})
GONE_STATES = frozenset({"shutting-down", "terminated"})
ALIVE_CACHE_SECONDS = 10.0


@dataclass(frozen=True)
class TaggedInstance:
    instance_id: str
    state: str
    repo_id: str | None
    run_name: str | None
    #: when EC2 launched it (epoch seconds), and how long it may live (its lifetime tag)
    launched_at: float | None = None
    lifetime_seconds: int | None = None

    def overdue(self, now: float) -> bool:
        """Whether it outlived its lifetime (it should have powered itself off)."""
        if self.launched_at is None or not self.lifetime_seconds:
            return False
        return now > self.launched_at + self.lifetime_seconds


@dataclass(frozen=True)
class InstanceFacts:
    """What EC2 says of one instance, for what it spent."""

    instance_id: str
    state: str
    instance_type: str | None
    availability_zone: str | None
    spot: bool
    launched_at: float | None
    #: when it was terminated or shut down, from EC2's state transition reason (seconds)
    ended_at: float | None


@dataclass(frozen=True)
class TaggedGroup:
    group_id: str
    repo_id: str | None
    run_name: str | None


class Ec2:
    """EC2 in one region, with credentials from the AWS chain (or ``profile``)."""

    def __init__(
        self,
        region: str,
        *,
        profile: str | None = None,
        endpoint_url: str | None = None,
        client: Any = None,
    ) -> None:
        self.region = region
        self.profile = profile
        self.endpoint_url = endpoint_url
        self._client_instance = client
        self._lock = threading.Lock()
        self._alive_cache: dict[str, tuple[float, bool | None]] = {}

    def is_alive(self, instance_id: str) -> bool | None:
        """True while the instance runs, False once it is terminating or gone, None when EC2
        cannot be asked quickly (then the runner's heartbeat decides)."""
        now = time.monotonic()
        cached = self._alive_cache.get(instance_id)
        if cached and now - cached[0] < ALIVE_CACHE_SECONDS:
            return cached[1]
        try:
            states = self.instance_states([instance_id])
        except ComputeError:
            return None
        state = states.get(instance_id)
        # an instance EC2 does not list (yet: its API is eventually consistent) is unknown
        alive = None if state is None else state not in GONE_STATES
        self._alive_cache[instance_id] = (now, alive)
        return alive

    def instance_states(self, instance_ids: Iterable[str]) -> dict[str, str]:
        """The state name of each instance EC2 still knows (unknown ids are left out)."""
        return self._each_instance(instance_ids, lambda item: item["State"]["Name"])

    def describe(self, instance_ids: Iterable[str]) -> dict[str, InstanceFacts]:
        """The facts of each instance EC2 still knows (terminated ones are kept about an
        hour; unknown ids are left out)."""
        return self._each_instance(instance_ids, _facts)

    def _each_instance(
        self, instance_ids: Iterable[str], convert: Callable[[dict[str, Any]], T]
    ) -> dict[str, T]:
        """``convert`` of each instance DescribeInstances lists, by id (unknown ids left out)."""
        ids = sorted(set(instance_ids))
        if not ids:
            return {}

        def describe() -> dict[str, T]:
            found: dict[str, T] = {}
            try:
                pages = self._client().get_paginator("describe_instances").paginate(InstanceIds=ids)
                for page in pages:
                    for reservation in page.get("Reservations", []):
                        for item in reservation.get("Instances", []):
                            found[item["InstanceId"]] = convert(item)
            except Exception as exc:
                if (aws_errors.error_code(exc) or "").startswith("InvalidInstanceID"):
                    return found
                raise
            return found

        return self._call(describe, "describe instances")

    def terminate(self, instance_ids: Iterable[str]) -> list[str]:
        """Terminate these instances; idempotent. Returns the ids asked for."""
        ids = sorted(set(instance_ids))
        if not ids:
            return []

        def terminate() -> list[str]:
            try:
                self._client().terminate_instances(InstanceIds=ids)
            except Exception as exc:
                if (aws_errors.error_code(exc) or "").startswith("InvalidInstanceID.NotFound"):
                    return ids
                raise
            return ids

        return self._call(terminate, "terminate instances")

    def tagged_instances(
        self, bucket: str, prefix: str, run_name: str | None = None
    ) -> list[TaggedInstance]:
        """Live instances of the store ``bucket``/``prefix`` (and of ``run_name``, if given)."""
        filters = [
            *_store_filters(bucket, prefix),
            {"Name": "instance-state-name", "Values": sorted(LIVE_STATES)},
        ]
        if run_name:
            filters.append({"Name": f"tag:{tagging.RUN}", "Values": [tagging.clean(run_name)]})

        def search() -> list[TaggedInstance]:
            found = []
            pages = self._client().get_paginator("describe_instances").paginate(Filters=filters)
            for page in pages:
                for reservation in page.get("Reservations", []):
                    for item in reservation.get("Instances", []):
                        item_tags = _tags(item.get("Tags"))
                        found.append(
                            TaggedInstance(
                                instance_id=item["InstanceId"],
                                state=item["State"]["Name"],
                                repo_id=item_tags.get(tagging.REPO),
                                run_name=item_tags.get(tagging.RUN),
                                launched_at=_epoch(item.get("LaunchTime")),
                                lifetime_seconds=_int(item_tags.get(tagging.LIFETIME)),
                            )
                        )
            return found

        return self._call(search, "search instances by tag")

    def tagged_groups(self, bucket: str, prefix: str) -> list[TaggedGroup]:
        """Security groups of the store ``bucket``/``prefix``."""
        filters = _store_filters(bucket, prefix)

        def search() -> list[TaggedGroup]:
            found = []
            pages = (
                self._client().get_paginator("describe_security_groups").paginate(Filters=filters)
            )
            for page in pages:
                for item in page.get("SecurityGroups", []):
                    item_tags = _tags(item.get("Tags"))
                    found.append(
                        TaggedGroup(
                            group_id=item["GroupId"],
                            repo_id=item_tags.get(tagging.REPO),
                            run_name=item_tags.get(tagging.RUN),
                        )
                    )
            return found

        return self._call(search, "search security groups by tag")

    def delete_group(self, group_id: str) -> bool:
        """Delete a security group; False if EC2 refuses (still in use by an instance)."""
        try:
            self._call(
                lambda: self._client().delete_security_group(GroupId=group_id),
                "delete a security group",
            )
        except ComputeError:
            return False
        return True

    def ask(self, operation: str, what: str, **kwargs: Any) -> dict[str, Any]:
        """One EC2 call by its boto3 name (``dstack.compute.aws.preflight`` reads the network
        with it); ``what`` says what for, in the error."""
        return self._call(lambda: getattr(self._client(), operation)(**kwargs), what)

    # helpers

    def _client(self) -> Any:
        if self._client_instance is None:
            with self._lock:
                if self._client_instance is None:
                    import boto3
                    from botocore.config import Config

                    config = Config(
                        connect_timeout=2,
                        read_timeout=5,
                        retries={"max_attempts": 1, "mode": "standard"},
                        user_agent_extra="dstack",
                    )
                    session = boto3.session.Session(
                        profile_name=self.profile, region_name=self.region
                    )
                    self._client_instance = session.client(
                        "ec2", endpoint_url=self.endpoint_url, config=config
                    )
        return self._client_instance

    def _call(self, fn: Callable[[], T], what: str) -> T:
        try:
            return fn()
        except ComputeError:
            raise
        except Exception as exc:
            raise ComputeError(
                f"EC2 in {self.region} could not {what} ({aws_errors.brief(exc)})"
            ) from exc


def _store_filters(bucket: str, prefix: str) -> list[dict[str, Any]]:
    """EC2 filters matching what one store's stacks tagged: its bucket and its prefix."""
    return [
        {"Name": f"tag:{tagging.BUCKET}", "Values": [tagging.clean(bucket)]},
        {"Name": f"tag:{tagging.PREFIX}", "Values": [tagging.store_label(prefix)]},
    ]


#: the time in a state transition reason: ``User initiated (2026-12-07 21:00:00 GMT)``
_TRANSITION_TIME = re.compile(r"\((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (?:GMT|UTC)\)")


def _facts(item: dict[str, Any]) -> InstanceFacts:
    state = item["State"]["Name"]
    ended_at = None
    if state in GONE_STATES:
        found = _TRANSITION_TIME.search(item.get("StateTransitionReason") or "")
        if found:
            ended_at = _epoch(found.group(1).replace(" ", "T") + "+00:00")
    return InstanceFacts(
        instance_id=item["InstanceId"],
        state=state,
        instance_type=item.get("InstanceType"),
        availability_zone=(item.get("Placement") or {}).get("AvailabilityZone"),
        spot=item.get("InstanceLifecycle") == "spot",
        launched_at=_epoch(item.get("LaunchTime")),
        ended_at=ended_at,
    )


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    try:
        from datetime import datetime

        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _tags(items: Iterable[dict[str, str]] | None) -> dict[str, str]:
    return {item["Key"]: item["Value"] for item in items or []}
