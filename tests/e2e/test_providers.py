"""End-to-end: the app and multi-node providers through the real CLI on this machine.

- Ports: the attached CLI prints each port's URL once it answers.
- ``lab``: JupyterLab installed from the package index into the session's machine cache
  (about 20 s, once), answering HTTP with its token on the printed port; ``dstack stop``
  ends it with its artifacts saved. A version that does not exist fails the run with one
  clear reason. These need the package index: without it they are skipped, saying so.
- ``tensorboard``: serves the runs given as arguments (TensorBoard, about 25 s to install
  once); the producing run writes a minimal event file by hand, so no TensorFlow is needed.
- ``torchrun``: two nodes that agree on an all-reduce. CI runs it with ``launcher: python``
  and a plain-Python program doing the all-reduce over TCP at MASTER_ADDR:MASTER_PORT: the
  rendezvous, the variables, one job per node and the run's status are dstack's, and a CPU
  build of torch (hundreds of MB into every fresh machine cache) would only test torch. The
  same through ``torchrun`` with torch's gloo backend runs where torch is importable here
  (or with DSTACK_TEST_TORCH=1, which installs torch==2.13.0 into the job's environment).
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_repo
from tests.e2e.cli import FINISHED, Dstack
from tests.e2e.conftest import Store

LOCAL_ONLY = pytest.mark.parametrize("store", ["local"], indirect=True)
LAB_VERSION = "4.6.6"
Attached = list[tuple[subprocess.Popen[bytes], Path]]  # `dstack run` processes, repos


@pytest.fixture(scope="session")
def package_index() -> None:
    """Skip when pip cannot reach the package index from this machine."""
    pip = [sys.executable, "-m", "pip", "index", "versions", "jupyterlab"]
    try:
        found = subprocess.run(
            [*pip, "--timeout", "15", "--retries", "1"], capture_output=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        pytest.skip("the package index did not answer within 120 s")
    if found.returncode != 0 or LAB_VERSION.encode() not in found.stdout:
        pytest.skip(f"the package index is unreachable: {found.stderr.decode()[-200:]}")


class Lines:
    """The lines a process writes to one of its pipes, read in a thread, awaited by pattern."""

    def __init__(self, stream: object) -> None:
        self._queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        thread.start()

    def _read(self, stream: object) -> None:
        for raw in iter(stream.readline, b""):  # type: ignore[attr-defined]
            self._queue.put(raw.decode(errors="replace"))

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} within {timeout}s: {''.join(self.seen)}")


@pytest.fixture
def attached(dstack: Dstack) -> Iterator[Attached]:
    """Attached `dstack run` processes; whatever happens, they end with the test, and so do
    the runs they started (their servers would outlive a failed test otherwise)."""
    started: Attached = []
    yield started
    for proc, repo in started:
        if proc.poll() is None:
            dstack("stop", "-a", "-x", "-y", cwd=repo)
            proc.terminate()
            proc.wait(10)


def start(
    dstack: Dstack, attached: Attached, repo: Path, *args: str
) -> tuple[subprocess.Popen[bytes], Lines]:
    proc = dstack.popen("run", *args, cwd=repo)
    attached.append((proc, repo))
    return proc, Lines(proc.stderr)


def latest_run(dstack: Dstack, repo: Path, workflow: str) -> str:
    rows = json.loads(dstack("ps", "-a", "--json", cwd=repo).out)
    return next(row["run"] for row in rows if row["workflow"] == workflow)


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""


# ------------------------------------------------------------------------------------- ports

SERVE = """\
workflows:
  - name: serve
    ports: 2
    commands:
      - echo "ports $PORT_0 $JOB_PORT_1"
      - python -m http.server "$PORT_0" --bind 127.0.0.1
"""


@LOCAL_ONLY
def test_the_attached_cli_prints_a_port_once_it_answers(
    tmp_path: Path, dstack: Dstack, attached: Attached
) -> None:
    repo = make_repo(tmp_path / "repo", {".dstack/workflows.yaml": SERVE, "hello.txt": "hi\n"})
    proc, err = start(dstack, attached, repo, "serve")
    line = err.wait_for("PORT_0 is ready: ", timeout=60)
    url = line.split("is ready: ", 1)[1].strip()
    assert url.startswith("http://127.0.0.1:")
    assert http_get(url + "/hello.txt") == (200, b"hi\n")
    name = latest_run(dstack, repo, "serve")
    assert dstack("stop", name, cwd=repo).code == 0
    assert proc.wait(30) != 0
    assert not any("PORT_1 is ready" in seen for seen in err.seen)  # nothing listens there


# --------------------------------------------------------------------------------------- lab

LAB = f"""\
workflows:
  - name: lab
    provider: lab
    version: {LAB_VERSION}
    setup:
      - mkdir -p out && echo "saved by setup" > out/note.txt
    artifacts:
      - out
  - name: lab-missing
    provider: lab
    version: 99.0
