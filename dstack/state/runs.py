"""Runs and their jobs' records: creating a run, job specs and states, the heads that
``ps`` lists, folding heads into run summaries, and deleting a run."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from itertools import islice

from dstack.errors import InvalidStateError, NotFoundError, RunNotFoundError, StorageError
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
from dstack.state.keys import (
    active_prefix,
    artifacts_prefix,
    head_key,
    heads_prefix,
    infra_records_prefix,
    inverted_time,
    job_head_stem,
    logs_prefix,
    name_key,
    parse_head,
    repo_prefix,
    run_index_stems,
    run_key,
    run_prefix,
    spec_key,
    spend_key,
    state_key,
    state_version_key,
)
from dstack.state.records import load_record
from dstack.storage.base import Storage


def create_run(storage: Storage, run: RunRecord, jobs: list[JobSpec]) -> dict[int, str]:
    """Write a new run: its record, its jobs' specs and ``submitted`` states, and heads; the
    SHA-256 of each spec as written, by job index (its pin: ``state.pins``).

    The run record is written only-if-absent, so nobody can overwrite another's run.
    """
    storage.put(run_key(run.repo_id, run.run_name), dump(run), if_absent=True)
    digests: dict[int, str] = {}
    try:
        for spec in jobs:
            key = spec_key(run.repo_id, run.run_name, spec.job_index)
            data = dump(spec)
            storage.put(key, data, if_absent=True)
            digests[spec.job_index] = hashlib.sha256(data).hexdigest()
            state = JobState(status=JobStatus.SUBMITTED, updated_at=run.submitted_at, version=1)
            storage.put(active_prefix(run.repo_id) + job_head_stem(spec).rstrip(";"), b"")
            record_job_state(storage, spec, run.owner.display, state)
    except Exception:  # nothing half-written stays behind: no orphan run.json `ps` never shows
        for spec in jobs:
            for prefix in run_index_stems(run.repo_id, run.run_name, spec.submitted_at):
                with contextlib.suppress(Exception):
                    storage.delete_prefix(prefix)
        with contextlib.suppress(Exception):
            storage.delete_prefix(run_prefix(run.repo_id, run.run_name))
        raise
    return digests


def record_job_state(storage: Storage, spec: JobSpec, owner: str, state: JobState) -> None:
    """Record ``state`` as the job's state number ``state.version``.

    The number is claimed only-if-absent (``states/<version>.json``), so of two writers that
    read the same state and both change it, one records its change and the other gets
    ``AlreadyExistsError`` (a compare-and-swap; ``dstack.lifecycle`` re-reads and decides
    again). Only then is the state published: ``state.json`` (what readers read), the job's
    head (what ``ps`` lists), and the active index once it is finished. A writer that finds a
    newer claim after publishing publishes that one instead, so ``state.json`` ends at the
    newest state whatever order the writes land in.
    """
    repo_id = spec.repo.repo_id
    claim = state_version_key(repo_id, spec.run_name, spec.job_index, state.version)
    storage.put(claim, dump(state), if_absent=True)
    newest = state
    while True:
        storage.put(state_key(repo_id, spec.run_name, spec.job_index), dump(newest))
        following = _claimed(storage, spec, newest.version + 1)
        if following is None:
            break
        newest = following
    new_head = head_key(spec, owner, newest)
    storage.put(new_head, b"")
    # Older heads go; a newer one (a writer that recorded after this one and already published)
    # stays, and so may this one if it lands late: readers keep the newest head of a job.
    mine = parse_head(new_head)
    for info in list(storage.list_objects(heads_prefix(repo_id) + job_head_stem(spec))):
        other = parse_head(info.key)
        if info.key != new_head and (
            other is None or mine is None or other.updated_at < mine.updated_at
        ):
            storage.delete(info.key)
    if newest.status.is_finished:
        storage.delete(active_prefix(repo_id) + job_head_stem(spec).rstrip(";"))


def read_latest_job_state(storage: Storage, spec: JobSpec) -> JobState:
    """The job's newest recorded state: ``state.json``, or a newer claim not yet published
    (what a writer must decide from; readers may use ``read_job_state``)."""
    newest = read_job_state(storage, spec.repo.repo_id, spec.run_name, spec.job_index)
    while (following := _claimed(storage, spec, newest.version + 1)) is not None:
        newest = following
    return newest


def _claimed(storage: Storage, spec: JobSpec, version: int) -> JobState | None:
    key = state_version_key(spec.repo.repo_id, spec.run_name, spec.job_index, version)
    data = storage.get_or_none(key)
    return None if data is None else load_record(JobState, data, key)


def read_run(storage: Storage, repo_id: str, run_name: str) -> RunRecord:
    key = run_key(repo_id, run_name)
    data = storage.get_or_none(key)
    if data is None:
        raise RunNotFoundError(f"no run named {run_name!r} in {repo_id}; see `dstack ps -a`")
    return load_record(RunRecord, data, key)


def read_job_spec(storage: Storage, repo_id: str, run_name: str, job_index: int) -> JobSpec:
    key = spec_key(repo_id, run_name, job_index)
    return load_record(JobSpec, storage.get(key), key)


def read_job_state(storage: Storage, repo_id: str, run_name: str, job_index: int) -> JobState:
    key = state_key(repo_id, run_name, job_index)
    try:
        data = storage.get(key)
    except NotFoundError:
        return JobState(status=JobStatus.SUBMITTED)
    return load_record(JobState, data, key)


def list_heads(storage: Storage, repo_id: str) -> Iterator[JobHead]:
    """Every job head of a repo, newest run first, one per job (stale duplicates dropped)."""
    pending: dict[tuple[str, int], JobHead] = {}
    current_stem: str | None = None
    for info in storage.list_objects(heads_prefix(repo_id)):
        head = parse_head(info.key)
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
    return list(islice(iter_runs(storage, repo_id), limit))


def iter_runs(storage: Storage, repo_id: str) -> Iterator[RunSummary]:
    """Runs of a repo, newest first, read lazily: stop iterating and the listing stops."""
    group: list[JobHead] = []
    for head in list_heads(storage, repo_id):
        if group and (head.run_name != group[0].run_name):
            yield _summarize(group)
            group = []
        group.append(head)
    if group:
        yield _summarize(group)


def latest_run(
    storage: Storage, repo_id: str, workflow: str, status: JobStatus = JobStatus.DONE
) -> RunSummary | None:
    """The newest run of ``workflow`` with ``status``; reads runs newest first and stops at it."""
    return next(
        (r for r in iter_runs(storage, repo_id) if r.workflow == workflow and r.status is status),
        None,
    )


def repo_exists(storage: Storage, repo_id: str) -> bool:
    """Whether anything of ``repo_id`` is in the store (one list request, one key read)."""
    return next(iter(storage.list_objects(repo_prefix(repo_id))), None) is not None


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
            if (head := parse_head(info.key)) is not None
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
    """Remove a run entirely: its jobs' artifacts and logs first (the bulk: a failure there
    leaves the run listed in `ps`, so `dstack rm` can be run again, never an orphan), then its
    heads and active markers (it vanishes from `ps`), its records, its name reservation."""
    for spec_index in range(run.job_count):
        storage.delete_prefix(artifacts_prefix(run.repo_id, run.run_name, spec_index))
        storage.delete_prefix(logs_prefix(run.repo_id, run.run_name, spec_index))
    for spec_index in range(run.job_count):
        stem = f"{inverted_time(run.submitted_at)};{run.run_name};{spec_index};"
        storage.delete_prefix(heads_prefix(run.repo_id) + stem)
        storage.delete(active_prefix(run.repo_id) + stem.rstrip(";"))
    storage.delete_prefix(run_prefix(run.repo_id, run.run_name))
    _delete_infra_records(storage, run.repo_id, run.run_name)
    storage.delete(name_key(run.run_name))


def delete_damaged_run(storage: Storage, repo_id: str, run_name: str) -> None:
    """Remove a run some record of which is unreadable. Refuses (InvalidStateError) while a
    job state that can be read says the job is unfinished; otherwise deletes its index
    entries (found by name in the repo's index), its records, logs and artifacts."""
    for info in storage.list_objects(run_prefix(repo_id, run_name) + "jobs/"):
        if info.key.endswith("/state.json"):
            with contextlib.suppress(StorageError):
                job_state = load_record(JobState, storage.get(info.key), info.key)
                if not job_state.status.is_finished:
                    raise InvalidStateError(
                        f"run {run_name} is {job_state.status.value}: stop it first "
                        f"(`dstack stop {run_name}`)"
                    )
    for prefix in (heads_prefix(repo_id), active_prefix(repo_id)):
        for info in storage.list_objects(prefix):
            if info.key[len(prefix) :].split(";")[1:2] == [run_name]:
                storage.delete(info.key)
    storage.delete_prefix(run_prefix(repo_id, run_name))
    _delete_infra_records(storage, repo_id, run_name)
    storage.delete(name_key(run_name))


def _delete_infra_records(storage: Storage, repo_id: str, run_name: str) -> None:
    """The run's infrastructure records, but for what it spent (``state.spend``: kept, so
    that sums and budgets still count a removed run)."""
    kept = spend_key(repo_id, run_name)
    for info in storage.list_objects(infra_records_prefix(repo_id, run_name)):
        if info.key != kept:
            storage.delete(info.key)


def run_heads(storage: Storage, spec: JobSpec) -> list[JobHead]:
    """The heads of every job of the run ``spec`` belongs to, by job index: one list request
    (what a job of a multi-node run watches its siblings with)."""
    heads_stem, _ = run_index_stems(spec.repo.repo_id, spec.run_name, spec.submitted_at)
    heads = [head for info in storage.list_objects(heads_stem) if (head := parse_head(info.key))]
    return sorted(_dedupe(heads), key=lambda head: head.job_index)
