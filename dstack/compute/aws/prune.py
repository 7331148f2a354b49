"""Finding and destroying what finished or deleted runs left behind on AWS (`dstack prune`).

Four sweeps, each saying what it did: stacks (destroyed through the engine; the bootstrap never),
instances (terminated through EC2 directly, so the cost stops even without the engine), then
security groups and runner roles no stack manages any more. Only what is tagged with this store
(its bucket *and* key prefix) is ever judged. The sweeps in detail: docs/design/cloud-runs.md.
"""

from __future__ import annotations

import gzip
import json
import time
from typing import Any

from dstack import state
from dstack.compute.aws.bootstrap import BOOTSTRAP_STACK
from dstack.compute.aws.config import PROJECT
from dstack.compute.aws.prune_report import PruneAction, PruneReport
from dstack.errors import ComputeError, DstackError, RunNotFoundError
from dstack.models import InfraRecord
from dstack.storage.base import Storage
from dstack.store_config import S3StoreConfig
from stacks import tags as tagging


def prune(
    storage: Storage, compute: Any, *, dry_run: bool = False, now: float | None = None
) -> PruneReport:
    """Destroy what runs that are finished or gone left behind; ``compute`` is an AwsCompute.
    ``now`` (the epoch time instances' lifetimes are checked against) is the clock's unless
    given."""
    store = storage.config()
    if not isinstance(store, S3StoreConfig):
        raise ComputeError(
            f"`dstack prune` looks for AWS stacks in an S3 state store; this one is "
            f"{storage.describe()}"
        )
    report = PruneReport(dry_run=dry_run)
    verdicts = _Verdicts(storage)
    stacks = _stacks(storage)
    regions = _regions(storage, compute)
    remaining = _prune_stacks(storage, compute, store, stacks, verdicts, report)
    for region in regions:
        ec2 = compute.ec2() if region == regions[0] else _ec2_in(compute, region)
        _prune_instances(ec2, store, verdicts, report, time.time() if now is None else now)
        _prune_groups(ec2, store, verdicts, remaining, report)
    from dstack.compute.aws.prune_iam import prune_roles

    prune_roles(compute, store, verdicts, remaining, report)
    return report


def _ec2_in(compute: Any, region: str) -> Any:
    from dstack.compute.aws.ec2 import Ec2

    return Ec2(region, profile=compute.config.profile, endpoint_url=compute.ec2().endpoint_url)


def _regions(storage: Storage, compute: Any) -> list[str]:
    """The configured region first, then every other region a stack record names."""
    regions = [compute.config.require_region()]
    for record in state.list_stack_records(storage):
        region = getattr(record, "region", None)
        if region and region not in regions:
            regions.append(region)
    return regions


def _prune_stacks(
    storage: Storage,
    compute: Any,
    store: S3StoreConfig,
    stacks: dict[str, tuple[str | None, str | None]],
    verdicts: _Verdicts,
    report: PruneReport,
) -> set[str]:
    """Destroy stale stacks; return the names of the stacks that still exist afterwards."""
    remaining = set()
    driver = None
    for name, (repo_id, run_name) in sorted(stacks.items()):
        run = f"{repo_id}/{run_name}" if repo_id and run_name else None
        why = verdicts.of(repo_id, run_name) if repo_id and run_name else "no run claims it"
        if why is None:
            report.kept.append((f"stack {name}", f"run {run_name} is still going"))
            remaining.add(name)
            continue
        action = PruneAction("stack", name, run, why)
        report.actions.append(action)
        if report.dry_run:
            remaining.add(name)
            continue
        try:
            driver = driver or compute.driver(store)
            action.done = driver.destroy(name, _destroy_recorder(storage, repo_id, run_name, why))
            if not action.done:
                action.error = "destroy failed; see `dstack infra`"
        except ComputeError as exc:
            action.error = str(exc)
        if action.done:
            state.delete_stack_record(storage, name)
            _record_spend(storage, compute, repo_id, run_name)
            for instance_id in compute.sweep(store, run_name) if run_name else []:
                report.actions.append(PruneAction("instance", instance_id, run, why, done=True))
        else:
            remaining.add(name)
    return remaining


def _prune_instances(
    ec2: Any, store: S3StoreConfig, verdicts: _Verdicts, report: PruneReport, now: float
) -> None:
    try:
        instances = ec2.tagged_instances(store.bucket, store.prefix)
    except DstackError as exc:
        report.errors.append(f"instances not checked: {exc}")
        return
    stale = []
    for instance in instances:
        if not instance.run_name or not instance.repo_id:
            report.kept.append((f"instance {instance.instance_id}", "it names no run"))
            continue
        why = verdicts.of(instance.repo_id, instance.run_name)
        if why is None and instance.overdue(now):
            why = "it outlived its lifetime (it should have powered itself off)"
        if why is None:
            report.kept.append(
                (f"instance {instance.instance_id}", f"run {instance.run_name} is still going")
            )
            continue
        run = f"{instance.repo_id}/{instance.run_name}"
        action = PruneAction("instance", instance.instance_id, run, why, done=False)
        report.actions.append(action)
        stale.append(action)
    if report.dry_run or not stale:
        return
    try:
        ec2.terminate(a.target for a in stale)
        for action in stale:
            action.done = True
    except ComputeError as exc:
        for action in stale:
            action.error = str(exc)


