"""``python -m dstack.runner``: run one job of a run against a state store.

Started by a Compute: detached on this machine, or by an instance's user data on AWS. It
reads everything it needs from the store; its own diagnostics go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dstack.runner")
    parser.add_argument("--storage", required=True, help="JSON storage description")
    parser.add_argument("--repo", required=True, help="repo id")
    parser.add_argument("--run", required=True, help="run name")
    parser.add_argument("--job", type=int, default=0, help="job index")
    parser.add_argument("--work-root", type=Path, help="where job folders are made")
    parser.add_argument("--cache-dir", type=Path, help="machine cache folder")
    parser.add_argument("--keep-workdir", action="store_true")
    args = parser.parse_args(argv)

    return run_job(
        json.loads(args.storage),
        args.repo,
        args.run,
        args.job,
        work_root=args.work_root,
        cache_dir=args.cache_dir,
        keep_workdir=args.keep_workdir,
    )


def run_job(
    storage_config: dict[str, Any],
    repo_id: str,
    run_name: str,
    job_index: int,
    *,
    work_root: Path | None = None,
    cache_dir: Path | None = None,
    keep_workdir: bool = False,
) -> int:
    """Run one job to its end; 0 when it is done. Never raises: a runner that cannot run the
    job says why in the job's record."""
    from dstack import settings, state
    from dstack.models import JobState, JobStatus
    from dstack.runner.agent import Agent

    storage = settings.storage_from_config(storage_config)
    spec = state.read_job_spec(storage, repo_id, run_name, job_index)
    try:
        agent = Agent(
            storage,
            spec,
            work_root=work_root or settings.work_dir(),
            cache_dir=cache_dir or settings.cache_dir(),
            keep_workdir=keep_workdir,
        )
        final = agent.run()
    except Exception as exc:
        print(f"dstack runner: {exc!r}", file=sys.stderr)
        failed = JobState(
            status=JobStatus.FAILED, reason=f"runner error: {exc}", updated_at=time.time()
        )
        state.write_job_state(storage, spec, "unknown", failed)
        return 1
    return 0 if final.status is JobStatus.DONE else 1


if __name__ == "__main__":
    sys.exit(main())
