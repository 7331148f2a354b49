"""Submitting a run: what it asks git, and what the context knows afterwards."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from dstack.services.context import Context
from dstack.services.runs import get_run, submit
from dstack.storage.local import LocalStorage
from tests.services.test_tags import AliveCompute

WORKFLOWS = "workflows:\n  - name: hello\n    commands:\n      - echo hello\n"


def test_reading_back_a_submitted_run_asks_git_nothing_more(
    repo_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The snapshot found the repo's id; `dstack run` then reads its run back under that id
    without running git again (each git process costs milliseconds of every run)."""
    repo = repo_factory({".dstack/workflows.yaml": WORKFLOWS})
    ctx = Context(storage=LocalStorage(tmp_path / "store"), compute=AliveCompute(), repo_path=repo)
    run = submit(ctx, "hello").run
    assert run.repo_id == "github.com/acme/mnist"

    spawned: list[Any] = []
    real_popen = subprocess.Popen

    def popen(args: Any, *rest: Any, **kwargs: Any) -> Any:
        spawned.append(args)
        return real_popen(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", popen)
    view = get_run(ctx, run.run_name, refresh=False)
    assert (view.run.run_name, ctx.repo_id, spawned) == (run.run_name, run.repo_id, [])


def test_a_context_told_another_repo_keeps_it(repo_factory: Any, tmp_path: Path) -> None:
    repo = repo_factory({".dstack/workflows.yaml": WORKFLOWS})
    ctx = Context(storage=LocalStorage(tmp_path / "store"), compute=AliveCompute(), repo_path=repo)
    ctx.use_repo("github.com/acme/other")
    ctx.know_repo("github.com/acme/mnist")
    assert ctx.repo_id == "github.com/acme/other"


def test_a_clean_submit_runs_four_git_processes(
    repo_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The work tree's root once, then status, ls-files and config in parallel: the owner comes
    from the config the snapshot read (each git process costs milliseconds of every run)."""
    repo = repo_factory({".dstack/workflows.yaml": WORKFLOWS})
    ctx = Context(storage=LocalStorage(tmp_path / "store"), compute=AliveCompute(), repo_path=repo)
    spawned: list[str] = []
    real_popen = subprocess.Popen

    def popen(args: Any, *rest: Any, **kwargs: Any) -> Any:
        if isinstance(args, list) and args[:1] == ["git"]:
            spawned.append(args[1])
        return real_popen(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", popen)
    run = submit(ctx, "hello").run
    assert sorted(spawned) == ["config", "ls-files", "rev-parse", "status"]
    assert (run.owner.git_name, run.owner.git_email) == ("Ada Lovelace", "ada@example.com")


class BootingCloud(AliveCompute):
    """A cloud whose instances are still booting: no runner has taken any job (the box tier's
    scenario e stops a run so, on the real engine)."""

    is_cloud = True
    released: list[str]

    def release(self, storage: Any, run: Any) -> bool:
        self.released.append(run.run_name)
        return True


def test_stopping_a_cloud_job_whose_runner_has_not_started_ends_it_at_once(
    repo_factory: Any, tmp_path: Path
) -> None:
    """Nothing to save yet: the stop does not wait minutes for a runner, the job ends aborted
    with why, and the run's stack can be released at once."""
    from dstack.models import JobStatus
    from dstack.services.infra import release
    from dstack.services.runs import UNSTARTED_REASON, stop

    repo = repo_factory({".dstack/workflows.yaml": WORKFLOWS})
    cloud = BootingCloud()
    cloud.released = []
    ctx = Context(storage=LocalStorage(tmp_path / "store"), compute=cloud, repo_path=repo)
    run = submit(ctx, "hello").run
    view = stop(ctx, run.run_name, wait=0.0)
    [job] = view.states
    assert (job.status, job.reason) == (JobStatus.ABORTED, UNSTARTED_REASON)
    assert release(ctx, run.run_name) and cloud.released == [run.run_name]