def _prune_groups(
    ec2: Any,
    store: S3StoreConfig,
    verdicts: _Verdicts,
    remaining: set[str],
    report: PruneReport,
) -> None:
    try:
        groups = ec2.tagged_groups(store.bucket, store.prefix)
    except DstackError as exc:
        report.errors.append(f"security groups not checked: {exc}")
        return
    for group in groups:
        if not group.run_name or not group.repo_id or group.run_name in remaining:
            continue  # not a run's, or its stack still manages it
        why = verdicts.of(group.repo_id, group.run_name)
        if why is None:
            continue
        action = PruneAction("security group", group.group_id, group.run_name, why)
        report.actions.append(action)
        if report.dry_run:
            continue
        action.done = ec2.delete_group(group.group_id)
        if not action.done:
            action.error = "still in use (its instance is terminating); prune again later"


def _record_spend(
    storage: Storage, compute: Any, repo_id: str | None, run_name: str | None
) -> None:
    """After a destroy: what the run spent, if its record is still there to say whose."""
    if not repo_id or not run_name:
        return
    try:
        run = state.read_run(storage, repo_id, run_name)
    except DstackError:
        return  # a deleted run: nobody to show its spend to
    compute.record_spend(storage, run)


def _stacks(storage: Storage) -> dict[str, tuple[str | None, str | None]]:
    """Every run stack, from the Pulumi state and the stack records: name → (repo, run)."""
    stacks: dict[str, tuple[str | None, str | None]] = {}
    prefix = state.pulumi_stacks_prefix(PROJECT)
    for info in storage.list_objects(prefix):
        name = info.key[len(prefix) :]
        for suffix in (".json", ".json.gz"):
            if name.endswith(suffix) and "/" not in name:
                stack = name[: -len(suffix)]
                if stack != BOOTSTRAP_STACK:
                    stacks[stack] = _owner_from_checkpoint(storage, info.key)
    for record in state.list_stack_records(storage):
        if record.stack != BOOTSTRAP_STACK:
            stacks[record.stack] = (record.repo_id, record.run_name)
    return stacks


def _owner_from_checkpoint(storage: Storage, key: str) -> tuple[str | None, str | None]:
    """The repo and run named by the tags of a stack's resources, if any."""
    data = storage.get_or_none(key)
    if data is None:
        return None, None
    try:
        if key.endswith(".gz"):
            data = gzip.decompress(data)
        checkpoint = json.loads(data)
        resources = checkpoint.get("checkpoint", {}).get("latest", {}).get("resources") or []
    except (ValueError, OSError, AttributeError):
        return None, None
    for resource in resources:
        tags = (resource.get("outputs") or {}).get("tags") or (resource.get("inputs") or {}).get(
            "tags"
        )
        if isinstance(tags, dict) and tags.get(tagging.RUN) and tags.get(tagging.REPO):
            return str(tags[tagging.REPO]), str(tags[tagging.RUN])
    return None, None


def _destroy_recorder(storage: Storage, repo_id: str | None, run_name: str | None, why: str) -> Any:
    import getpass
    import socket
    import time

    def record(kind: str, fields: dict[str, Any]) -> None:
        if not repo_id or not run_name or why.startswith("run is gone"):
            return  # the run's folder is gone: recording would bring part of it back
        entry = InfraRecord(
            kind=kind,
            stack=run_name,
            at=time.time(),
            by=f"{getpass.getuser()}@{socket.gethostname()} (dstack prune)",
            **fields,
        )
        try:
            state.write_infra_record(storage, repo_id, run_name, entry)
        except DstackError:
            pass

    return record


class _Verdicts:
    """Why a run's leftovers may go (``run is done``, ``run is gone``), or None while it
    runs; each run is read once."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._cache: dict[tuple[str, str], str | None] = {}

    def of(self, repo_id: str | None, run_name: str | None) -> str | None:
        if not repo_id or not run_name:
            return "no run claims it"
        key = (repo_id, run_name)
        if key not in self._cache:
            self._cache[key] = self._read(repo_id, run_name)
        return self._cache[key]

    def _read(self, repo_id: str, run_name: str) -> str | None:
        from dstack.models import run_status

        try:
            run = state.read_run(self.storage, repo_id, run_name)
        except RunNotFoundError:
            return "run is gone"
        statuses = [
            state.read_job_state(self.storage, repo_id, run_name, i).status
            for i in range(run.job_count)
        ]
        if all(s.is_finished for s in statuses):
            return f"run is {run_status(statuses).value}"
        return None
