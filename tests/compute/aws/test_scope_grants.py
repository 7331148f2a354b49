"""The run role's S3 grants, evaluated: what the runner of a run with ``-t TAG`` and with deps
must be able to do, and must not, decided by ``iam_eval`` (a stand-in for IAM's evaluation,
itself checked here against AWS's documented matching rules)."""

from __future__ import annotations

import pytest

from dstack import state
from dstack.compute.aws.scope import policy_size, scope_for
from dstack.errors import ComputeError
from stacks import policies
from tests.compute.aws import iam_eval

BUCKET = "acme-dstack-state"
ARN = f"arn:aws:s3:::{BUCKET}"
REPO = "github.com/acme/mnist"


# the evaluator against AWS's documented semantics


def test_evaluator_follows_the_documented_rules() -> None:
    policy = {"Statement": [
        {"Effect": "Allow", "Action": "S3:GetObject", "Resource": f"{ARN}/a/*"},
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": ARN,
         "Condition": {"StringLike": {"s3:prefix": ["a/?x*"]}}},
        {"Effect": "Deny", "Action": "s3:*", "Resource": f"{ARN}/a/secret"},
    ]}  # fmt: skip
    assert iam_eval.allowed(policy, "s3:getobject", f"{ARN}/a/b/c")  # * spans slashes
    assert not iam_eval.allowed(policy, "s3:GetObject", f"{ARN}/A/b")  # resources: case
    assert not iam_eval.allowed(policy, "s3:GetObject", f"{ARN}/a/secret")  # deny wins
    assert not iam_eval.allowed(policy, "s3:PutObject", f"{ARN}/a/b")  # implicit deny
    assert iam_eval.allowed(policy, "s3:ListBucket", ARN, {"s3:prefix": "a/yx/z"})
    assert not iam_eval.allowed(policy, "s3:ListBucket", ARN, {"s3:prefix": "a/x"})  # ? is one
    assert not iam_eval.allowed(policy, "s3:ListBucket", ARN)  # no prefix, no match


def _policy(**scope: object) -> dict:
    defaults: dict = dict(
        repo_id=REPO, run_name="wise-owl-1", submitted_at=1767225600.0,
        code_key="codes/c.tar.gz", wheel_key="dist/d/dstack-0.1.0-py3-none-any.whl",
    )  # fmt: skip
    defaults.update(scope)
    return policies.runner_access_policy(ARN, scope_for(**defaults))  # type: ignore[arg-type]


def _object(key: str) -> str:
    return f"{ARN}/{key}"


def test_a_run_with_a_tag_writes_that_tag_and_no_other() -> None:
    policy = _policy(tag="mnist-best")
    key = state.tag_key(REPO, "mnist-best")
    for action in ("s3:GetObject", "s3:PutObject"):
        assert iam_eval.allowed(policy, action, _object(key)), action
    assert not iam_eval.allowed(policy, "s3:PutObject", _object(state.tag_key(REPO, "other")))
    assert not iam_eval.allowed(_policy(), "s3:PutObject", _object(key))  # no -t, no tag


def test_a_run_reads_its_deps_and_nothing_else() -> None:
    dep_run = state.run_prefix(REPO, "calm-cat-2")
    uploaded = state.tag_data_prefix(REPO, "moons", "u1")
    policy = _policy(dep_prefixes=[dep_run, uploaded])
    artifact = state.artifacts_prefix(REPO, "calm-cat-2", 0) + "model.pt"
    assert iam_eval.allowed(policy, "s3:GetObject", _object(artifact))
    assert iam_eval.allowed(policy, "s3:GetObject", _object(uploaded + "data/x.csv"))
    listing = {"s3:prefix": state.artifacts_prefix(REPO, "calm-cat-2", 0)}
    assert iam_eval.allowed(policy, "s3:ListBucket", ARN, listing)
    assert not iam_eval.allowed(policy, "s3:PutObject", _object(artifact))
    other = state.artifacts_prefix(REPO, "other-run-3", 0) + "model.pt"
    assert not iam_eval.allowed(policy, "s3:GetObject", _object(other))
    assert not iam_eval.allowed(
        policy, "s3:ListBucket", ARN, {"s3:prefix": state.run_prefix(REPO, "other-run-3")}
    )


