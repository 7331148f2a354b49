"""The state store's key layout, and reading and writing records on a ``Storage``.

This is the only module that knows where things live: every key is made here (runs under
``repos/<repo>/runs/<run>/``, code objects under ``code/``, one empty ``heads/`` object per job
so that ``ps`` lists instead of reading). The whole layout and why: docs/design/state-layout.md.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

from dstack.models import JobHead, JobSpec, JobState, JobStatus

_INV_BASE = 10**13


CODE_BLOBS_PREFIX = "code/blobs/"
CODE_TREES_PREFIX = "code/trees/"
_TREE_SUFFIX = ".json.gz"


def code_key(digest: str) -> str:
    """The key of a whole-tree code archive (written by earlier versions; still readable)."""
    return f"codes/{digest}.tar.gz"


def code_tree_key(digest: str) -> str:
    return f"{CODE_TREES_PREFIX}{digest}{_TREE_SUFFIX}"


def code_blob_key(digest: str) -> str:
    return f"{CODE_BLOBS_PREFIX}{digest}"


def code_digest(key: str) -> tuple[str, str]:
    """(``"tree"`` or ``"archive"``, sha256) of a run's code key; ValueError for anything else."""
    name = key.rsplit("/", 1)[-1]
    if key.startswith(CODE_TREES_PREFIX) and name.endswith(_TREE_SUFFIX):
        kind, digest = "tree", name[: -len(_TREE_SUFFIX)]
    elif key.startswith("codes/") and name.endswith(".tar.gz"):
        kind, digest = "archive", name[: -len(".tar.gz")]
    else:
        raise ValueError(f"not a code key: {key!r}")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"not a code key: {key!r}")
    return kind, digest


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


def state_version_key(repo_id: str, run_name: str, job_index: int, version: int) -> str:
    return f"{job_prefix(repo_id, run_name, job_index)}states/{version:08d}.json"


def heartbeat_key(repo_id: str, run_name: str, job_index: int) -> str:
    return job_prefix(repo_id, run_name, job_index) + "heartbeat"


def stop_key(repo_id: str, run_name: str, job_index: int) -> str:
    return job_prefix(repo_id, run_name, job_index) + "stop"


def logs_prefix(repo_id: str, run_name: str, job_index: int) -> str:
    return job_prefix(repo_id, run_name, job_index) + "logs/"


def metrics_prefix(repo_id: str, run_name: str, job_index: int) -> str:
    return job_prefix(repo_id, run_name, job_index) + "metrics/"


def artifacts_prefix(repo_id: str, run_name: str, job_index: int) -> str:
    return job_prefix(repo_id, run_name, job_index) + "artifacts/"


def attempts_prefix(repo_id: str, run_name: str, job_index: int) -> str:
    return job_prefix(repo_id, run_name, job_index) + "attempts/"


def app_token_key(repo_id: str, run_name: str, job_index: int) -> str:
    return job_prefix(repo_id, run_name, job_index) + "token"


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


def upload_manifest_key(repo_id: str, tag: str, upload_id: str) -> str:
    return f"repos/{repo_id}/tagdata/{tag}/{upload_id}.manifest.json"


def job_manifest_key(repo_id: str, run_name: str, job_index: int) -> str:
    return job_prefix(repo_id, run_name, job_index) + "manifest.json"


def removed_key(repo_id: str, run_name: str) -> str:
    return f"{repo_prefix(repo_id)}removed/{run_name}.json"


def succeeded_prefix(repo_id: str, run_name: str) -> str:
    return run_prefix(repo_id, run_name) + "succeeded/"


def rendezvous_key(repo_id: str, run_name: str) -> str:
    return run_prefix(repo_id, run_name) + "rendezvous.json"


def secrets_prefix(repo_id: str) -> str:
    return f"repos/{repo_id}/secrets/"


def secret_key(repo_id: str, name: str) -> str:
    return secrets_prefix(repo_id) + name


# ---- heads: a job's listing entry, encoded in its key --------------------------------------


def inverted_time(submitted_at: float) -> str:
    return f"{_INV_BASE - int(submitted_at * 1000):013d}"


def job_head_stem(spec: JobSpec) -> str:
    return f"{inverted_time(spec.submitted_at)};{spec.run_name};{spec.job_index};"


