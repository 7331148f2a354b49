"""Working folders of runners killed with kill -9 are removed by the next runner."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from dstack.runner import workdirs


def age(path: Path) -> None:
    old = time.time() - 3600
    os.utime(path, (old, old))


def test_a_dead_runners_folder_is_swept_a_live_ones_is_not(tmp_path: Path) -> None:
    live, dead, kept = (
        tmp_path / "local_r" / name for name in ("live-1-0", "dead-1-0", "kept-1-0")
    )
    held = workdirs.hold(live)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from dstack.runner import workdirs; workdirs.hold(Path(sys.argv[1])); time.sleep(60)",
         str(dead)],
    )  # fmt: skip
    while not (dead / workdirs.LOCK).exists():
        time.sleep(0.05)
    time.sleep(0.5)
    holder.kill()  # kill -9: it never cleans up
    holder.wait()
    workdirs.release(workdirs.hold(kept))
    (kept / workdirs.KEEP).touch()
    for folder in (live, dead, kept):
        (folder / "repo").mkdir()
        age(folder / workdirs.LOCK)
    assert workdirs.sweep(tmp_path) == [dead]
    assert live.exists() and kept.exists() and not dead.exists()
    assert (live.stat().st_mode & 0o777) == 0o700
    workdirs.release(held)
