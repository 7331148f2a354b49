"""``python -m tests.e2e.submit_many N WORKFLOW``: one user submitting N runs at the same time.

Run in the user's repo with the user's environment (DSTACK_HOME, store). N threads call
``dstack.api.submit`` — what `dstack run -d` calls — together, released by one barrier, so
their name reservations and record writes race for real (over one store client, which is
thread-safe: making 25 would only cost CPU). The runners are started afterwards from the main
thread: forking them while other threads hold locks could hang a child. Prints the run names,
one a line; exits 1 if any submission failed.

Starting 2 × 25 `dstack` processes costs ~0.6 s of CPU each (Python, typer, boto3), which on a
small CI machine is most of a minute; the race under test is the same.
"""

from __future__ import annotations

import sys
import threading
import traceback
from pathlib import Path

from dstack import api
from dstack.compute.local import LocalCompute
from dstack.models import JobSpec, RunRecord
from dstack.storage.base import Storage


class DeferredCompute(LocalCompute):
    """Checks jobs like ``LocalCompute`` but starts them only when told."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[tuple[Storage, RunRecord, list[JobSpec]]] = []

    def start(self, storage: Storage, run: RunRecord, jobs: list[JobSpec]) -> None:
        self.pending.append((storage, run, jobs))


def main(count: int, workflow: str) -> int:
    storage = api.Context().storage
    computes = [DeferredCompute() for _ in range(count)]
    contexts = [api.Context(storage, c, Path.cwd()) for c in computes]
    storage.exists("names/warm-up")  # make the client before the race starts
    barrier = threading.Barrier(count)
    names: list[str] = []
    failures: list[str] = []

    def submit(ctx: api.Context) -> None:
        try:
            barrier.wait()
            names.append(api.submit(ctx, workflow).run.run_name)
        except Exception:
            failures.append(traceback.format_exc())

    threads = [threading.Thread(target=submit, args=(ctx,)) for ctx in contexts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for compute in computes:
        for storage, run, jobs in compute.pending:
            LocalCompute.start(compute, storage, run, jobs)
    print("\n".join(names))
    for failure in failures:
        print(failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), sys.argv[2]))
