"""Releasing a finished cloud run: its stack destroyed, any instance still tagged with it
terminated (the last sweep), what it spent recorded, and the stack forgotten."""

from __future__ import annotations

from typing import Any

from dstack import state
from dstack.compute.aws.infra_records import run_recorder
from dstack.errors import ComputeError
from dstack.models import RunRecord
from dstack.storage.base import Storage
from dstack.store_config import S3StoreConfig


def release_run(compute: Any, storage: Storage, run: RunRecord) -> bool:
    """Destroy the stack of ``run`` (an ``AwsCompute``'s) once every job is finished; True
    when it was destroyed, False when there was nothing to do yet. ComputeError when the
    destroy failed (`dstack prune` retries)."""
    store = storage.config()
    if run.compute != compute.name or not isinstance(store, S3StoreConfig):
        return False
    if state.read_stack_record(storage, run.run_name) is None:
        return False
    states = [
        state.read_job_state(storage, run.repo_id, run.run_name, i) for i in range(run.job_count)
    ]
    if not all(s.status.is_finished for s in states):
        return False
    say = compute.reporter or (lambda line: None)
    driver = compute.driver(store)
    say(f"Destroying stack {run.run_name} (the run is finished)")
    record = run_recorder(storage, run, driver, None, say)
    done = driver.destroy(run.run_name, record)
    compute.sweep(store, run.run_name)
    compute.record_spend(storage, run)
    if not done:
        raise ComputeError(
            f"stack {run.run_name} could not be destroyed (see `dstack infra "
            f"{run.run_name}`); `dstack prune` retries"
        )
    state.delete_stack_record(storage, run.run_name)
    say(f"Stack {run.run_name} destroyed")
    return True
