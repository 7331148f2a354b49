"""``python -m dstack.runner``: run one job of a run against a state store.

Started by a Compute: detached on this machine, or by an instance's user data on AWS. It
reads everything it needs from the store; what it prints goes to stderr, its ``logging`` to a
file beside that (``settings.runner_log_path``, ``dstack.diagnostics``). With ``--cloud
aws`` it also watches the machine (``dstack.runner.cloud``): spot interruption notices, the
run's maximum duration, and a store it can no longer reach (then it exits with
``STORE_LOST_EXIT`` and the boot script powers the instance off).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from dstack.store_config import StoreConfig, parse_store

logger = logging.getLogger(__name__)

#: the runner gave up on a store it could not reach for the whole ``--store-timeout``
STORE_LOST_EXIT = 75


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dstack.runner")
    parser.add_argument("--storage", required=True, help="JSON storage description")
    parser.add_argument("--repo", required=True, help="repo id")
    parser.add_argument("--run", required=True, help="run name")
    parser.add_argument("--job", type=int, default=0, help="job index")
    parser.add_argument(
        "--spec-sha256", required=True, help="SHA-256 of the job's spec as its submitter wrote it"
    )
    parser.add_argument("--work-root", type=Path, help="where job folders are made")
    parser.add_argument("--cache-dir", type=Path, help="machine cache folder")
    parser.add_argument("--keep-workdir", action="store_true")
    parser.add_argument("--cloud", choices=["aws"], help="watch the cloud machine too")
    parser.add_argument("--max-duration", type=float, help="stop the job after this (s)")
    parser.add_argument("--store-timeout", type=float, help="exit when the store is lost (s)")
    args = parser.parse_args(argv)

    return run_job(
        parse_store(args.storage),
        args.repo,
        args.run,
        args.job,
        spec_sha256=args.spec_sha256,
        work_root=args.work_root,
        cache_dir=args.cache_dir,
        keep_workdir=args.keep_workdir,
        cloud=args.cloud,
        max_duration=args.max_duration,
        store_timeout=args.store_timeout,
    )


def run_job(
    store: StoreConfig,
    repo_id: str,
    run_name: str,
    job_index: int,
    *,
    spec_sha256: str,
    work_root: Path | None = None,
    cache_dir: Path | None = None,
    keep_workdir: bool = False,
    cloud: str | None = None,
    max_duration: float | None = None,
    store_timeout: float | None = None,
) -> int:
    """Run one job to its end; 0 when it is done. Never raises: a runner that cannot run the
    job says why in the job's record. The job's spec is read only if its bytes are the ones
    ``spec_sha256`` pins (``state.pins``); anything else is refused, and nothing of it runs."""
    from dstack import diagnostics, settings
    from dstack.errors import TamperedError
    from dstack.lifecycle import Writer, set_state
    from dstack.models import JobState, JobStatus
    from dstack.processes import keep_out_of_reach
    from dstack.runner.agent import Agent
    from dstack.state.pins import read_pinned_spec
    from dstack.storage import open_storage

    diagnostics.setup_runner(settings.runner_log_path(repo_id, f"{run_name}-{job_index}"))
    logger.info("runner %d: job %d of run %s (%s), store %s", os.getpid(), job_index,
                run_name, repo_id, store.type)  # fmt: skip
    keep_out_of_reach()  # the job's processes cannot read the runner's secrets or open files
    storage = open_storage(store)
    try:
        spec = read_pinned_spec(storage, repo_id, run_name, job_index, spec_sha256)
    except TamperedError as exc:
        refuse(storage, repo_id, run_name, job_index, str(exc))
        return 1
    try:
        agent = Agent(
            storage,
            spec,
            work_root=work_root or settings.work_dir(),
            cache_dir=cache_dir or settings.cache_dir(),
            keep_workdir=keep_workdir,
            own_machine=cloud is not None,
        )
        watch = _watch_machine(agent, max_duration, store_timeout) if cloud else None
        final = agent.run()
        if watch is not None:
            watch.stop()
    except Exception as exc:
        print(f"dstack runner: {exc!r}", file=sys.stderr)
        logger.exception("runner error")
        failed = JobState(
            status=JobStatus.FAILED, reason=f"runner error: {exc}", updated_at=time.time()
        )
        set_state(storage, spec, "unknown", Writer.RUNNER, failed)
        return 1
    logger.info("runner %d: the job ended %s", os.getpid(), final.status.value)
    return 0 if final.status is JobStatus.DONE else 1


def refuse(storage: Any, repo_id: str, run_name: str, job_index: int, line: str) -> None:
    """Record that the job was refused: ``line`` in its log (to stderr too) and a ``failed``
    state. Nothing is taken from the refused spec but what locates the job's head (its
    workflow and submit time come from the run's record when it is readable)."""
    from dstack import state
    from dstack.lifecycle import Writer, move
    from dstack.models import JobSpec, JobState, JobStatus, RepoSnapshot

    print(f"dstack runner: {line}", file=sys.stderr, flush=True)
    try:
        run = state.read_run(storage, repo_id, run_name)
        workflow, provider, submitted_at = run.workflow, run.provider, run.submitted_at
        owner = run.owner.display
    except Exception:
        workflow, provider, submitted_at, owner = "unknown", "bash", 0.0, "unknown"
    where = JobSpec(
        run_name=run_name,
        job_index=job_index,
        workflow=workflow,
        provider=provider,
        repo=RepoSnapshot(repo_id=repo_id, code_key="", code_size=0),
        submitted_at=submitted_at,
    )
    try:
        state.write_log_chunk(
            storage, where, state.next_log_seq(storage, where), f"[dstack] {line}\n".encode()
        )
        failed = JobState(status=JobStatus.FAILED, reason=line, updated_at=time.time())
        move(
            storage, where, owner, Writer.RUNNER,
            lambda now: failed.model_copy(update={"attempt": now.attempt}),
        )  # fmt: skip
    except Exception as exc:  # the store failed too: stderr is all there is
        print(f"dstack runner: could not record the refusal: {exc}", file=sys.stderr)


