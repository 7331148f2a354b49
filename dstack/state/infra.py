"""Records of cloud infrastructure: a cloud run's plan, up and destroy records, and the
records of the live stacks (which run each one serves)."""

from __future__ import annotations

from dstack.errors import StorageError
from dstack.models import InfraRecord, StackRecord, dump
from dstack.state.keys import (
    INFRA_KINDS,
    STACK_RECORDS_PREFIX,
    infra_key,
    legacy_infra_key,
    stack_record_key,
)
from dstack.state.records import load_record
from dstack.storage.base import Storage


def write_infra_record(storage: Storage, repo_id: str, run_name: str, record: InfraRecord) -> None:
    storage.put(infra_key(repo_id, run_name, record.kind), dump(record))


def read_infra_records(storage: Storage, repo_id: str, run_name: str) -> list[InfraRecord]:
    """The run's infrastructure records that exist, in the order plan, up, destroy.

    A run recorded before the records moved out of its prefix has them at the earlier keys,
    inside the run's prefix, which the run's own instance role may write. They are read only
    for a run without a plan at the current key (every run since writes its plan there before
    any instance of it exists), so a job cannot add a record — a ``destroy`` say — that its
    run has not written yet."""
    records = []
    plan = infra_key(repo_id, run_name, "plan")
    legacy = not storage.exists(plan)
    for kind in INFRA_KINDS:
        key = infra_key(repo_id, run_name, kind)
        data = storage.get_or_none(key)
        if data is None and legacy:  # a run recorded before the records moved
            key = legacy_infra_key(repo_id, run_name, kind)
            data = storage.get_or_none(key)
        if data is not None:
            records.append(load_record(InfraRecord, data, key))
    return records


def write_stack_record(storage: Storage, record: StackRecord) -> None:
    storage.put(stack_record_key(record.stack), dump(record))


def read_stack_record(storage: Storage, stack: str) -> StackRecord | None:
    key = stack_record_key(stack)
    data = storage.get_or_none(key)
    return None if data is None else load_record(StackRecord, data, key)


def delete_stack_record(storage: Storage, stack: str) -> None:
    storage.delete(stack_record_key(stack))


def list_stack_records(storage: Storage) -> list[StackRecord]:
    """Every readable stack record; one that is unreadable is skipped."""
    records = []
    for info in storage.list_objects(STACK_RECORDS_PREFIX):
        data = storage.get_or_none(info.key)
        if data is None:
            continue
        try:
            records.append(load_record(StackRecord, data, info.key))
        except StorageError:
            continue
    return records
