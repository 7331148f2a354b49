"""The state store's key layout, and reading and writing records on a ``Storage``.

This is the only module that knows where things live. Layout (``<repo>`` is a repo id such
as ``github.com/acme/mnist`` or ``local/mnist``; ``<inv>`` is ``10**13`` minus the submit time
in milliseconds, zero-padded to 13 digits, so that a plain ascending listing is newest first)::

    codes/<sha256>.tar.gz                       code archives, content-addressed, shared
    names/<run-name>                            run-name reservations, unique in the store
    repos/<repo>/runs/<run>/run.json            RunRecord: written once (only-if-absent)
    repos/<repo>/runs/<run>/jobs/<i>/spec.json  JobSpec: written once
    repos/<repo>/runs/<run>/jobs/<i>/state.json JobState: status, reason, exit code, pids
    repos/<repo>/runs/<run>/jobs/<i>/heartbeat  touched by the runner while it lives
    repos/<repo>/runs/<run>/jobs/<i>/stop       a stop request: b"stop" or b"abort"
    repos/<repo>/runs/<run>/jobs/<i>/logs/<seq>-<ms>   output chunks, raw bytes, in order
    repos/<repo>/runs/<run>/jobs/<i>/artifacts/<path>  artifact files at their job paths
    repos/<repo>/heads/<inv>;<run>;<i>;<status>;<updated ms>;<workflow>;<owner>;<exit>
                                                one empty object per job: what `ps` shows
    repos/<repo>/active/<inv>;<run>;<i>         present while the job is unfinished
    repos/<repo>/tags/<tag>.json                tags

Listing runs costs one list request per 1,000 jobs shown: the head of a job is encoded in a key
(as the 2022 tool did), so ``ps`` never reads a record per job. A status change writes the new
head and then deletes the old one; a reader that meets both keeps the newest.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from urllib.parse import quote, unquote

from dstack.backends.base import Storage
from dstack.errors import NotFoundError, RunNotFoundError
from dstack.models import (
    JobHead,
    JobSpec,
    JobState,
    JobStatus,
    RunRecord,
    RunSummary,
    dump,
    run_status,
)

_INV_BASE = 10**13
HEARTBEAT_INTERVAL = 2.0
HEARTBEAT_TIMEOUT = 10.0


# ---- keys -------------------------------------------------------------------------------


def code_key(digest: str) -> str:
    return f"codes/{digest}.tar.gz"


def name_key(run_name: str) -> str:
    return f"names/{run_name}"


def repo_prefix(repo_id: str) -> str:
    return f"repos/{repo_id}/"


def run_prefix(repo_id: str, run_name: str) -> str:
    return f"repos/{repo_id}/runs/{run_name}/"


def run_key(repo_id: str, run_name: str) -> str:
    return run_prefix(repo_id, run_name) + "run.json"


def job_prefix(repo_id: str, run_name: str, job_index: int) -> str:
    return f"{run_prefix(repo_id, run_name)}jobs/{job_index}/"


def spec_key(repo_id: str, run_name: str, job_index: int) -> str:
    return job_prefix(repo_id, run_name, job_index) + "spec.json"


def state_key(repo_id: str, run_name: str, job_index: int) -> str:
    return job_prefix(repo_id, run_name, job_index) + "state.json"


def heartbeat_key(repo_id: str, run_name: str, job_index: int) -> str:
    return job_prefix(repo_id, run_name, job_index) + "heartbeat"


def stop_key(repo_id: str, run_name: str, job_index: int) -> str:
    return job_prefix(repo_id, run_name, job_index) + "stop"


def logs_prefix(repo_id: str, run_name: str, job_index: int) -> str:
    return job_prefix(repo_id, run_name, job_index) + "logs/"


def artifacts_prefix(repo_id: str, run_name: str, job_index: int) -> str:
    return job_prefix(repo_id, run_name, job_index) + "artifacts/"


def heads_prefix(repo_id: str) -> str:
    return f"repos/{repo_id}/heads/"


def active_prefix(repo_id: str) -> str:
    return f"repos/{repo_id}/active/"


def tags_prefix(repo_id: str) -> str:
    return f"repos/{repo_id}/tags/"


def tag_key(repo_id: str, tag: str) -> str:
    return f"{tags_prefix(repo_id)}{tag}.json"


def _inv(submitted_at: float) -> str:
    return f"{_INV_BASE - int(submitted_at * 1000):013d}"


def _job_head_stem(spec: JobSpec) -> str:
    return f"{_inv(spec.submitted_at)};{spec.run_name};{spec.job_index};"


def _head_key(spec: JobSpec, owner: str, state: JobState) -> str:
    fields = [
        state.status.value,
        str(int(state.updated_at * 1000)),
        spec.workflow,
        owner[:64],
        "" if state.exit_code is None else str(state.exit_code),
    ]
    encoded = ";".join(quote(field, safe="") for field in fields)
    return heads_prefix(spec.repo.repo_id) + _job_head_stem(spec) + encoded


def _parse_head(key: str) -> JobHead | None:
    name = key.rsplit("/", 1)[-1]
    parts = name.split(";")
    if len(parts) != 8:
        return None
    inv, run_name, index, status, updated, workflow, owner, exit_code = parts
    try:
        return JobHead(
            run_name=run_name,
            job_index=int(index),
            submitted_at=(_INV_BASE - int(inv)) / 1000,
            status=JobStatus(unquote(status)),
            updated_at=int(unquote(updated)) / 1000,
            workflow=unquote(workflow),
            owner=unquote(owner),
            exit_code=int(unquote(exit_code)) if exit_code else None,
        )
    except ValueError:
        return None


# ---- runs and jobs -----------------------------------------------------------------------


def create_run(storage: Storage, run: RunRecord, jobs: list[JobSpec]) -> None:
    """Write a new run: its record, its jobs' specs and ``submitted`` states, and heads.

    The run record is written only-if-absent, so nobody can overwrite another's run.
    """
    storage.put(run_key(run.repo_id, run.run_name), dump(run), if_absent=True)
    for spec in jobs:
        storage.put(spec_key(run.repo_id, run.run_name, spec.job_index), dump(spec), if_absent=True)
        state = JobState(status=JobStatus.SUBMITTED, updated_at=run.submitted_at)
        storage.put(active_prefix(run.repo_id) + _job_head_stem(spec).rstrip(";"), b"")
        write_job_state(storage, spec, run.owner.display, state)


def write_job_state(storage: Storage, spec: JobSpec, owner: str, state: JobState) -> None:
    """Record a job's new state, then move its head key, then drop it from the active index
    once it is finished."""
    if not state.updated_at:
        state.updated_at = time.time()
    repo_id = spec.repo.repo_id
    storage.put(state_key(repo_id, spec.run_name, spec.job_index), dump(state))
    new_head = _head_key(spec, owner, state)
    storage.put(new_head, b"")
    for info in list(storage.list_objects(heads_prefix(repo_id) + _job_head_stem(spec))):
        if info.key != new_head:
            storage.delete(info.key)
    if state.status.is_finished:
        storage.delete(active_prefix(repo_id) + _job_head_stem(spec).rstrip(";"))


def read_run(storage: Storage, repo_id: str, run_name: str) -> RunRecord:
    data = storage.get_or_none(run_key(repo_id, run_name))
    if data is None:
        raise RunNotFoundError(f"no run named {run_name!r} in {repo_id}; see `dstack ps -a`")
    return RunRecord.model_validate_json(data)


def read_job_spec(storage: Storage, repo_id: str, run_name: str, job_index: int) -> JobSpec:
    return JobSpec.model_validate_json(storage.get(spec_key(repo_id, run_name, job_index)))


def read_job_state(storage: Storage, repo_id: str, run_name: str, job_index: int) -> JobState:
    try:
        return JobState.model_validate_json(storage.get(state_key(repo_id, run_name, job_index)))
    except NotFoundError:
        return JobState(status=JobStatus.SUBMITTED)


def list_heads(storage: Storage, repo_id: str) -> Iterator[JobHead]:
    """Every job head of a repo, newest run first, one per job (stale duplicates dropped)."""
    pending: dict[tuple[str, int], JobHead] = {}
    current_stem: str | None = None
    for info in storage.list_objects(heads_prefix(repo_id)):
        head = _parse_head(info.key)
        if head is None:
            continue
        stem = info.key.rsplit("/", 1)[-1].split(";", 1)[0] + head.run_name
        if stem != current_stem:
            yield from pending.values()
            pending = {}
            current_stem = stem
        key = (head.run_name, head.job_index)
        previous = pending.get(key)
        if previous is None or head.updated_at >= previous.updated_at:
            pending[key] = head
    yield from pending.values()


def list_runs(storage: Storage, repo_id: str, *, limit: int | None = None) -> list[RunSummary]:
    """Runs of a repo, newest first, folded from their job heads. Stops reading once ``limit``
    runs are complete, so the cost grows with the runs shown, not the runs stored."""
    runs: list[RunSummary] = []
    group: list[JobHead] = []
    for head in list_heads(storage, repo_id):
        if group and (head.run_name != group[0].run_name):
            runs.append(_summarize(group))
            group = []
            if limit is not None and len(runs) >= limit:
                return runs
        group.append(head)
    if group and (limit is None or len(runs) < limit):
        runs.append(_summarize(group))
    return runs


def list_active_runs(storage: Storage, repo_id: str) -> list[RunSummary]:
    """Runs with an unfinished job: one list of the active index, then one per active run."""
    run_stems = sorted(
        {
            ";".join(info.key.rsplit("/", 1)[-1].split(";")[:2]) + ";"
            for info in storage.list_objects(active_prefix(repo_id))
        }
    )
    summaries = []
    for run_stem in run_stems:
        heads = [
            head
            for info in storage.list_objects(heads_prefix(repo_id) + run_stem)
            if (head := _parse_head(info.key)) is not None
        ]
        if heads:
            summaries.append(_summarize(_dedupe(heads)))
    return summaries


def _dedupe(heads: list[JobHead]) -> list[JobHead]:
    best: dict[int, JobHead] = {}
    for head in heads:
        if head.job_index not in best or head.updated_at >= best[head.job_index].updated_at:
            best[head.job_index] = head
    return list(best.values())


def _summarize(heads: list[JobHead]) -> RunSummary:
    heads = sorted(heads, key=lambda h: h.job_index)
    first = heads[0]
    status = run_status([h.status for h in heads])
    exit_codes = [h.exit_code for h in heads if h.exit_code]
    return RunSummary(
        run_name=first.run_name,
        workflow=first.workflow,
        submitted_at=first.submitted_at,
        status=status,
        owner=first.owner,
        updated_at=max(h.updated_at for h in heads),
        exit_code=exit_codes[0] if exit_codes else first.exit_code,
        job_count=len(heads),
    )


def delete_run(storage: Storage, run: RunRecord) -> None:
    """Remove a run entirely: its heads and active markers first (so it vanishes from `ps`),
    then its records, logs and artifacts, then its name reservation."""
    for spec_index in range(run.job_count):
        stem = f"{_inv(run.submitted_at)};{run.run_name};{spec_index};"
        storage.delete_prefix(heads_prefix(run.repo_id) + stem)
        storage.delete(active_prefix(run.repo_id) + stem.rstrip(";"))
    storage.delete_prefix(run_prefix(run.repo_id, run.run_name))
    storage.delete(name_key(run.run_name))


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


def request_stop(storage: Storage, spec: JobSpec, *, abort: bool) -> None:
    storage.put(
        stop_key(spec.repo.repo_id, spec.run_name, spec.job_index),
        b"abort" if abort else b"stop",
    )


def stop_requested(storage: Storage, spec: JobSpec) -> str | None:
    """``"stop"``, ``"abort"``, or None."""
    data = storage.get_or_none(stop_key(spec.repo.repo_id, spec.run_name, spec.job_index))
    return data.decode() if data is not None else None


# ---- logs ----------------------------------------------------------------------------------


def log_chunk_key(spec: JobSpec, seq: int, at: float) -> str:
    return f"{logs_prefix(spec.repo.repo_id, spec.run_name, spec.job_index)}{seq:010d}-{int(at * 1000)}"


def chunk_time(key: str) -> float:
    """When a log chunk was written, from its key."""
    return int(key.rsplit("-", 1)[-1]) / 1000


def write_log_chunk(storage: Storage, spec: JobSpec, seq: int, data: bytes) -> None:
    storage.put(log_chunk_key(spec, seq, time.time()), data)
