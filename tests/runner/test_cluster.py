"""The nodes of a multi-node run meeting through the store, and noticing a failed sibling;
pip's failures as one line."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dstack import state
from dstack.errors import RunnerError
from dstack.models import JobSpec, JobState, JobStatus, Owner, RepoSnapshot, RunRecord
from dstack.runner import cluster, pip_errors
from dstack.storage.local import LocalStorage
from tests.records import put_job_state

REPO = RepoSnapshot(repo_id="github.com/acme/mnist", code_key="codes/x.tar.gz")


def make_run(
    tmp_path: Path, nodes: int = 2, master_listens: bool = True
) -> tuple[LocalStorage, RunRecord, list[JobSpec]]:
    storage = LocalStorage(tmp_path / "store")
    run = RunRecord(
        run_name="calm-cat-1", repo_id=REPO.repo_id, workflow="train", provider="torchrun",
        submitted_at=1000.0, owner=Owner(user="ada"), job_count=nodes, repo=REPO,
    )  # fmt: skip
    jobs = [
        JobSpec(run_name="calm-cat-1", job_index=i, workflow="train", provider="torchrun",
                repo=REPO, nodes=nodes, submitted_at=1000.0, master_listens=master_listens)
        for i in range(nodes)
    ]  # fmt: skip
    state.create_run(storage, run, jobs)
    return storage, run, jobs


def test_the_master_publishes_and_a_worker_finds_it(tmp_path: Path) -> None:
    storage, run, (master, worker) = make_run(tmp_path)
    found: dict[str, str] = {}
    waiting = threading.Thread(
        target=lambda: found.update(cluster.rendezvous(storage, worker, run, [], 1) or {})
    )
    waiting.start()
    waiting.join(0.3)
    assert waiting.is_alive() and not found  # the worker waits for the master
    published = cluster.rendezvous(storage, master, run, [5000], 1)
    assert published is not None
    with listening(int(published["MASTER_PORT"])):  # what the master's torchrun does
        waiting.join(10)
    assert published["MASTER_ADDR"] == "127.0.0.1" and published["NODE_RANK"] == "0"
    assert int(published["MASTER_PORT"]) != 5000  # not one of the job's own ports
    assert found["MASTER_PORT"] == published["MASTER_PORT"]
    assert found["NODE_RANK"] == "1" and found["NNODES"] == "2"
    assert found["MASTER_JOB_PORT_0"] == found["MASTER_PORT"]  # the 2022 names
    assert found["MASTER_JOB_ID"] == "calm-cat-1-0"


@contextlib.contextmanager
def listening(port: int, after: float = 0.0) -> Iterator[None]:
    """A test double of the master's torchrun: its TCP store listening on ``port``, from
    ``after`` seconds on (a master slow to start)."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    def serve() -> None:
        time.sleep(after)
        server.bind(("127.0.0.1", port))
        server.listen()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield
    finally:
        thread.join()
        server.close()


def test_workers_start_only_once_a_slow_master_listens(tmp_path: Path) -> None:
    storage, run, (master, worker) = make_run(tmp_path)
    published = cluster.rendezvous(storage, master, run, [], 1)
    assert published is not None
    port = int(published["MASTER_PORT"])
    started_at: list[float] = []
    with listening(port, after=3.0):
        began = time.monotonic()
        found = cluster.rendezvous(storage, worker, run, [], 1)
        started_at.append(time.monotonic() - began)
        assert found is not None and found["MASTER_PORT"] == str(port)
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            pass  # it was listening when the worker went on: no connect timeout to run out
    assert started_at[0] > 0  # it waited (no timing asserted beyond order)


def test_with_the_python_launcher_workers_do_not_wait_for_a_listener(tmp_path: Path) -> None:
    storage, run, (master, worker) = make_run(tmp_path, master_listens=False)
    cluster.rendezvous(storage, master, run, [], 1)
    assert cluster.rendezvous(storage, worker, run, [], 1) is not None  # nothing listens


def test_a_master_that_ends_without_listening_lets_workers_go_on(tmp_path: Path) -> None:
    storage, run, (master, worker) = make_run(tmp_path)
    cluster.rendezvous(storage, master, run, [], 1)
    done = JobState(status=JobStatus.DONE, exit_code=0, updated_at=time.time())
    put_job_state(storage, master, "ada", done)
    assert cluster.rendezvous(storage, worker, run, [], 1) is not None