def head_key(spec: JobSpec, owner: str, state: JobState) -> str:
    fields = [
        quote(state.status.value, safe=""),
        str(int(state.updated_at * 1000)),
        quote(spec.workflow, safe=""),
        bounded_quote(owner, MAX_OWNER_BYTES),
        "" if state.exit_code is None else str(state.exit_code),
    ]
    encoded = ";".join(fields)
    return heads_prefix(spec.repo.repo_id) + job_head_stem(spec) + encoded


MAX_OWNER_BYTES = 64
"""The longest owner in a head key, as quoted: ``user.name`` is cut at a character boundary
to fit, so a name in any script keeps every head key far under 255 bytes (workflow names are
at most 64 characters of ``[A-Za-z0-9._-]``)."""


def bounded_quote(text: str, limit: int) -> str:
    """``text`` URL-quoted, cut (by whole characters) so the quoted form is at most ``limit``."""
    quoted = quote(text, safe="")
    while len(quoted) > limit:
        text = text[:-1]
        quoted = quote(text, safe="")
    return quoted


def parse_head(key: str) -> JobHead | None:
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


def run_index_stems(repo_id: str, run_name: str, submitted_at: float) -> tuple[str, str]:
    """The key prefixes of the run's entries in the repo's ``heads`` and ``active`` indexes
    (what a runner rewrites when its job's status changes)."""
    stem = f"{inverted_time(submitted_at)};{run_name};"
    return heads_prefix(repo_id) + stem, active_prefix(repo_id) + stem


# ---- log chunks --------------------------------------------------------------------------


def chunk_seq(key: str) -> int | None:
    """The sequence number of a log chunk, from its key (None if not a chunk's)."""
    try:
        return int(key.rsplit("/", 1)[-1].split("-", 1)[0])
    except ValueError:
        return None


def log_chunk_key(spec: JobSpec, seq: int, at: float) -> str:
    return f"{logs_prefix(spec.repo.repo_id, spec.run_name, spec.job_index)}{seq:010d}-{int(at * 1000)}"


def chunk_time(key: str) -> float:
    """When a log chunk was written, from its key."""
    return int(key.rsplit("-", 1)[-1]) / 1000


# ---- metric chunks -----------------------------------------------------------------------


def metric_chunk_key(spec: JobSpec, attempt: int, seq: int, points: int) -> str:
    """A chunk of the job's metric points: its attempt, its number within the attempt, and
    how many points it holds (so a reader can skip it without reading it)."""
    prefix = metrics_prefix(spec.repo.repo_id, spec.run_name, spec.job_index)
    return f"{prefix}{attempt:04d}-{seq:010d}-{points}"


def parse_metric_chunk_key(key: str) -> tuple[int, int, int] | None:
    """(attempt, seq, points) of a metric chunk, from its key (None if not a chunk's)."""
    parts = key.rsplit("/", 1)[-1].split("-")
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts):
        return None
    attempt, seq, points = (int(part) for part in parts)
    return attempt, seq, points


# ---- cloud infrastructure ----------------------------------------------------------------

INFRA_KINDS = ("plan", "up", "destroy")
#: the store folder holding the Pulumi project's state (a DIY backend), and its stack files
PULUMI_STATE_PREFIX = "pulumi/"
STACK_RECORDS_PREFIX = "infra/stacks/"
WHEELS_PREFIX = "dist/"


def infra_prefix(repo_id: str, run_name: str) -> str:
    return run_prefix(repo_id, run_name) + "infra/"


#: where a run's plan, up and destroy records live: outside the run's own prefix, which its
#: instance's role may write, so that a job cannot rewrite the audit trail of its run
INFRA_RECORDS_PREFIX = "infra/runs/"


def infra_records_prefix(repo_id: str, run_name: str) -> str:
    return f"{INFRA_RECORDS_PREFIX}{repo_id}/{run_name}/"


def infra_key(repo_id: str, run_name: str, kind: str) -> str:
    if kind not in INFRA_KINDS:
        raise ValueError(f"unknown infrastructure record {kind!r}")
    return f"{infra_records_prefix(repo_id, run_name)}{kind}.json"


def spend_key(repo_id: str, run_name: str) -> str:
    """What a cloud run spent, recorded next to its infrastructure records."""
    return f"{infra_records_prefix(repo_id, run_name)}spend.json"


def legacy_infra_key(repo_id: str, run_name: str, kind: str) -> str:
    """Where stores written before the records moved out of the run's prefix keep them."""
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
