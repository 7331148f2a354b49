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
    repos/<repo>/runs/<run>/succeeded/<i>       a job of a run to be tagged (`run -t`) succeeded
    repos/<repo>/heads/<inv>;<run>;<i>;<status>;<updated ms>;<workflow>;<owner>;<exit>
                                                one empty object per job: what `ps` shows
    repos/<repo>/active/<inv>;<run>;<i>         present while the job is unfinished
    repos/<repo>/tags/<tag>.json                Tag: created only-if-absent, replaced on request
    repos/<repo>/tagdata/<tag>/<upload>/<path>  files of a tag uploaded from local folders;
                                                ``<upload>`` is new for every upload
    repos/<repo>/runs/<run>/infra/<kind>.json   InfraRecord of a cloud run: plan, up, destroy
    repos/<repo>/runs/<run>/infra/boot-<i>.log  the instance's boot log, uploaded at shutdown
    infra/stacks/<stack>.json                   StackRecord: the run a live cloud stack serves
    infra/bootstrap/<kind>.json                 InfraRecord of the bootstrap stack (`dstack config`)
    pulumi/                                     the Pulumi project's own state (DIY backend)
    dist/<digest>/dstack-<version>-py3-none-any.whl   the CLI's wheel, installed by instances
    repos/<repo>/secrets/<NAME>                 SecretRecord: private (0600 / SSE-KMS); only
                                                runners and `dstack secrets` read it
    repos/<repo>/runs/<run>/jobs/<i>/token      the token of the job's app (lab, notebook,
                                                code): private, written by its runner
    repos/<repo>/runs/<run>/rendezvous.json     Rendezvous: where a multi-node run's master
                                                listens (torchrun), written by job 0's runner

Listing runs costs one list request per 1,000 jobs shown: the head of a job is encoded in a key
(as the 2022 tool did), so ``ps`` never reads a record per job. A status change writes the new
head and then deletes the old one; a reader that meets both keeps the newest.

A tag points at artifacts, it does not copy them: a run's tag at the run's job artifacts (so
``rm`` refuses a tagged run), an uploaded tag at its own ``tagdata`` folder. What a tag or a
resolved dependency points at never changes once written (a finished run's artifacts, or one
upload), so machines may cache it under :attr:`ArtifactSource.identity`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from urllib.parse import quote, unquote

