"""The ``torchrun`` provider: a PyTorch script on ``nodes`` nodes, one job per node.

Job 0 is the master and saves the workflow's artifacts (as in 2022: the other ranks' files
are theirs to gather); every job runs the same command with its own ``NODE_RANK``. The runners
publish and await the master's address (``runner.cluster``), so each job starts with
``MASTER_ADDR``, ``MASTER_PORT``, ``NODE_RANK`` and ``NNODES`` set, and a run whose node fails
stops its other nodes.

``launcher: torchrun`` (the default) runs ``torchrun --nnodes … --node_rank …
--master_addr … --master_port … [--nproc_per_node GPUS] FILE ARGS``; torch comes from the
workflow's ``requirements``, and a job without it says so. ``launcher: python`` runs
``python FILE ARGS`` once per node with the same variables plus ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE`` (one process per node), for code that initialises
``torch.distributed`` with ``init_method="env://"`` itself, or another framework altogether.
"""

from __future__ import annotations

from typing import ClassVar

from dstack.models import JobSpec
from dstack.providers.base import Provider, RunInput, expect, job_spec
from dstack.providers.python import command_line
from dstack.spec.app_models import TorchrunWorkflow

TORCHRUN = (
    'torchrun --nnodes "$NNODES" --node_rank "$NODE_RANK" --master_addr "$MASTER_ADDR" '
    '--master_port "$MASTER_PORT" --nproc_per_node "$NPROC_PER_NODE"'
)
_NO_TORCHRUN = (
    "command -v torchrun >/dev/null || { echo '[dstack] torchrun is not in the environment of "
    "the job: add torch to `requirements`, or set `launcher: python`' >&2; exit 127; }"
)
_ONE_PROCESS = (
    'export RANK="$NODE_RANK" WORLD_SIZE="$NNODES" LOCAL_RANK=0 LOCAL_WORLD_SIZE=1 '
    'GROUP_RANK="$NODE_RANK"'
)


class TorchrunProvider(Provider):
    name: ClassVar[str] = "torchrun"

    def build_jobs(self, run: RunInput) -> list[JobSpec]:
        torchrun = expect(run.workflow, TorchrunWorkflow, self.name)
        if torchrun.launcher == "torchrun":
            launch = command_line(torchrun, run_name=run.run_name, args=run.args, launcher=TORCHRUN)
            commands = [_NO_TORCHRUN, launch]
        else:
            commands = [_ONE_PROCESS, command_line(torchrun, run_name=run.run_name, args=run.args)]
        master = job_spec(
            torchrun, run=run,
            commands=commands, python=torchrun.python, requirements=torchrun.requirements,
            nodes=torchrun.nodes,
        )  # fmt: skip
        master.master_listens = torchrun.launcher == "torchrun"
        gpus = master.resources.gpu_count
        master.env = {"NPROC_PER_NODE": str(gpus or 1), **master.env}
        workers = [
            master.model_copy(deep=True, update={"job_index": rank, "artifacts": []})
            for rank in range(1, torchrun.nodes)
        ]
        return [master, *workers]
