"""A full disk under the local store: the attached `dstack run` says so within seconds, and
the run goes on and loses nothing once space is freed. The store is a small tmpfs (mounting
needs root; skipped otherwise)."""

from __future__ import annotations

import os
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_repo
from tests.e2e.cli import DSTACK, Dstack

WORKFLOWS = """\
workflows:
  - name: ticks
    commands:
      - for i in $(seq 1 400); do echo "tick $i"; if [ -e "$RELEASE" ]; then break; fi; sleep 0.1; done
      - echo finished
"""


@pytest.fixture
def small_store(dstack_home: Path) -> Iterator[Path]:
    store = dstack_home / "store"
    store.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(store)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield store
    finally:
        subprocess.run(["umount", "-l", str(store)], capture_output=True)


def fill(folder: Path) -> Path:
    path = folder / "filler.bin"
    with open(path, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    return path


def test_a_full_store_is_said_within_seconds(
    small_store: Path, dstack_home: Path, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo", {".dstack/workflows.yaml": WORKFLOWS})
    release = tmp_path / "release"
    cli = Dstack(dstack_home, {"RELEASE": str(release)})
    proc = subprocess.Popen(
        [*DSTACK, "run", "ticks"], cwd=repo, env=cli.env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stderr], daemon=True).start()  # type: ignore[union-attr]
    assert proc.stdout is not None
    first = proc.stdout.readline()
    while first.startswith("[dstack] "):  # dstack's own phase lines come before the job's
        first = proc.stdout.readline()
    assert first.startswith("tick"), first
    filler = fill(small_store)
    said = ""
    deadline = time.monotonic() + 60  # a bound for the test only; it says so in ~2 s
    while "cannot be written" not in said and time.monotonic() < deadline:
        try:
            said += lines.get(timeout=1)
        except queue.Empty:
            continue
    assert "cannot be written" in said and "No space left on device" in said
    os.unlink(filler)
    release.touch()
    # stdout to its end (the job ends once released); stderr stays with its reader thread,
    # which communicate() would race for the same pipe
    out = proc.stdout.read()
    proc.wait(timeout=120)
    assert proc.returncode == 0
    ticks = [line for line in (first + out).splitlines() if line.startswith("tick")]
    assert ticks == [f"tick {i}" for i in range(1, len(ticks) + 1)]  # nothing lost
    assert out.rstrip().endswith("finished")
