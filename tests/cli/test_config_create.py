"""`dstack config --create` without the Pulumi engine: one clear line, nothing saved."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.cli import Dstack


@pytest.mark.skipif(shutil.which("pulumi") is not None, reason="a Pulumi engine is installed")
def test_create_without_engine_says_what_to_install(dstack_home: Path, tmp_path: Path) -> None:
    keys = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}  # never sent
    result = Dstack(dstack_home, keys)(
        "config", "--backend", "aws", "--bucket", "my-dstack-state", "--region", "eu-west-1",
        "--create", "-y", cwd=tmp_path,
    )  # fmt: skip
    assert result.code != 0
    [line] = result.err.strip().splitlines()
    assert line.startswith("Error: ") and "Pulumi" in line
    assert not (dstack_home / "config.yaml").exists()
