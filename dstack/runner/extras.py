"""What a job gets beyond its spec, just before its commands start, and what the runner
watches for it while it runs.

- **Secrets** of the repo (``dstack secrets``) become variables of the job (after the
  workflow's own ``env``: a secret wins, as in 2022), and are masked in its log (``***``).
  They are read from their private records here, by the runner, and never written into a job
  or run record.
- **An app token** (``lab``, ``notebook``, ``code``): a fresh random token per attempt, given
  to the job as ``JOB_TOKEN``, masked in its log, and kept in a private record of the job
  (``state.app_token_key``) from which the attached CLI builds the app's URL.
- **Addresses**: ``JOB_BIND_ADDRESS`` (where servers listen: loopback on this machine) and
  ``JOB_HOSTNAME`` (where other nodes reach this one).
- **Nodes** of a multi-node run (``runner.cluster``): the rendezvous variables, and a watch
  that stops the job when a sibling fails.
- **Watched runs** (``tensorboard``): their artifacts mirrored under ``$RUNS_DIR``
  (``runner.mirror``) while the job runs.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from dstack import state
from dstack.models import JobSpec, RunRecord
from dstack.runner import cluster
from dstack.runner.logs import LogSink
from dstack.runner.mirror import RunsMirror
from dstack.storage.base import Storage


class JobExtras:
    def __init__(
        self,
        storage: Storage,
        spec: JobSpec,
        run: RunRecord,
        sink: LogSink,
        *,
        attempt: int,
        job_dir: Path,
        interval: float,
    ) -> None:
        self.storage = storage
        self.spec = spec
        self.run = run
        self.sink = sink
        self.attempt = attempt
        self.job_dir = job_dir
        self.interval = interval
        self.siblings = cluster.SiblingWatch(storage, spec)
        #: the names of the variables added here (a container is given them by name)
        self.names: list[str] = []
        self._mirror: RunsMirror | None = None

    def environment(self, env: dict[str, str], ports: list[int]) -> dict[str, str] | None:
        """``env`` with everything above added; None if a stop was requested meanwhile."""
        added = {
            "JOB_BIND_ADDRESS": cluster.bind_address(self.run),
            "JOB_HOSTNAME": cluster.node_address(self.run),
        }
        values = self._secrets()
        if any(app.token_param for app in self.spec.apps):
            token = secrets.token_hex(24)
            self.sink.mask([token])
            state.write_app_token(self.storage, self.spec, token)
            added["JOB_TOKEN"] = token
        if self.spec.nodes is not None:
            nodes = cluster.rendezvous(self.storage, self.spec, self.run, ports, self.attempt)
            if nodes is None:
                return None
            added.update(nodes)
        if self.spec.watch_runs:
            target = self.job_dir / "runs"
            self._mirror = RunsMirror(self.storage, self.spec, target, self.interval).start()
            self.sink.line(
                f"[dstack] runs {', '.join(self.spec.watch_runs)}: {self._mirror.files} "
                "artifact file(s), updated while this job runs"
            )
            added["RUNS_DIR"] = str(target)
        added.update(values)  # last: a secret wins over the workflow's env and dstack's names
        self.names = sorted(added)
        return {**env, **added}

    def sibling_ended(self) -> bool:
        """Whether another node of the run ended badly (see ``reason``)."""
        return self.siblings.ended_badly()

    @property
    def reason(self) -> str:
        return self.siblings.reason or "stopped because another node of the run ended"

    def close(self) -> None:
        if self._mirror is not None:
            self._mirror.stop()

    def _secrets(self) -> dict[str, str]:
        repo_id = self.spec.repo.repo_id
        values: dict[str, str] = {}
        for name in self.spec.secrets:  # the names pinned at submit, never the store's list
            record = state.read_secret(self.storage, repo_id, name)
            if record is not None and record.name == name:
                values[name] = record.value
        self.sink.mask(list(values.values()))
        return values
