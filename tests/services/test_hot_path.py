"""What `dstack run` does once, it does once: the jobs are built once (twice only when the
workflow writes the run's name into them), the tag is read once, and the run just submitted
is not read back. Counted on a store that records every read; the compute is a test double
that starts nothing (runs are started for real in ``tests/e2e``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dstack import api, providers, state
from dstack.compute.base import Compute
from dstack.errors import TagExistsError
from dstack.models import JobSpec, JobState, RunRecord
from dstack.services.context import Context
from dstack.storage.local import LocalStorage

WORKFLOWS = """\
workflows:
  - name: plain
    commands: [echo hi]
  - name: named
    commands: ['echo "I am ${{ run.name }}"']
"""


class CountingStorage(LocalStorage):
    """A local store that records the key of every read."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: list[str] = []

    def get(self, key: str) -> bytes:
        self.reads.append(key)
        return super().get(key)


class StartsNothing(Compute):
    """Stands in for a compute: accepts every job and starts none."""

    name = "test"

    def check(self, jobs: list[JobSpec]) -> None:
        pass

    def start(self, storage: Any, run: RunRecord, jobs: list[JobSpec]) -> None:
        pass

    def is_alive(self, state: JobState) -> bool | None:
        return True

    def kill(self, state: JobState) -> None:
        pass


@pytest.fixture
def ctx(tmp_path: Path, repo_factory: Any) -> Context:
    repo = repo_factory({".dstack/workflows.yaml": WORKFLOWS})
    storage = CountingStorage(tmp_path / "store")
    return Context(storage=storage, compute=StartsNothing(), repo_path=repo)


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = providers.build_jobs

    def counting(run: Any) -> Any:
        calls.append(run.run_name)
        return real(run)

    monkeypatch.setattr(providers, "build_jobs", counting)
    return calls


def test_the_jobs_are_built_once(ctx: Context, builds: list[str]) -> None:
    submission = api.submit(ctx, "plain")
    assert len(builds) == 1
    assert [job.run_name for job in submission.jobs] == [submission.run.run_name]
    stored = state.read_job_spec(ctx.storage, submission.run.repo_id, submission.run.run_name, 0)
    assert stored == submission.jobs[0]


def test_a_workflow_naming_its_run_gets_jobs_built_with_the_name(
    ctx: Context, builds: list[str]
) -> None:
    submission = api.submit(ctx, "named")
    assert len(builds) == 2
    name = submission.run.run_name
    assert any(name in command for command in submission.jobs[0].commands)


def test_the_tag_is_read_once(ctx: Context) -> None:
    storage = ctx.storage
    assert isinstance(storage, CountingStorage)
    # as `dstack run -t best` does: the CLI looks the tag up, submit takes its answer
    assert api.find_tag(ctx, "best") is None
    api.submit(ctx, "plain", tag="best", existing_tag=None)
    key = state.tag_key(ctx.repo_id, "best")
    assert storage.reads.count(key) == 1
    # a tag the caller found is refused without reading it again
    first = api.submit(ctx, "plain")
    tag = state.run_tag(storage, first.run, "best", first.run.owner)
    state.create_tag(storage, tag, replace=False)
    found = api.find_tag(ctx, "best")
    before = storage.reads.count(key)
    with pytest.raises(TagExistsError):
        api.submit(ctx, "plain", tag="best", existing_tag=found)
    assert storage.reads.count(key) == before


def test_the_run_just_submitted_is_not_read_back(ctx: Context) -> None:
    storage = ctx.storage
    assert isinstance(storage, CountingStorage)
    submission = api.submit(ctx, "plain")
    run = submission.run
    storage.reads.clear()
    view = api.view_of(ctx, submission)
    assert view.run == run and view.jobs == submission.jobs
    assert state.run_key(run.repo_id, run.run_name) not in storage.reads
    assert state.spec_key(run.repo_id, run.run_name, 0) not in storage.reads
