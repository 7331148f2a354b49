"""A job's output may already hold lines when its first runner starts: the offers the
submitter walked past while provisioning (``dstack.compute.aws.tries``). The runner's output
follows them, so a reader that follows the output by key (``dstack run`` attached, `dstack
logs -f`) sees every line once, in order."""

from __future__ import annotations

from pathlib import Path

from dstack import state
from dstack.runner.agent import Agent
from dstack.storage.local import LocalStorage
from tests.records import REPO, one_job_run


def test_the_first_runner_writes_after_the_lines_already_there(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    spec = one_job_run(storage)  # its code key is not one: the runner fails, and says so
    for seq, line in enumerate(["walk 1", "walk 2"]):
        state.write_log_chunk(storage, spec, seq, f"[dstack] {line}\n".encode())

    Agent(storage, spec, work_root=tmp_path / "work", cache_dir=tmp_path / "cache").run()

    prefix = state.keys.logs_prefix(REPO.repo_id, spec.run_name, 0)
    lines = [storage.get(o.key).decode().strip() for o in storage.list_objects(prefix)]
    assert lines[:2] == ["[dstack] walk 1", "[dstack] walk 2"]
    assert len(lines) == 3 and lines[2].startswith("[dstack] error: the run's code key")
