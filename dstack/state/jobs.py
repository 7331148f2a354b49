"""What a job's runner writes and reads while the job lives: heartbeats, stop requests, log
chunks, earlier attempts, the token of its app, and the rendezvous of a multi-node run."""

from __future__ import annotations

import json
import time

from dstack.models import JobSpec, JobState, Owner, Rendezvous, dump
from dstack.state.keys import (
    app_token_key,
    attempts_prefix,
    heartbeat_key,
    log_chunk_key,
    logs_prefix,
    rendezvous_key,
    stop_key,
)
from dstack.state.records import load_record
from dstack.storage.base import Storage

HEARTBEAT_INTERVAL = 2.0
HEARTBEAT_TIMEOUT = 10.0

# ---- heartbeats and stop requests ---------------------------------------------------------


def beat(storage: Storage, spec: JobSpec) -> None:
    storage.put(
        heartbeat_key(spec.repo.repo_id, spec.run_name, spec.job_index),
        json.dumps({"t": time.time()}).encode(),
    )


def last_heartbeat(storage: Storage, spec: JobSpec) -> float | None:
    data = storage.get_or_none(heartbeat_key(spec.repo.repo_id, spec.run_name, spec.job_index))
    if data is None:
        return None
    try:
        return float(json.loads(data)["t"])
    except (ValueError, KeyError, TypeError):
        return None


def request_stop(storage: Storage, spec: JobSpec, *, abort: bool, by: Owner | None = None) -> None:
    """Ask the job's runner to stop (or abort), recording who asked (``state.actions``)."""
    from dstack.state.actions import encode_stop

    storage.put(stop_key(spec.repo.repo_id, spec.run_name, spec.job_index), encode_stop(abort, by))


def stop_requested(storage: Storage, spec: JobSpec) -> str | None:
    """``"stop"``, ``"abort"``, or None."""
    from dstack.state.actions import decode_stop

    data = storage.get_or_none(stop_key(spec.repo.repo_id, spec.run_name, spec.job_index))
    action = decode_stop(data) if data is not None else None
    return action.request if action is not None else None


# ---- logs and attempts ---------------------------------------------------------------------


def write_log_chunk(storage: Storage, spec: JobSpec, seq: int, data: bytes) -> None:
    storage.put(log_chunk_key(spec, seq, time.time()), data)


def next_log_seq(storage: Storage, spec: JobSpec) -> int:
    """The sequence number the job's next log chunk takes (one list request)."""
    last = None
    for info in storage.list_objects(logs_prefix(spec.repo.repo_id, spec.run_name, spec.job_index)):
        last = info.key
    return 0 if last is None else int(last.rsplit("/", 1)[-1].split("-", 1)[0]) + 1


def record_attempt(storage: Storage, spec: JobSpec, ended: JobState) -> None:
    """Keep the final state of an attempt that is followed by another one."""
    key = attempts_prefix(spec.repo.repo_id, spec.run_name, spec.job_index)
    storage.put(f"{key}{ended.attempt:04d}.json", dump(ended))


def list_attempts(storage: Storage, spec: JobSpec) -> list[JobState]:
    """The ended attempts that were followed by another one, oldest first."""
    prefix = attempts_prefix(spec.repo.repo_id, spec.run_name, spec.job_index)
    return [
        load_record(JobState, storage.get(info.key), info.key)
        for info in storage.list_objects(prefix)
    ]


# ---- app tokens and rendezvous ------------------------------------------------------------


def write_app_token(storage: Storage, spec: JobSpec, token: str) -> None:
    key = app_token_key(spec.repo.repo_id, spec.run_name, spec.job_index)
    storage.put(key, token.encode(), private=True)


def read_app_token(storage: Storage, spec: JobSpec) -> str | None:
    data = storage.get_or_none(app_token_key(spec.repo.repo_id, spec.run_name, spec.job_index))
    return None if data is None else data.decode()


def write_rendezvous(storage: Storage, spec: JobSpec, rendezvous: Rendezvous) -> None:
    storage.put(rendezvous_key(spec.repo.repo_id, spec.run_name), dump(rendezvous))


def read_rendezvous(storage: Storage, spec: JobSpec) -> Rendezvous | None:
    key = rendezvous_key(spec.repo.repo_id, spec.run_name)
    data = storage.get_or_none(key)
    return None if data is None else load_record(Rendezvous, data, key)
