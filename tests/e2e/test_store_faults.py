"""An S3 store that misbehaves mid-run: gone for 20 s, then throttling; and one gone for good.

``tests.fault_proxy.FaultProxy`` sits on loopback between every dstack process (the CLI and
its runner) and the moto server. The test itself reads the store directly from moto.

What a reader on another machine would conclude during such an outage: nothing, while it
cannot reach the store either (its own requests are retried for ``DSTACK_S3_RETRY_DEADLINE``);
and right after it, when every runner's heartbeat is as old as the outage, it waits up to
``monitor.HEARTBEAT_GRACE`` for a fresh beat before declaring a runner lost. The attached CLI
here is on the runner's machine, so it asks the process and never doubts it.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dstack import state
from dstack.storage.s3.storage import S3Storage
from tests.e2e.cli import FINISHED, Dstack, job_lines, wait_for
from tests.e2e.conftest import Store
from tests.fault_proxy import FaultProxy

pytestmark = pytest.mark.parametrize("store", ["s3"], indirect=True)

STEADY = """\
set -e
mkdir -p out
i=0
while :; do
  i=$((i + 1))
  echo "line $i"
  if [ $((i % 20)) -eq 0 ]; then
    head -c 100000 /dev/urandom > "out/ckpt-$i.bin"
    cp "out/ckpt-$i.bin" "$MIRROR/"
  fi
  if [ -e "$RELEASE" ]; then break; fi
  sleep 0.05
done
head -c 3000000 /dev/urandom > out/final.bin
cp out/final.bin "$MIRROR/"
echo "done after $i lines"
"""
WORKFLOWS = """\
workflows:
  - name: steady
    commands:
      - bash steady.sh
    artifacts:
      - out
"""
REPO_ID = "github.com/acme/mnist"


@pytest.fixture
def repo(repo_factory) -> Path:  # type: ignore[no-untyped-def]
    return repo_factory({".dstack/workflows.yaml": WORKFLOWS, "steady.sh": STEADY})


@pytest.fixture
def proxy(store: Store) -> Iterator[FaultProxy]:
    assert store.moto is not None
    with FaultProxy(store.moto.endpoint_url) as proxy:
        yield proxy


def through(proxy: FaultProxy, store: Store, home: Path, retry_deadline: float) -> Dstack:
    """dstack whose every process reaches the store through ``proxy``."""
    env = {
        **store.env,
        "DSTACK_AWS_ENDPOINT_URL": proxy.url,
        "DSTACK_S3_RETRY_DEADLINE": str(retry_deadline),
    }
    return Dstack(home, env)


class Lines:
    """The stdout of an attached `dstack run`, collected by a thread, line by line."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.raw = bytearray()
        self._stdout = proc.stdout
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while chunk := self._stdout.read1(65536):
            self.raw += chunk

    def count(self) -> int:
        return bytes(self.raw).count(b"\n")

    def wait_more(self, more: int, timeout: float = 30) -> None:
        target = self.count() + more
        wait_for(lambda: self.count() >= target, timeout, f"{more} more lines of output")

    def join(self) -> bytes:
        self._thread.join(timeout=30)
        return bytes(self.raw)


def test_outage_and_throttling_mid_run_lose_nothing(
    store: Store, proxy: FaultProxy, repo: Path, dstack_home: Path, tmp_path: Path
) -> None:
    cli = through(proxy, store, dstack_home, retry_deadline=60)
    release, mirror, download = tmp_path / "release", tmp_path / "mirror", tmp_path / "download"
    mirror.mkdir()
    proc = cli.popen(
        "run", "-e", f"RELEASE={release}", "-e", f"MIRROR={mirror}", "steady", cwd=repo
    )
    lines = Lines(proc)
    lines.wait_more(10)
    proxy.refuse_for(20)  # the store is gone for everyone: CLI, runner, heartbeats
    wait_for(lambda: not proxy.in_outage, 25, "the end of the outage")
    lines.wait_more(10)  # the run goes on, and its output catches up
    requests_before = proxy.requests
    proxy.fail_next(40)  # then a burst of 503 SlowDown
    wait_for(lambda: proxy.pending == 0, 30, "the throttling burst to be served")
    lines.wait_more(10)
    release.touch()
    assert proc.wait(timeout=120) == 0, proc.stderr.read().decode() if proc.stderr else ""
    printed = lines.join()
    assert proxy.refused > 0 and proxy.faults == 40 and proxy.requests > requests_before + 40

    # the printed output is the job's, whole and once, and equals the stored log line for line
    printed_lines = job_lines(printed.decode())
    count = int(printed_lines[-1].split()[2])
    assert printed_lines == [f"line {i}" for i in range(1, count + 1)] + [
        f"done after {count} lines"
    ]
    direct = S3Storage(store.bucket or "", endpoint_url=store.env["DSTACK_AWS_ENDPOINT_URL"])
    run = json.loads(cli("ps", "-a", "--json", cwd=repo).out)[0]["run"]
    logs = state.logs_prefix(REPO_ID, run, 0)
    stored = b"".join(direct.get(info.key) for info in direct.list_objects(logs))
    assert stored.decode().splitlines() == printed.decode().splitlines()

    # every artifact, byte for byte, including those written while the store was gone
    assert cli("artifacts", "download", run, "-o", str(download), cwd=repo).code == 0
    written = {p.name: p.read_bytes() for p in mirror.iterdir()}
    got = {p.name: p.read_bytes() for p in (download / "out").iterdir()}
    assert len(written) >= count // 20 + 1
    assert got.keys() == written.keys()
    assert all(got[name] == written[name] for name in written)
    assert cli.ps_json(run, repo)["status"] == "done"


def test_store_gone_past_the_retry_bound_is_one_clear_line(
    store: Store, proxy: FaultProxy, repo: Path, dstack_home: Path, tmp_path: Path
) -> None:
    cli = through(proxy, store, dstack_home, retry_deadline=1)
    release, mirror = tmp_path / "release", tmp_path / "mirror"
    mirror.mkdir()
    proc = cli.popen(
        "run", "-e", f"RELEASE={release}", "-e", f"MIRROR={mirror}", "steady", cwd=repo
    )
    lines = Lines(proc)
    lines.wait_more(5)
    proxy.refuse_for(60)
    # the attached CLI gives up with one line (no traceback) and says the run goes on
    assert proc.wait(timeout=30) == 1
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("Error: the S3 state store") and "did not answer for 1s" in last
    assert "goes on" in last and "dstack logs -a" in last
    for command in (("ps", "-a"), ("run", "steady")):
        result = cli(*command, cwd=repo)
        assert result.code == 1
        assert result.err.strip().splitlines() == [result.err.strip()]
        assert result.err.startswith("Error: the S3 state store") and "Traceback" not in result.err
    # once the store is back, the run finishes, with every line of its output kept
    proxy.end_outage()
    release.touch()
    run = json.loads(cli("ps", "-a", "--json", cwd=repo).out)[0]["run"]
    assert cli.wait_status(run, repo, lambda s: s in FINISHED)["status"] == "done"
    output = cli("logs", run, cwd=repo).job_lines
    count = int(output[-1].split()[2])
    assert output == [f"line {i}" for i in range(1, count + 1)] + [f"done after {count} lines"]