def _watch_machine(agent: Any, max_duration: float | None, store_timeout: float | None) -> Any:
    """Start the cloud machine's watch beside the agent (see ``dstack.runner.cloud``)."""
    import os

    from dstack.runner.cloud import POLL_INTERVAL, PROBE_INTERVAL, Imds, MachineWatch

    imds = Imds()
    instance_id = imds.instance_id()
    if instance_id:
        agent.state = agent.state.model_copy(update={"instance_id": instance_id})
    # the job's host, as its ports' URLs name it: the instance's own name (ip-172-31-…)
    # resolves inside its VPC only; the client reaches the address
    address = imds.address()
    if address:
        agent.state = agent.state.model_copy(update={"hostname": address})

    def request(kind: str) -> None:
        logger.info("the machine asks the job to stop: %s", kind)
        agent.machine_request = kind

    def store_lost() -> None:
        import signal

        print("dstack runner: the store is unreachable; giving up", file=sys.stderr, flush=True)
        if agent.state.process_group:
            try:
                os.killpg(agent.state.process_group, signal.SIGKILL)
            except OSError:
                pass
        os._exit(STORE_LOST_EXIT)

    poll = float(os.environ.get("DSTACK_MACHINE_POLL_INTERVAL") or POLL_INTERVAL)
    watch = MachineWatch(
        agent.storage,
        agent.spec,
        request=request,
        on_store_lost=store_lost,
        imds=imds,
        max_duration=max_duration,
        store_timeout=store_timeout,
        poll_interval=poll,
        probe_interval=max(poll, min(PROBE_INTERVAL, (store_timeout or PROBE_INTERVAL) / 4)),
        say=lambda line: print(f"dstack runner: {line}", file=sys.stderr, flush=True),
    )
    watch.start()
    return watch


if __name__ == "__main__":
    sys.exit(main())
