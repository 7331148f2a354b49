"""Runs written straight through the state layer, as dstack writes them (for listings)."""

from __future__ import annotations

import time

from dstack import state
from dstack.lifecycle import Writer, set_state
from dstack.models import (
    Dependency,
    JobSpec,
    JobState,
    JobStatus,
    Owner,
    RepoSnapshot,
    RunRecord,
    Tag,
)
from dstack.storage.base import Storage


def seed_runs(
    storage: Storage,
    repo_id: str,
    count: int,
    *,
    workflow: str = "echo",
    status: JobStatus = JobStatus.DONE,
) -> None:
    """``count`` runs named ``seeded-<i>``, the last one newest, each in ``status`` (finished
    unless told: a run left running has no runner, and only a page that never checks for
    one, like the dashboard's, keeps following it)."""
    repo = RepoSnapshot(repo_id=repo_id, code_key="codes/x.tar.gz")
    owner = Owner(git_name="Seed", user="seed")
    start = time.time() - count
    for i in range(count):
        name, at = f"seeded-{i}", start + i
        record = RunRecord(
            run_name=name, repo_id=repo_id, workflow=workflow, provider="bash",
            submitted_at=at, owner=owner, repo=repo,
        )  # fmt: skip
        spec = JobSpec(
            run_name=name, workflow=workflow, provider="bash", repo=repo, submitted_at=at,
            commands=["echo hello"],
        )  # fmt: skip
        state.create_run(storage, record, [spec])
        finished = status.is_finished
        reached = JobState(status=status, exit_code=0 if finished else None, updated_at=at + 1)
        set_state(storage, spec, owner.display, Writer.RUNNER, reached)


def seed_lineage(storage: Storage) -> dict[str, str]:
    """Runs and tags of three repos wired by deps, the shape the lineage page must lay out
    without edges crossing boxes: a data repo feeding two model repos (one of them a repo with
    no remote, ``local/main``), a tag that moved on since a run consumed it, and a workflow
    dep. Returns each run's name by its role."""
    data, model = "github.com/acme/moons-preprocessing-pipeline", "github.com/acme/model"
    local = "local/main"
    owner = Owner(git_name="Seed", user="seed")
    start = time.time() - 100
    made: dict[str, str] = {}

    def run(role: str, repo_id: str, workflow: str, deps: list[Dependency]) -> RunRecord:
        name, at = f"{role}-{len(made) + 1}", start + len(made)
        made[role] = name
        repo = RepoSnapshot(repo_id=repo_id, code_key="codes/x.tar.gz")
        record = RunRecord(
            run_name=name, repo_id=repo_id, workflow=workflow, provider="bash",
            submitted_at=at, owner=owner, repo=repo, deps=deps,
        )  # fmt: skip
        spec = JobSpec(
            run_name=name, workflow=workflow, provider="bash", repo=repo, submitted_at=at,
            commands=["echo hello"], deps=deps,
        )  # fmt: skip
        state.create_run(storage, record, [spec])
        done = JobState(status=JobStatus.DONE, exit_code=0, updated_at=at + 1)
        set_state(storage, spec, owner.display, Writer.RUNNER, done)
        return record

    def tag(name: str, record: RunRecord, files: int) -> Dependency:
        state.write_tag(
            storage,
            Tag(name=name, repo_id=record.repo_id, run_name=record.run_name,
                workflow=record.workflow, owner=owner, created_at=time.time(), files=files),
        )  # fmt: skip
        return Dependency(repo_id=record.repo_id, run_name=record.run_name, tag=name,
                          workflow=record.workflow)  # fmt: skip

    old_prep = run("prep-old", data, "prepare", [])
    moved = Dependency(repo_id=data, run_name=old_prep.run_name, tag="moons-data-2026-12",
                       workflow="prepare")  # fmt: skip
    prep = run("prep", data, "prepare", [])
    raw = tag("moons-data-2026-12", prep, 1)
    vocab = tag("vocabulary", run("vocab", data, "tokenize", []), 12)
    train = run("train", model, "train", [raw, vocab])
    run("train-stale", model, "train", [moved])
    weights = tag("weights", train, 3)
    evaluate = run("eval", model, "evaluate",
                   [weights, Dependency(repo_id=model, run_name=train.run_name, workflow="train")])  # fmt: skip
    run("serve", local, "serve", [weights, vocab])
    run("report", local, "report",
        [Dependency(repo_id=model, run_name=evaluate.run_name, workflow="evaluate"), raw])  # fmt: skip
    return made