"""


@LOCAL_ONLY
def test_lab_answers_with_its_token_and_stop_saves_its_artifacts(
    tmp_path: Path,
    dstack: Dstack,
    attached: Attached,
    package_index: None,
) -> None:
    repo = make_repo(tmp_path / "repo", {".dstack/workflows.yaml": LAB})
    proc, err = start(dstack, attached, repo, "lab")
    line = err.wait_for("lab is ready: ", timeout=240)  # the first run installs JupyterLab
    url = line.split("is ready: ", 1)[1].strip()
    base, _, token = url.partition("/lab?token=")
    assert base.startswith("http://127.0.0.1:") and len(token) == 48
    assert http_get(url)[0] == 200
    status, body = http_get(f"{base}/api/status?token={token}")
    assert status == 200 and b"started" in body
    assert http_get(f"{base}/api/status")[0] == 403  # no token, no entry
    name = latest_run(dstack, repo, "lab")
    shown = dstack("ps", name, "--json", cwd=repo)
    assert token not in shown.out
    stopped = dstack("stop", name, cwd=repo)
    assert stopped.out.strip() == f"{name}: stopped", stopped.err
    assert proc.wait(30) == 1
    assert dstack.ps_json(name, repo)["status"] == "stopped"
    listed = dstack("artifacts", "list", name, "--json", cwd=repo)
    assert [f["path"] for f in json.loads(listed.out)] == ["out/note.txt"]
    holders = [
        path.relative_to(dstack.home / "store").as_posix()
        for path in (dstack.home / "store").rglob("*")
        if path.is_file() and token.encode() in path.read_bytes()
    ]
    assert holders == [f"repos/github.com/acme/mnist/runs/{name}/jobs/0/token"]


@LOCAL_ONLY
def test_a_lab_version_that_does_not_exist_fails_with_one_clear_reason(
    tmp_path: Path, dstack: Dstack, package_index: None
) -> None:
    repo = make_repo(tmp_path / "repo", {".dstack/workflows.yaml": LAB})
    result = dstack("run", "lab-missing", cwd=repo, timeout=180)
    assert result.code == 1
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("Run ") and " failed: installing jupyterlab==99.0 failed: " in last
    assert "jupyterlab==99.0: no such version on the package index (newest: " in last
    assert LAB_VERSION in last


# ------------------------------------------------------------------------------- tensorboard

# A TensorBoard event file (a TFRecord holding one Event with its file_version), written with
# the standard library only, so the producing run needs neither TensorFlow nor TensorBoard.
EVENTS = """\
import struct, sys, time

def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF

def masked(data):
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF

def record(data):
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked(length)) + data + struct.pack("<I", masked(data))

version = b"brain.Event:2"
event = b"\\x09" + struct.pack("<d", time.time()) + b"\\x1a" + bytes([len(version)]) + version
with open(sys.argv[1], "wb") as f:
    f.write(record(event))
"""
BOARD = """\
workflows:
  - name: train
    commands:
      - mkdir -p logs/train
      - python events.py logs/train/events.out.tfevents.1.host
    artifacts:
      - logs
"""


@LOCAL_ONLY
def test_tensorboard_serves_the_runs_given_as_arguments(
    tmp_path: Path,
    dstack: Dstack,
    attached: Attached,
    package_index: None,
) -> None:
    repo = make_repo(tmp_path / "repo", {".dstack/workflows.yaml": BOARD, "events.py": EVENTS})
    assert dstack("run", "train", cwd=repo).code == 0
    trained = latest_run(dstack, repo, "train")
    missing = dstack("run", "tensorboard", "no-such-run-1", cwd=repo)
    assert missing.code != 0 and "no run 'no-such-run-1'" in missing.err
    proc, err = start(dstack, attached, repo, "tensorboard", trained)
    line = err.wait_for("tensorboard is ready: ", timeout=240)
    url = line.split("is ready: ", 1)[1].strip()
    deadline = time.monotonic() + 60
    while True:  # TensorBoard loads the logdir in the background
        status, body = http_get(url + "data/runs")
        if status == 200 and json.loads(body):
            break
        assert time.monotonic() < deadline, body
        time.sleep(0.5)
    assert json.loads(body) == [f"{trained}/logs/train"]
    board = latest_run(dstack, repo, "tensorboard")
    assert dstack("stop", board, cwd=repo).code == 0
    proc.wait(30)


# --------------------------------------------------------------------------------- torchrun

# An all-reduce (sum of rank + 1) over plain TCP at the rendezvous the runners set up.
ALLREDUCE = """\
import os, socket, time

rank, nodes = int(os.environ["NODE_RANK"]), int(os.environ["NNODES"])
addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
assert (os.environ["RANK"], os.environ["WORLD_SIZE"]) == (str(rank), str(nodes))
if rank == 0:
    server = socket.create_server((addr, port))
    peers = [server.accept()[0] for _ in range(nodes - 1)]
    total = 1 + sum(int(peer.recv(64)) for peer in peers)
    for peer in peers:
        peer.sendall(str(total).encode())
else:
    deadline = time.monotonic() + 60
    while True:
        try:
            peer = socket.create_connection((addr, port))
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    peer.sendall(str(rank + 1).encode())
    total = int(peer.recv(64))
