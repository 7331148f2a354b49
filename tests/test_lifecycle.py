"""``dstack.lifecycle``: the transition rules, and every pair of writers changing one job at once.

Each concurrency test starts a job in a state, lets two writers (submitter, runner, stopper,
concluder) change it from threads released together, many times over, on the local store and
on S3 (moto), and then checks what every reader relies on: the recorded versions form one
chain with no transition the rules forbid, ``state.json`` and the job's head show the newest
state, and a finished job never changed again.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dstack import state
from dstack.lifecycle import (
    ABORT_REASON,
    Writer,
    check,
    conclude,
    move,
    set_state,
    tag_on_success,
)
from dstack.models import JobSpec, JobState, JobStatus, Owner, RepoSnapshot, RetryPolicy, RunRecord
from dstack.storage.base import Storage
from dstack.storage.local import LocalStorage
from tests.moto_server import MotoServer, aws_test_env, moto_server, s3_bucket  # noqa: F401

REPO = RepoSnapshot(repo_id="github.com/acme/mnist", code_key="codes/x.tar.gz")
S = JobStatus


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.slow)])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "store")
    from dstack.storage.s3.storage import S3Storage

    moto = request.getfixturevalue("moto_server")
    bucket = request.getfixturevalue("s3_bucket")
    return S3Storage(bucket, endpoint_url=moto.endpoint_url, retry_deadline=10.0)


def new_job(storage: Storage, name: str, *, retry: RetryPolicy | None = None) -> JobSpec:
    at = time.time()
    record = RunRecord(
        run_name=name, repo_id=REPO.repo_id, workflow="w", provider="bash", submitted_at=at,
        owner=Owner(git_name="Ada"), repo=REPO, tag=None,
    )  # fmt: skip
    spec = JobSpec(
        run_name=name, workflow="w", provider="bash", repo=REPO, submitted_at=at, retry=retry
    )
    state.create_run(storage, record, [spec])
    return spec


def history(storage: Storage, spec: JobSpec) -> list[JobState]:
    """Every recorded state of the job, in version order."""
    prefix = state.job_prefix(REPO.repo_id, spec.run_name, 0) + "states/"
    states = [
        JobState.model_validate_json(storage.get(info.key)) for info in storage.list_objects(prefix)
    ]
    return sorted(states, key=lambda s: s.version)


# ---- the rules ------------------------------------------------------------------------------


def js(status: JobStatus, attempt: int = 1) -> JobState:
    return JobState(status=status, attempt=attempt)


@pytest.mark.parametrize(
    ("writer", "current", "new", "allowed"),
    [
        (Writer.RUNNER, js(S.SUBMITTED), js(S.PROVISIONING), True),
        (Writer.RUNNER, js(S.PROVISIONING), js(S.RUNNING), True),
        (Writer.RUNNER, js(S.RUNNING), js(S.STOPPING), True),
        (Writer.RUNNER, js(S.STOPPING), js(S.UPLOADING), True),
        (Writer.RUNNER, js(S.UPLOADING), js(S.DONE), True),
        (Writer.RUNNER, js(S.RUNNING), js(S.PROVISIONING), False),  # never backwards
        (Writer.RUNNER, js(S.PROVISIONING), js(S.PROVISIONING), False),  # another runner
        (Writer.RUNNER, js(S.RUNNING), js(S.SUBMITTED, 2), True),  # retry
        (Writer.RUNNER, js(S.RUNNING), js(S.SUBMITTED, 3), False),  # one attempt at a time
        (Writer.RUNNER, js(S.RUNNING, 2), js(S.DONE, 1), False),  # a stale attempt
        (Writer.RUNNER, js(S.DONE), js(S.RUNNING), False),  # finished is final
        (Writer.RUNNER, js(S.FAILED), js(S.SUBMITTED, 2), False),
        (Writer.RUNNER, js(S.RUNNING), js(S.RUNNING), True),  # a note (ports)
        (Writer.SUBMITTER, js(S.SUBMITTED), js(S.FAILED), True),
        (Writer.SUBMITTER, js(S.SUBMITTED), js(S.RUNNING), False),
        (Writer.STOPPER, js(S.RUNNING), js(S.ABORTED), True),
        (Writer.STOPPER, js(S.RUNNING), js(S.STOPPED), False),
        (Writer.STOPPER, js(S.DONE), js(S.ABORTED), False),
        (Writer.CONCLUDER, js(S.RUNNING), js(S.INTERRUPTED), True),
        (Writer.CONCLUDER, js(S.SUBMITTED), js(S.FAILED), True),
        (Writer.CONCLUDER, js(S.RUNNING), js(S.DONE), False),
        (Writer.CONCLUDER, js(S.RUNNING), js(S.SUBMITTED, 2), True),
        (Writer.CONCLUDER, js(S.RUNNING), js(S.SUBMITTED), False),  # not back within an attempt
        (Writer.CONCLUDER, js(S.STOPPED), js(S.INTERRUPTED), False),
    ],
)
def test_which_writer_may_move_which_status(
    writer: Writer, current: JobState, new: JobState, allowed: bool
) -> None:
    assert (check(writer, current, new) is None) is allowed


def test_a_refused_move_records_nothing_and_says_why(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    spec = new_job(storage, "calm-owl-1")
    set_state(storage, spec, "Ada", Writer.RUNNER, js(S.DONE))
    moved = set_state(storage, spec, "Ada", Writer.STOPPER, js(S.ABORTED))
    assert not moved.applied and moved.state.status is S.DONE
    assert moved.refused == "the job is already done"
    assert [s.status for s in history(storage, spec)] == [S.SUBMITTED, S.DONE]


def test_a_writer_that_loses_the_race_decides_again_from_the_winner(tmp_path: Path) -> None:
    """Between the runner's read and its write the stopper aborts the job: the runner's
    compare-and-swap fails, it re-reads, and its change is refused (the job is finished)."""
    storage = LocalStorage(tmp_path / "store")
    spec = new_job(storage, "calm-owl-1")
    seen: list[JobStatus] = []

    def runner_change(current: JobState) -> JobState:
        seen.append(current.status)
        if len(seen) == 1:  # the stopper gets in between this read and the write
            set_state(storage, spec, "Ada", Writer.STOPPER, js(S.ABORTED))
        return current.model_copy(update={"status": S.RUNNING})

    moved = move(storage, spec, "Ada", Writer.RUNNER, runner_change)
    assert seen == [S.SUBMITTED, S.ABORTED]
    assert not moved.applied and moved.state.status is S.ABORTED
    assert [s.status for s in history(storage, spec)] == [S.SUBMITTED, S.ABORTED]
    stored = state.read_job_state(storage, REPO.repo_id, spec.run_name, 0)
    assert stored.status is S.ABORTED


def test_a_state_published_late_never_hides_a_newer_one(tmp_path: Path) -> None:
    """A writer whose ``state.json`` lands after a newer writer's finds the newer claim and
    publishes it again, so readers end at the newest state."""
    storage = LocalStorage(tmp_path / "store")
    spec = new_job(storage, "calm-owl-1")
    older = js(S.RUNNING).model_copy(update={"version": 2, "updated_at": time.time()})
    newer = js(S.DONE).model_copy(update={"version": 3, "updated_at": time.time() + 1})
    storage.put(
        state.state_key(REPO.repo_id, spec.run_name, 0).replace(
            "state.json", "states/00000003.json"
        ),
        newer.model_dump_json().encode(),
    )  # the newer writer claimed 3 but has not published yet
    state.record_job_state(storage, spec, "Ada", older)
    stored = state.read_job_state(storage, REPO.repo_id, spec.run_name, 0)
    assert (stored.version, stored.status) == (3, S.DONE)
    heads = state.list_heads(storage, REPO.repo_id)
    assert [h.status for h in heads] == [S.DONE]


# ---- concluding an attempt, tagging on success ----------------------------------------------


def test_a_runner_lost_after_an_abort_request_is_recorded_aborted(tmp_path: Path) -> None:
    """`stop -x` kills the runner, then records `aborted`; the supervisor (or a reader) may
    conclude the dead runner first: it records `aborted` too, never `interrupted`."""
    storage = LocalStorage(tmp_path / "store")
    spec = new_job(storage, "calm-owl-1")
    set_state(storage, spec, "Ada", Writer.RUNNER, js(S.RUNNING))
    state.request_stop(storage, spec, abort=True)
    lost = js(S.INTERRUPTED).model_copy(update={"reason": "killed by 9"})
    ended = conclude(storage, spec, "Ada", lost, Writer.CONCLUDER)
    assert (ended.status, ended.reason) == (S.ABORTED, ABORT_REASON)
    assert state.read_job_state(storage, REPO.repo_id, spec.run_name, 0).status is S.ABORTED


def test_a_graceful_stop_does_not_turn_a_lost_runner_into_an_abort(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    spec = new_job(storage, "calm-owl-1")
    set_state(storage, spec, "Ada", Writer.RUNNER, js(S.RUNNING))
    state.request_stop(storage, spec, abort=False)
    lost = js(S.INTERRUPTED)
    assert conclude(storage, spec, "Ada", lost, Writer.CONCLUDER).status is S.INTERRUPTED


def test_concluding_from_a_state_that_moved_on_records_nothing(tmp_path: Path) -> None:
    """A reader judged the runner lost at version 2; the runner wrote version 3 meanwhile."""
    storage = LocalStorage(tmp_path / "store")
    spec = new_job(storage, "calm-owl-1")
    judged = set_state(storage, spec, "Ada", Writer.RUNNER, js(S.RUNNING)).state
    set_state(storage, spec, "Ada", Writer.RUNNER, js(S.UPLOADING))
    lost = judged.model_copy(update={"status": S.INTERRUPTED})
    after = conclude(storage, spec, "Ada", lost, Writer.CONCLUDER, since=judged.version)
    assert after.status is S.UPLOADING


def test_an_attempt_that_may_be_retried_goes_back_to_submitted(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    spec = new_job(storage, "calm-owl-1", retry=RetryPolicy(on=["error"], limit=2))
    set_state(storage, spec, "Ada", Writer.RUNNER, js(S.RUNNING))
    failed = js(S.FAILED).model_copy(update={"exit_code": 1, "reason": "exit code 1"})
    following = conclude(storage, spec, "Ada", failed, Writer.RUNNER)
    assert (following.status, following.attempt) == (S.SUBMITTED, 2)
    assert [a.status for a in state.list_attempts(storage, spec)] == [S.FAILED]


def make_tagged_run(storage: Storage, name: str, tag: str, jobs: int = 1) -> RunRecord:
    at = time.time()
    record = RunRecord(
        run_name=name, repo_id=REPO.repo_id, workflow="prepare", provider="bash",
        submitted_at=at, owner=Owner(git_name="Ada"), repo=REPO, tag=tag, job_count=jobs,
    )  # fmt: skip
    specs = [
        JobSpec(
            run_name=name,
            job_index=i,
            workflow="prepare",
            provider="bash",
            repo=REPO,
            submitted_at=at,
        )
        for i in range(jobs)
    ]
    state.create_run(storage, record, specs)
    return record


def test_run_tag_waits_for_every_job_and_is_idempotent(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    run = make_tagged_run(storage, "multi-1", "best", jobs=2)
    assert tag_on_success(storage, run, 0) is None
    assert state.read_tag(storage, REPO.repo_id, "best") is None  # job 1 has not succeeded yet
    assert tag_on_success(storage, run, 1) is None
    tag = state.read_tag(storage, REPO.repo_id, "best")
    assert tag is not None and (tag.run_name, tag.job_count) == ("multi-1", 2)
    assert tag_on_success(storage, run, 0) is None  # a racing job: nothing changes


def test_run_tag_moves_an_existing_tag_only_if_asked(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    first = make_tagged_run(storage, "calm-cat-1", "moons")
    tag_on_success(storage, first, 0)
    second = make_tagged_run(storage, "dark-dog-1", "moons")
    problem = tag_on_success(storage, second, 0)
    assert problem is not None and "not moved" in problem
    second.replace_tag = True
    assert tag_on_success(storage, second, 0) is None
    moved = state.read_tag(storage, REPO.repo_id, "moons")
    assert moved is not None and moved.run_name == "dark-dog-1"


# ---- every pair of writers at once ----------------------------------------------------------

Action = Callable[[Storage, JobSpec], object]


def runner_finishes(storage: Storage, spec: JobSpec) -> object:
    set_state(storage, spec, "Ada", Writer.RUNNER, js(S.UPLOADING))
    return set_state(storage, spec, "Ada", Writer.RUNNER, js(S.DONE, 1))


def runner_fails_with_retry(storage: Storage, spec: JobSpec) -> object:
    return conclude(storage, spec, "Ada", js(S.FAILED), Writer.RUNNER)


def stopper_aborts(storage: Storage, spec: JobSpec) -> object:
    state.request_stop(storage, spec, abort=True)
    return set_state(storage, spec, "Ada", Writer.STOPPER, js(S.ABORTED))


def concluder_finds_the_runner_lost(storage: Storage, spec: JobSpec) -> object:
    judged = state.read_latest_job_state(storage, spec)
    if judged.status.is_finished:
        return judged
    lost = judged.model_copy(update={"status": S.INTERRUPTED, "reason": "lost"})
    return conclude(storage, spec, "Ada", lost, Writer.CONCLUDER, since=judged.version)


def submitter_fails_the_start(storage: Storage, spec: JobSpec) -> object:
    return set_state(storage, spec, "Ada", Writer.SUBMITTER, js(S.FAILED))


WRITERS: dict[str, Action] = {
    "runner": runner_finishes,
    "runner-retry": runner_fails_with_retry,
    "stopper": stopper_aborts,
    "concluder": concluder_finds_the_runner_lost,
    "submitter": submitter_fails_the_start,
}
PAIRS = [
    (a, b)
    for i, a in enumerate(WRITERS)
    for b in list(WRITERS)[i:]
    if {a, b} != {"runner", "runner-retry"}  # one runner per attempt
]


def assert_consistent(storage: Storage, spec: JobSpec) -> None:
    chain = history(storage, spec)
    assert [s.version for s in chain] == list(range(1, len(chain) + 1))
    writers = list(Writer)
    for before, after in itertools.pairwise(chain):
        # every recorded step is one some writer was allowed to make
        assert any(check(w, before, after) is None for w in writers), (before, after)
        assert not before.status.is_finished
        assert after.updated_at > before.updated_at
    newest = chain[-1]
    stored = state.read_job_state(storage, REPO.repo_id, spec.run_name, 0)
    assert stored.version == newest.version and stored.status is newest.status
    heads = [h for h in state.list_heads(storage, REPO.repo_id) if h.run_name == spec.run_name]
    assert [h.status for h in heads] == [newest.status]


@pytest.mark.parametrize(("first", "second"), PAIRS, ids=[f"{a}+{b}" for a, b in PAIRS])
def test_two_writers_at_once_leave_one_consistent_history(
    storage: Storage, first: str, second: str
) -> None:
    rounds = 12 if isinstance(storage, LocalStorage) else 4
    for i in range(rounds):
        spec = new_job(
            storage,
            f"race-{first}-{second}-{i}",
            retry=RetryPolicy(on=["error", "interruption"], limit=3),
        )
        if "submitter" not in (first, second):
            set_state(storage, spec, "Ada", Writer.RUNNER, js(S.RUNNING))
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        threads = [
            threading.Thread(target=_act, args=(WRITERS[name], storage, spec, barrier, errors))
            for name in (first, second)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        assert_consistent(storage, spec)


def _act(
    action: Action,
    storage: Storage,
    spec: JobSpec,
    barrier: threading.Barrier,
    errors: list[BaseException],
) -> None:
    try:
        barrier.wait()
        action(storage, spec)
    except BaseException as exc:  # surfaced in the test's thread
        errors.append(exc)
