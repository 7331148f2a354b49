"""The local store is owner-only: files 0600 (0700 executable), folders 0700."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from dstack.storage.local import LocalStorage


def test_everything_in_the_local_store_is_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        storage = LocalStorage(tmp_path / "store")
        storage.put("repos/h/o/r/runs/x/run.json", b"{}")
        storage.put("repos/h/o/r/runs/x/jobs/0/logs/0-1", b"out")
        script = tmp_path / "train.sh"
        script.write_text("echo")
        script.chmod(0o755)
        data = tmp_path / "data.csv"
        data.write_text("1")
        storage.upload_file(script, "repos/h/o/r/runs/x/jobs/0/artifacts/train.sh")
        storage.upload_file(data, "codes/abc.tar.gz")
        out = tmp_path / "out" / "train.sh"
        storage.download_file("repos/h/o/r/runs/x/jobs/0/artifacts/train.sh", out)
    finally:
        os.umask(old)
    for root, dirs, files in os.walk(tmp_path / "store"):
        for name in dirs:
            assert stat.S_IMODE(os.stat(Path(root, name)).st_mode) == 0o700, name
        for name in files:
            mode = stat.S_IMODE(os.stat(Path(root, name)).st_mode)
            assert mode == (0o700 if name == "train.sh" else 0o600), name
    assert stat.S_IMODE(out.stat().st_mode) == 0o755  # a download is the user's own file