def test_the_master_port_is_below_the_ephemeral_range(tmp_path: Path) -> None:
    storage, run, (master, _) = make_run(tmp_path)
    low, _ = cluster.ephemeral_range()
    ports = set()
    for _ in range(20):
        published = cluster.rendezvous(storage, master, run, [], 1)
        assert published is not None
        ports.add(int(published["MASTER_PORT"]))
    # bind(0) — every other free-port pick and outgoing connection — never hands these out
    assert all(port < low for port in ports)
    grabbed = [socket.socket() for _ in range(200)]
    try:
        for sock in grabbed:
            sock.bind(("127.0.0.1", 0))
        assert not ports & {sock.getsockname()[1] for sock in grabbed}
    finally:
        for sock in grabbed:
            sock.close()


def test_a_worker_gives_up_when_the_master_ended(tmp_path: Path) -> None:
    storage, run, (master, worker) = make_run(tmp_path)
    failed = JobState(status=JobStatus.FAILED, reason="exit code 1", updated_at=time.time())
    put_job_state(storage, master, "ada", failed)
    with pytest.raises(RunnerError, match=r"master node \(job 0\) is failed"):
        cluster.rendezvous(storage, worker, run, [], 1)


def test_a_worker_waits_a_bounded_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage, run, (_, worker) = make_run(tmp_path)
    monkeypatch.setenv("DSTACK_RENDEZVOUS_TIMEOUT", "0.5")
    with pytest.raises(RunnerError, match="did not publish its address within 0s"):
        cluster.rendezvous(storage, worker, run, [], 1)


def test_a_stop_request_ends_the_wait(tmp_path: Path) -> None:
    storage, run, (_, worker) = make_run(tmp_path)
    state.request_stop(storage, worker, abort=False)
    assert cluster.rendezvous(storage, worker, run, [], 1) is None


def test_a_rendezvous_of_an_earlier_master_attempt_is_not_used(tmp_path: Path) -> None:
    storage, run, (master, worker) = make_run(tmp_path)
    cluster.rendezvous(storage, master, run, [], 1)
    second = JobState(status=JobStatus.PROVISIONING, attempt=2, updated_at=time.time())
    put_job_state(storage, master, "ada", second)  # attempt 2 has not published yet
    state.request_stop(storage, worker, abort=False)  # so the worker would wait: stop it
    assert cluster.rendezvous(storage, worker, run, [], 2) is None


def test_a_node_notices_a_failed_sibling(tmp_path: Path) -> None:
    storage, _, (master, worker) = make_run(tmp_path)
    watch = cluster.SiblingWatch(storage, master)
    assert not watch.ended_badly()
    done = JobState(status=JobStatus.DONE, exit_code=0, updated_at=time.time())
    put_job_state(storage, worker, "ada", done)
    watch._next_check = 0.0
    assert not watch.ended_badly()  # a sibling that is done early is fine
    failed = JobState(status=JobStatus.FAILED, exit_code=3, updated_at=time.time() + 1)
    put_job_state(storage, worker, "ada", failed)
    watch._next_check = 0.0
    assert watch.ended_badly()
    assert watch.reason == "stopped because node 1 of the run is failed"


def test_single_node_jobs_never_look_at_siblings(tmp_path: Path) -> None:
    storage, _, (only,) = make_run(tmp_path, nodes=1)
    assert not cluster.SiblingWatch(storage, only).ended_badly()


PIP_NO_VERSION = b"""\
Looking in links: /opt/wheels
ERROR: Could not find a version that satisfies the requirement jupyterlab==99.0 (from versions: \
0.1.0, 3.6.8, 4.6.5, 4.6.6)
ERROR: No matching distribution found for jupyterlab==99.0
"""


def test_pip_failures_become_one_line() -> None:
    assert pip_errors.explain(PIP_NO_VERSION) == (
        "jupyterlab==99.0: no such version on the package index (newest: 0.1.0, 3.6.8, 4.6.5, "
        "4.6.6)"
    )
    none = (
        b"ERROR: Could not find a version that satisfies the requirement nope (from versions: none)"
    )
    assert "has no version of it" in (pip_errors.explain(none) or "")
    assert pip_errors.explain(b"ERROR: x\nERROR: Could not open requirements file\n") == (
        "Could not open requirements file"
    )
    assert pip_errors.explain(b"Traceback ...") is None