print(f"rank {rank} of {nodes}: sum={total}", flush=True)
with open(os.environ["DSTACK_METRICS"], "a") as metrics:  # each node its own file and series
    metrics.write('{"step": 1, "sum": %d, "rank": %d}\\n' % (total, rank))
"""
GLOO = """\
import torch
import torch.distributed as dist

dist.init_process_group("gloo")
value = torch.tensor([dist.get_rank() + 1.0])
dist.all_reduce(value)
print(f"rank {dist.get_rank()} of {dist.get_world_size()}: sum={value.item():.0f}", flush=True)
"""
TORCHRUN = """\
workflows:
  - name: allreduce
    provider: torchrun
    launcher: python
    script: allreduce.py
    nodes: 2
  - name: gloo
    provider: torchrun
    script: gloo.py
    requirements: requirements.txt
    nodes: 2
  - name: broken
    provider: torchrun
    launcher: python
    script: broken.py
    nodes: 2
"""
BROKEN = """\
import os, sys, time

if os.environ["NODE_RANK"] == "1":
    print("rank 1 gives up", flush=True)
    sys.exit(3)
time.sleep(120)
"""


def torchrun_repo(tmp_path: Path, torch_version: str = "2.13.0") -> Path:
    files = {
        ".dstack/workflows.yaml": TORCHRUN, "allreduce.py": ALLREDUCE, "gloo.py": GLOO,
        "broken.py": BROKEN, "requirements.txt": f"torch=={torch_version}\n",
    }  # fmt: skip
    return make_repo(tmp_path / "repo", files)


def test_two_nodes_agree_on_an_all_reduce(tmp_path: Path, dstack: Dstack, store: Store) -> None:
    repo = torchrun_repo(tmp_path)
    result = dstack("run", "allreduce", cwd=repo)
    assert result.code == 0, result.err
    assert sorted(result.job_lines) == ["rank 0 of 2: sum=3", "rank 1 of 2: sum=3"]
    run = latest_run(dstack, repo, "allreduce")
    row = dstack.ps_json(run, repo)
    assert (row["status"], row["jobs"]) == ("done", 2)
    assert dstack("metrics", run, cwd=repo).out.splitlines() == [
        "JOB  METRIC  STEP  VALUE  POINTS",
        "0    rank    1     0      1",
        "0    sum     1     3      1",
        "1    rank    1     1      1",
        "1    sum     1     3      1",
    ]


@LOCAL_ONLY
def test_a_failed_node_fails_the_run_and_stops_the_others(tmp_path: Path, dstack: Dstack) -> None:
    repo = torchrun_repo(tmp_path)
    started = time.monotonic()
    result = dstack("run", "broken", cwd=repo)
    assert time.monotonic() - started < 60  # node 0 would sleep 120 s if it were not stopped
    assert result.code == 3, result.err
    assert "rank 1 gives up" in result.out
    name = latest_run(dstack, repo, "broken")
    storage = dstack.storage()
    from dstack import state

    states = [state.read_job_state(storage, "github.com/acme/mnist", name, i) for i in (0, 1)]
    assert [s.status.value for s in states] == ["stopped", "failed"]
    assert states[0].reason == "stopped because node 1 of the run is failed"
    assert dstack.ps_json(name, repo)["status"] == "failed"
    assert all(s.status.value in FINISHED for s in states)


def torch_version() -> str | None:
    """The torch to test with: the one importable here, or 2.13.0 when DSTACK_TEST_TORCH=1."""
    if importlib.util.find_spec("torch") is not None:
        import torch

        return str(torch.__version__).split("+")[0]
    return "2.13.0" if os.environ.get("DSTACK_TEST_TORCH") else None


@LOCAL_ONLY
@pytest.mark.skipif(
    torch_version() is None,
    reason="torch is not importable here (set DSTACK_TEST_TORCH=1 to install a CPU build into "
    "the job's environment); the plain-Python all-reduce covers dstack's side",
)
def test_two_torchrun_nodes_all_reduce_with_gloo(
    tmp_path: Path, dstack: Dstack, package_index: None
) -> None:
    repo = torchrun_repo(tmp_path, torch_version() or "")
    result = dstack("run", "gloo", cwd=repo, timeout=600)
    assert result.code == 0, result.err
    sums = sorted(line for line in result.out.splitlines() if line.startswith("rank "))
    assert sums == ["rank 0 of 2: sum=3", "rank 1 of 2: sum=3"]


# -------------------------------------------------------------------------------------- code


@LOCAL_ONLY
@pytest.mark.skipif(
    any(shutil.which(name) for name in ("openvscode-server", "code-server")),
    reason="this machine has a VS Code server",
)
def test_code_without_a_vscode_server_is_refused_at_submit(tmp_path: Path, dstack: Dstack) -> None:
    repo = make_repo(
        tmp_path / "repo",
        {".dstack/workflows.yaml": "workflows:\n  - name: ide\n    provider: code\n"},
    )
    result = dstack("run", "ide", cwd=repo)
    assert result.code != 0
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: workflow 'ide': provider code needs")
    assert "openvscode-server" in lines[0] and "package registries" in lines[0]
    assert not (dstack.home / "store").exists() or not any(
        p.is_file() for p in (dstack.home / "store").rglob("*")
    )
