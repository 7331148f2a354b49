"""The keys of the state store one run's runner may touch: the input of its IAM policy.

Derived from ``dstack.state``'s key functions (never spelled out here), so the policy follows
the layout. A runner:

- reads and writes everything under its run (records, job states, logs, artifacts, stop
  requests, heartbeats, its boot log) and the run's entries of the repo's ``heads`` and
  ``active`` indexes, which it rewrites on every status change;
- writes the tag it was asked to set on success (``dstack run -t``);
- reads its code (its tree, and the file contents under ``code/blobs/``), the dstack wheel,
  the artifacts of its deps and of the runs it watches (``tensorboard``), and the repo's
  secrets (which become the job's variables);
- lists only those prefixes.

IAM takes at most 10,240 characters of inline policy per role. A run with many deps (about 36
with a long repo id) would pass it, so the deps' own prefixes are then folded into their
parent folders (``repos/<repo>/runs/``: read-only access to that repo's runs), which is the
least widening that fits; a run that still does not fit is refused before anything is created.
"""

from __future__ import annotations

from collections.abc import Sequence

from dstack import state
from dstack.errors import ComputeError
from dstack.models import JobSpec, RunRecord
from stacks import policies
from stacks.policies import StoreScope

#: the longest bucket ARN and key ARN a policy can hold, so a scope that fits fits everywhere
_WORST_BUCKET = policies.bucket_arn("b" * 63, "aws-iso-b")
_WORST_KEY = "arn:aws-iso-b:kms:us-isob-east-1:123456789012:key/" + "k" * 36


def run_scope(
    run: RunRecord, jobs: Sequence[JobSpec], *, store_prefix: str, wheel_key: str
) -> StoreScope:
    """What the runners of ``run`` may touch, in a store kept under ``store_prefix``."""
    return scope_for(
        repo_id=run.repo_id,
        run_name=run.run_name,
        submitted_at=run.submitted_at,
        code_key=run.repo.code_key,
        wheel_key=wheel_key,
        store_prefix=store_prefix,
        tag=run.tag,
        dep_prefixes=_dep_prefixes(jobs) + _watched_prefixes(run.repo_id, jobs),
    )


def scope_for(
    *,
    repo_id: str,
    run_name: str,
    submitted_at: float,
    code_key: str,
    wheel_key: str,
    store_prefix: str = "",
    tag: str | None = None,
    dep_prefixes: Sequence[str] = (),
) -> StoreScope:
    """The scope of a run given by its parts (for a stack previewed by hand)."""
    own = state.run_prefix(repo_id, run_name)
    heads, active = state.run_index_stems(repo_id, run_name, submitted_at)
    secrets = state.secrets_prefix(repo_id)
    read_write = [own, heads, active]
    if tag:
        read_write.append(state.tag_key(repo_id, tag))

    def scope(deps: Sequence[str]) -> StoreScope:
        return StoreScope(
            prefix=store_prefix,
            read_write=_unique(read_write),
            read_only=_unique([code_key, state.CODE_BLOBS_PREFIX, wheel_key, secrets, *deps]),
            listable=_unique([own, heads, active, secrets, *deps]),
        )

    result = scope(dep_prefixes)
    if _fits(result):
        return result
    result = scope(_folded(dep_prefixes))
    if _fits(result):
        return result
    raise ComputeError(
        f"run {run_name} reads {len(dep_prefixes)} deps: its IAM policy would pass IAM's "
        f"{policies.ROLE_POLICY_MAX} characters; split the workflow, or set the shared "
        "instance profile (compute.instance_profile)"
    )


def policy_size(scope: StoreScope) -> int:
    """The size IAM counts of the role policy of ``scope``, in the longest bucket there is."""
    document = policies.runner_access_policy(_WORST_BUCKET, scope, kms_key_arn=_WORST_KEY)
    return policies.policy_size(document)


def _fits(scope: StoreScope) -> bool:
    return policy_size(scope) <= policies.ROLE_POLICY_MAX


def _folded(prefixes: Sequence[str]) -> list[str]:
    """Prefixes sharing a parent folder replaced by that folder (``…/runs/a/`` and
    ``…/runs/b/`` become ``…/runs/``); a prefix alone in its folder stays as it is."""
    parents: dict[str, list[str]] = {}
    for prefix in prefixes:
        parent = prefix.rstrip("/").rsplit("/", 1)[0] + "/"
        parents.setdefault(parent, []).append(prefix)
    folded = []
    for parent, members in parents.items():
        folded.extend([parent] if len(set(members)) > 1 else members)
    return folded


def _dep_prefixes(jobs: Sequence[JobSpec]) -> list[str]:
    prefixes = []
    for job in jobs:
        for dep in job.deps:
            if dep.run_name:
                prefixes.append(state.run_prefix(dep.repo_id, dep.run_name))
            upload_id = getattr(dep, "upload_id", None)
            if upload_id and dep.tag:
                prefixes.append(state.tag_data_prefix(dep.repo_id, dep.tag, upload_id))
    return prefixes


def _watched_prefixes(repo_id: str, jobs: Sequence[JobSpec]) -> list[str]:
    return [
        state.run_prefix(repo_id, name) for job in jobs for name in getattr(job, "watch_runs", ())
    ]


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
