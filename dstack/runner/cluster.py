"""The nodes of a multi-node run (``torchrun``): finding the master, and ending together.

Job 0 is the master and publishes its address in the run's rendezvous record; the other nodes
wait for it (bounded, and no longer than the master lives), and every node stops when a sibling
failed. The races this closes and the variables each node gets: docs/design/multi-node.md.
"""

from __future__ import annotations

import os
import random
import socket
import time
from pathlib import Path

from dstack import state
from dstack.errors import RunnerError, StorageError
from dstack.models import JobSpec, JobStatus, Rendezvous, RunRecord
from dstack.runner import prepare
from dstack.storage.base import Storage

#: how long a node waits for the master to publish its address (a cloud master may still be
#: booting); ``DSTACK_RENDEZVOUS_TIMEOUT`` overrides it, in seconds
RENDEZVOUS_TIMEOUT = 900.0
SIBLING_CHECK_INTERVAL = 2.0
_ENDED_BADLY = (JobStatus.FAILED, JobStatus.ABORTED, JobStatus.INTERRUPTED)


def node_address(run: RunRecord) -> str:
    """Where the other nodes reach this one: loopback when every node is on this machine,
    ``DSTACK_NODE_ADDRESS`` when the compute says, else this host's own address."""
    if run.compute == "local":
        return "127.0.0.1"
    given = os.environ.get("DSTACK_NODE_ADDRESS")
    if given:
        return given
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def bind_address(run: RunRecord) -> str:
    """Where a job's servers listen: loopback on this machine (only its user reaches them), all
    interfaces on a cloud instance (its security group admits only the submitter)."""
    return "127.0.0.1" if run.compute == "local" else "0.0.0.0"


def rendezvous(
    storage: Storage, spec: JobSpec, run: RunRecord, ports: list[int], attempt: int
) -> dict[str, str] | None:
    """The rendezvous variables of this node: published by the master, awaited by the others.
    None when a stop was requested while waiting."""
    nodes = spec.nodes or 1
    if spec.job_index == 0:
        found = Rendezvous(
            master_addr=node_address(run),
            master_port=_master_port(ports),
            master_hostname=socket.gethostname(),
            attempt=attempt,
            at=time.time(),
        )
        state.write_rendezvous(storage, spec, found)
    else:
        waited = _await_master(storage, spec)
        if waited is None:
            return None
        if spec.master_listens and not _await_listening(storage, spec, waited):
            return None
        found = waited
    master_id = f"{spec.run_name}-0"
    return {
        "MASTER_ADDR": found.master_addr,
        "MASTER_PORT": str(found.master_port),
        "NODE_RANK": str(spec.job_index),
        "NNODES": str(nodes),
        "MASTER_ID": master_id,
        "MASTER_JOB_ID": master_id,
        "MASTER_HOSTNAME": found.master_addr,
        "MASTER_JOB_HOSTNAME": found.master_addr,
        "MASTER_PORT_0": str(found.master_port),
        "MASTER_JOB_PORT_0": str(found.master_port),
    }


def _master_port(ports: list[int]) -> int:
    """A port other than the job's own: on a cloud instance the next fixed port; on this
    machine a free one below the ephemeral range, which ``bind(0)`` never hands out."""
    if os.environ.get("DSTACK_RUNNER_PORTS"):
        candidate = prepare.free_ports(len(ports) + 1)[-1]
        while candidate in ports:
            candidate = prepare.free_ports(1)[0]
        return candidate
    low, _ = ephemeral_range()
    first = min(MASTER_PORTS[0], max(1024, low - 1))
    choices = list(range(first, min(MASTER_PORTS[1], low)))
    random.shuffle(choices)
    for candidate in choices[:200]:
        if candidate not in ports and _is_free(candidate):
            return candidate
    return prepare.free_ports(len(ports) + 1)[-1]  # a crowded range: as before


#: where a master's port is looked for on this machine, if below the ephemeral range
MASTER_PORTS = (20000, 32768)


def ephemeral_range() -> tuple[int, int]:
    """The ports the kernel hands out for ``bind(0)`` and outgoing connections."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(text[0]), int(text[1])
    except (OSError, ValueError, IndexError):
        return 32768, 60999


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("", port))
        except OSError:
            return False
    return True


def _await_listening(storage: Storage, spec: JobSpec, master: Rendezvous) -> bool:
    """Wait until the master's port accepts a connection; False when a stop was requested.
    Bounded like the wait for its address; a master that ends first lets this node go on."""
    timeout = float(os.environ.get("DSTACK_RENDEZVOUS_TIMEOUT") or RENDEZVOUS_TIMEOUT)
    deadline = time.monotonic() + timeout
    next_look = 0.0
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((master.master_addr, master.master_port), timeout=1):
                return True
        except OSError:
            pass
        if time.monotonic() >= next_look:  # the store, once a second: not at every probe
            next_look = time.monotonic() + 1.0
            try:
                if state.stop_requested(storage, spec):
                    return False
                head = state.read_job_state(storage, spec.repo.repo_id, spec.run_name, 0)
                if head.status.is_finished:
                    return True
            except StorageError:
                pass
        time.sleep(0.2)
    raise RunnerError(
        f"the master node (job 0) published {master.master_addr}:{master.master_port} but "
        f"nothing listened there within {timeout:.0f}s"
    )


def _await_master(storage: Storage, spec: JobSpec) -> Rendezvous | None:
    timeout = float(os.environ.get("DSTACK_RENDEZVOUS_TIMEOUT") or RENDEZVOUS_TIMEOUT)
    deadline = time.monotonic() + timeout
    delay = 0.1
    repo_id, run_name = spec.repo.repo_id, spec.run_name
    while True:
        try:
            if state.stop_requested(storage, spec):
                return None
            master = state.read_job_state(storage, repo_id, run_name, 0)
            found = state.read_rendezvous(storage, spec)
            if found is not None and found.attempt == master.attempt:
                return found
            if master.status.is_finished:
                raise RunnerError(
                    f"the master node (job 0) is {master.status.value} and never published "
                    "its address; this node cannot join it"
                )
        except StorageError:
            pass  # the store is unreachable for a moment: keep waiting until the deadline
        if time.monotonic() > deadline:
            raise RunnerError(
                f"the master node (job 0) did not publish its address within {timeout:.0f}s"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0)


class SiblingWatch:
    """Tells a runner when another node of its run ended badly (checked every few seconds)."""

    def __init__(self, storage: Storage, spec: JobSpec) -> None:
        self.storage = storage
        self.spec = spec
        self.reason: str | None = None
        self._next_check = 0.0

    def ended_badly(self) -> bool:
        """True once a sibling is failed, aborted or interrupted; ``reason`` says which."""
        if self.reason is not None:
            return True
        if (self.spec.nodes or 1) < 2 or time.monotonic() < self._next_check:
            return False
        self._next_check = time.monotonic() + SIBLING_CHECK_INTERVAL
        try:
            heads = state.run_heads(self.storage, self.spec)
        except StorageError:
            return False
        for head in heads:
            if head.job_index != self.spec.job_index and head.status in _ENDED_BADLY:
                self.reason = (
                    f"stopped because node {head.job_index} of the run is {head.status.value}"
                )
                return True
        return False