def test_a_run_writes_its_own_records_in_a_prefixed_store() -> None:
    policy = _policy(store_prefix="teams/ml")
    own = "teams/ml/" + state.run_prefix(REPO, "wise-owl-1") + "run.json"
    assert iam_eval.allowed(policy, "s3:PutObject", _object(own))
    assert not iam_eval.allowed(policy, "s3:PutObject", _object(own.removeprefix("teams/ml/")))


def test_many_deps_are_folded_to_fit_iam_and_stay_readable() -> None:
    """44 deps of a 60-character repo id, each named in full, pass IAM's 10,240 characters
    even in this short bucket's ARN (36 do in the longest)."""
    repo = "github.com/" + "a" * 25 + "/" + "b" * 23
    assert len(repo) == 60
    deps = [state.run_prefix(repo, f"dep-run-{i:03d}-of-the-sweep") for i in range(44)]
    scope = scope_for(
        repo_id=repo, run_name="wise-owl-1", submitted_at=1767225600.0,
        code_key="codes/c.tar.gz", wheel_key="dist/d/dstack-0.1.0-py3-none-any.whl",
        dep_prefixes=deps,
    )  # fmt: skip
    assert policy_size(scope) <= policies.ROLE_POLICY_MAX
    unfolded = policies.StoreScope(read_write=scope.read_write, read_only=tuple(deps),
                                   listable=tuple(deps))  # fmt: skip
    assert policies.policy_size(policies.runner_access_policy(ARN, unfolded)) > 10_240
    policy = policies.runner_access_policy(ARN, scope)
    for dep in deps:
        assert iam_eval.allowed(policy, "s3:GetObject", _object(dep + "jobs/0/artifacts/m.pt"))
        assert not iam_eval.allowed(policy, "s3:PutObject", _object(dep + "jobs/0/x"))
    # the run's own writes stay exactly its own
    assert not iam_eval.allowed(policy, "s3:PutObject", _object(state.run_prefix(repo, "x") + "a"))


def test_a_run_that_cannot_fit_is_refused_up_front() -> None:
    deps = [state.run_prefix(f"github.com/acme/repo-{i}-" + "x" * 40, "r") for i in range(120)]
    with pytest.raises(ComputeError, match="10240 characters"):
        scope_for(
            repo_id=REPO, run_name="wise-owl-1", submitted_at=0.0, code_key="c", wheel_key="w",
            dep_prefixes=deps,
        )  # fmt: skip


def test_the_job_cannot_rewrite_its_runs_infra_records() -> None:
    """The plan and the outputs of up/destroy are the audit trail of what was created: the
    run's role writes its boot logs, never those records (the job runs as root on the
    instance, one metadata call from the role's credentials)."""
    policy = _policy()
    for kind in state.INFRA_KINDS:
        key = state.infra_key(REPO, "wise-owl-1", kind)
        for action in ("s3:PutObject", "s3:DeleteObject"):
            assert not iam_eval.allowed(policy, action, _object(key)), (kind, action)
    boot_log = state.boot_log_key(REPO, "wise-owl-1", 0)
    assert iam_eval.allowed(policy, "s3:PutObject", _object(boot_log))


def test_the_job_reads_code_blobs_only_by_a_hash_it_knows() -> None:
    """Blobs are stored once per content for every repo (content-addressed, under one
    prefix); the role may read one whose sha256 it knows, but cannot list them nor read
    another snapshot's manifest, which is where hashes are learnt."""
    policy = _policy()
    assert iam_eval.allowed(policy, "s3:GetObject", _object("codes/c.tar.gz"))
    assert not iam_eval.allowed(policy, "s3:GetObject", _object("codes/other.tar.gz"))
    other_tree = state.CODE_TREES_PREFIX + "0" * 64 + ".json.gz"
    assert not iam_eval.allowed(policy, "s3:GetObject", _object(other_tree))
    for prefix in (state.CODE_BLOBS_PREFIX, state.CODE_TREES_PREFIX, "codes/", ""):
        assert not iam_eval.allowed(policy, "s3:ListBucket", ARN, {"s3:prefix": prefix}), prefix