from dstack.backends.base import Storage
from dstack.errors import NotFoundError, RunNotFoundError
from dstack.models import (
    Dependency,
    InfraRecord,
    JobHead,
    JobSpec,
    JobState,
    JobStatus,
    Rendezvous,
    RunRecord,
    RunSummary,
    SecretRecord,
    StackRecord,
    Tag,
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


def tag_data_prefix(repo_id: str, tag: str, upload_id: str) -> str:
    return f"repos/{repo_id}/tagdata/{tag}/{upload_id}/"


def succeeded_prefix(repo_id: str, run_name: str) -> str:
    return run_prefix(repo_id, run_name) + "succeeded/"


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


# ---- tags and what they point at -----------------------------------------------------------


def read_tag(storage: Storage, repo_id: str, name: str) -> Tag | None:
    data = storage.get_or_none(tag_key(repo_id, name))
    return Tag.model_validate_json(data) if data is not None else None


def write_tag(storage: Storage, tag: Tag, *, replace: bool = False) -> None:
    """Create ``tag``; ``AlreadyExistsError`` if the name is taken, unless ``replace``."""
    storage.put(tag_key(tag.repo_id, tag.name), dump(tag), if_absent=not replace)


def list_tags(storage: Storage, repo_id: str) -> list[Tag]:
    """Every tag of a repo, by name: one list request and one read per tag."""
    prefix = tags_prefix(repo_id)
    tags = []
    for info in storage.list_objects(prefix):
        name = info.key[len(prefix) :]
        if name.endswith(".json") and "/" not in name:
            tag = read_tag(storage, repo_id, name.removesuffix(".json"))
            if tag is not None:
                tags.append(tag)
    return sorted(tags, key=lambda t: t.name)


def delete_tag(storage: Storage, tag: Tag) -> None:
    """Remove a tag, then the uploaded files it alone points at (a run's artifacts stay)."""
    storage.delete(tag_key(tag.repo_id, tag.name))
    delete_tag_data(storage, tag)


def delete_tag_data(storage: Storage, tag: Tag) -> None:
    if tag.upload_id:
        storage.delete_prefix(tag_data_prefix(tag.repo_id, tag.name, tag.upload_id))


def mark_job_succeeded(storage: Storage, repo_id: str, run_name: str, job_index: int) -> None:
    storage.put(succeeded_prefix(repo_id, run_name) + str(job_index), b"")


def succeeded_jobs(storage: Storage, repo_id: str, run_name: str) -> int:
    """How many jobs of the run have marked themselves succeeded (one list request)."""
    return sum(1 for _ in storage.list_objects(succeeded_prefix(repo_id, run_name)))


@dataclass(frozen=True)
class ArtifactSource:
    """One folder of artifacts in the store: files are ``prefix + <path>``, ``<path>`` relative
    to the working directory of the job that wrote them. ``identity`` names the content for
    good (a finished run's job, or one upload), so machines can cache it under that name."""

    prefix: str
    identity: str
    job_index: int = 0


def dependency_sources(storage: Storage, dep: Dependency) -> list[ArtifactSource]:
    """Where a dependency's files are, in job order. ``RunNotFoundError`` if its run is gone."""
    if dep.run_name is None:
        if dep.tag is None or dep.upload_id is None:
            raise ValueError(f"dependency {dep!r} names neither a run nor an upload")
        prefix = tag_data_prefix(dep.repo_id, dep.tag, dep.upload_id)
        return [ArtifactSource(prefix, f"{dep.repo_id}/tagdata/{dep.tag}/{dep.upload_id}")]
    run = read_run(storage, dep.repo_id, dep.run_name)
    # A run name may be reused after `rm`: its submit time makes the identity unique.
    identity = f"{dep.repo_id}/runs/{run.run_name}@{int(run.submitted_at * 1000)}"
    return [
        ArtifactSource(artifacts_prefix(dep.repo_id, run.run_name, i), f"{identity}/{i}", i)
        for i in range(run.job_count)
    ]


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


# ---- attempts ------------------------------------------------------------------------------


def attempts_prefix(repo_id: str, run_name: str, job_index: int) -> str:
    return job_prefix(repo_id, run_name, job_index) + "attempts/"


def record_attempt(storage: Storage, spec: JobSpec, ended: JobState) -> None:
    """Keep the final state of an attempt that is followed by another one."""
    key = attempts_prefix(spec.repo.repo_id, spec.run_name, spec.job_index)
    storage.put(f"{key}{ended.attempt:04d}.json", dump(ended))


def list_attempts(storage: Storage, spec: JobSpec) -> list[JobState]:
    """The ended attempts that were followed by another one, oldest first."""
    prefix = attempts_prefix(spec.repo.repo_id, spec.run_name, spec.job_index)
    return [
        JobState.model_validate_json(storage.get(info.key)) for info in storage.list_objects(prefix)
    ]


def next_log_seq(storage: Storage, spec: JobSpec) -> int:
    """The sequence number the job's next log chunk takes (one list request)."""
    last = None
    for info in storage.list_objects(logs_prefix(spec.repo.repo_id, spec.run_name, spec.job_index)):
        last = info.key
    return 0 if last is None else int(last.rsplit("/", 1)[-1].split("-", 1)[0]) + 1


# ---- cloud infrastructure ----------------------------------------------------------------

INFRA_KINDS = ("plan", "up", "destroy")
#: the store folder holding the Pulumi project's state (a DIY backend), and its stack files
PULUMI_STATE_PREFIX = "pulumi/"
STACK_RECORDS_PREFIX = "infra/stacks/"
WHEELS_PREFIX = "dist/"


def infra_prefix(repo_id: str, run_name: str) -> str:
    return run_prefix(repo_id, run_name) + "infra/"


def infra_key(repo_id: str, run_name: str, kind: str) -> str:
    if kind not in INFRA_KINDS:
        raise ValueError(f"unknown infrastructure record {kind!r}")
    return f"{infra_prefix(repo_id, run_name)}{kind}.json"


def bootstrap_infra_key(kind: str) -> str:
    if kind not in INFRA_KINDS:
        raise ValueError(f"unknown infrastructure record {kind!r}")
    return f"infra/bootstrap/{kind}.json"


def boot_log_key(repo_id: str, run_name: str, job_index: int) -> str:
    return f"{infra_prefix(repo_id, run_name)}boot-{job_index}.log"


def stack_record_key(stack: str) -> str:
    return f"{STACK_RECORDS_PREFIX}{stack}.json"


def pulumi_stacks_prefix(project: str) -> str:
    """Where a DIY Pulumi backend rooted at ``PULUMI_STATE_PREFIX`` keeps ``project``'s stacks."""
    return f"{PULUMI_STATE_PREFIX}.pulumi/stacks/{project}/"


def wheel_key(digest: str, filename: str) -> str:
    return f"{WHEELS_PREFIX}{digest}/{filename}"


def run_index_stems(repo_id: str, run_name: str, submitted_at: float) -> tuple[str, str]:
    """The key prefixes of the run's entries in the repo's ``heads`` and ``active`` indexes
    (what a runner rewrites when its job's status changes)."""
    stem = f"{_inv(submitted_at)};{run_name};"
    return heads_prefix(repo_id) + stem, active_prefix(repo_id) + stem


def write_infra_record(storage: Storage, repo_id: str, run_name: str, record: InfraRecord) -> None:
    storage.put(infra_key(repo_id, run_name, record.kind), dump(record))


def read_infra_records(storage: Storage, repo_id: str, run_name: str) -> list[InfraRecord]:
    """The run's infrastructure records that exist, in the order plan, up, destroy."""
    records = []
    for kind in INFRA_KINDS:
        data = storage.get_or_none(infra_key(repo_id, run_name, kind))
        if data is not None:
            records.append(InfraRecord.model_validate_json(data))
    return records


def write_stack_record(storage: Storage, record: StackRecord) -> None:
    storage.put(stack_record_key(record.stack), dump(record))


def read_stack_record(storage: Storage, stack: str) -> StackRecord | None:
    data = storage.get_or_none(stack_record_key(stack))
    return None if data is None else StackRecord.model_validate_json(data)


def delete_stack_record(storage: Storage, stack: str) -> None:
    storage.delete(stack_record_key(stack))


def list_stack_records(storage: Storage) -> list[StackRecord]:
    records = []
    for info in storage.list_objects(STACK_RECORDS_PREFIX):
        data = storage.get_or_none(info.key)
        if data is None:
            continue
        try:
            records.append(StackRecord.model_validate_json(data))
        except ValueError:
            continue
    return records


# ---- secrets, app tokens, rendezvous -------------------------------------------------------


def secrets_prefix(repo_id: str) -> str:
    return f"repos/{repo_id}/secrets/"


def secret_key(repo_id: str, name: str) -> str:
    return secrets_prefix(repo_id) + name


def app_token_key(repo_id: str, run_name: str, job_index: int) -> str:
    return job_prefix(repo_id, run_name, job_index) + "token"


def rendezvous_key(repo_id: str, run_name: str) -> str:
    return run_prefix(repo_id, run_name) + "rendezvous.json"


def write_secret(storage: Storage, repo_id: str, secret: SecretRecord) -> None:
    """Store a secret owner-only / encrypted (``private``), replacing one of the same name."""
    storage.put(secret_key(repo_id, secret.name), dump(secret), private=True)


def read_secret(storage: Storage, repo_id: str, name: str) -> SecretRecord | None:
    data = storage.get_or_none(secret_key(repo_id, name))
    return None if data is None else SecretRecord.model_validate_json(data)


def list_secret_names(storage: Storage, repo_id: str) -> list[str]:
    """The names of the repo's secrets, sorted (one list request; no value is read)."""
    prefix = secrets_prefix(repo_id)
    return sorted(
        name
        for info in storage.list_objects(prefix)
        if "/" not in (name := info.key[len(prefix) :])
    )


def delete_secret(storage: Storage, repo_id: str, name: str) -> None:
    storage.delete(secret_key(repo_id, name))


def write_app_token(storage: Storage, spec: JobSpec, token: str) -> None:
    key = app_token_key(spec.repo.repo_id, spec.run_name, spec.job_index)
    storage.put(key, token.encode(), private=True)


def read_app_token(storage: Storage, spec: JobSpec) -> str | None:
    data = storage.get_or_none(app_token_key(spec.repo.repo_id, spec.run_name, spec.job_index))
    return None if data is None else data.decode()


def write_rendezvous(storage: Storage, spec: JobSpec, rendezvous: Rendezvous) -> None:
    storage.put(rendezvous_key(spec.repo.repo_id, spec.run_name), dump(rendezvous))


def read_rendezvous(storage: Storage, spec: JobSpec) -> Rendezvous | None:
    data = storage.get_or_none(rendezvous_key(spec.repo.repo_id, spec.run_name))
    return None if data is None else Rendezvous.model_validate_json(data)


def run_heads(storage: Storage, spec: JobSpec) -> list[JobHead]:
    """The heads of every job of the run ``spec`` belongs to, by job index: one list request
    (what a job of a multi-node run watches its siblings with)."""
    heads_stem, _ = run_index_stems(spec.repo.repo_id, spec.run_name, spec.submitted_at)
    heads = [head for info in storage.list_objects(heads_stem) if (head := _parse_head(info.key))]
    return sorted(_dedupe(heads), key=lambda head: head.job_index)
