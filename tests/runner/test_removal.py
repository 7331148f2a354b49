"""Removing what jobs leave (``dstack.runner.removal``): all of it, however deep or closed
up, and never what is not the job's — a symlink's target, a filesystem mounted inside."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dstack.runner import workdirs
from dstack.runner.removal import mount_points, remove_tree


@pytest.fixture(autouse=True)
def _no_deep_leftovers(tmp_path: Path) -> Iterator[None]:
    """Deep folders a failed test leaves would break pytest's own clean-up (it recurses)."""
    yield
    remove_tree(tmp_path)


def _nest(folder: Path, depth: int) -> None:
    here = os.getcwd()
    os.chdir(folder)
    try:
        for _ in range(depth):  # one level at a time: the path is longer than PATH_MAX
            os.mkdir("d")
            os.chdir("d")
        Path("leaf.txt").write_text("x")
    finally:
        os.chdir(here)


def test_everything_goes_however_deep_or_closed_up(tmp_path: Path) -> None:
    job = tmp_path / "job"
    (job / "closed/inner").mkdir(parents=True)
    (job / "closed/inner/f.txt").write_text("x")
    os.chmod(job / "closed/inner", 0o000)
    os.chmod(job / "closed", 0o500)
    _nest(job, 3000)
    os.mkfifo(job / "pipe")
    assert remove_tree(job) == []
    assert not job.exists()


def test_symlinks_are_removed_never_followed(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data.csv").write_text("1,2\n")
    job = tmp_path / "job"
    job.mkdir()
    os.symlink(precious, job / "to-folder")
    os.symlink(precious / "data.csv", job / "to-file")
    assert remove_tree(job) == []
    assert (precious / "data.csv").read_text() == "1,2\n"
    os.symlink(precious, tmp_path / "job-as-link")  # a job that replaced its folder by a link
    assert remove_tree(tmp_path / "job-as-link") == []
    assert (precious / "data.csv").exists()


def test_a_filesystem_mounted_inside_is_left_whole(tmp_path: Path) -> None:
    """A job running as root bind-mounted a dataset into its folder and never unmounted it."""
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "precious.bin").write_bytes(b"\0" * 10)
    job = tmp_path / "job"
    (job / "data").mkdir(parents=True)
    (job / "other.txt").write_text("x")
    mounted = subprocess.run(["mount", "--bind", str(dataset), str(job / "data")],
                             capture_output=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip("cannot bind-mount here (needs root and mount rights)")
    try:
        assert mount_points(job) == {os.path.realpath(job / "data")}
        left = remove_tree(job)
        assert os.path.realpath(job / "data") in left
        assert (dataset / "precious.bin").exists() and not (job / "other.txt").exists()
    finally:
        subprocess.run(["umount", str(job / "data")], check=True)


def test_the_sweep_of_a_killed_runners_folder_survives_deep_nesting(tmp_path: Path) -> None:
    job_dir = tmp_path / "work" / "github.com_acme_x" / "job-1"
    job_dir.mkdir(parents=True)
    (job_dir / workdirs.LOCK).write_text("")
    past = os.stat(job_dir / workdirs.LOCK).st_mtime - 3600
    os.utime(job_dir / workdirs.LOCK, (past, past))
    _nest(job_dir, 2000)
    assert workdirs.sweep(tmp_path / "work") == [job_dir]
    assert not job_dir.exists()
