"""Fixtures shared by the whole suite: a private DSTACK_HOME and real git repositories."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl+C works in the tests and in every process they start, however the suite was
    launched: a shell without job control starts a background command with SIGINT ignored,
    which Python keeps (no KeyboardInterrupt) and hands on to every child, so the tests of
    Ctrl+C would see a CLI that cannot be interrupted."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def machine_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One machine cache (interpreter probes, Python environments) for the whole session, as a
    real machine has: building a Python environment once costs seconds."""
    return tmp_path_factory.mktemp("dstack-cache")


@pytest.fixture(autouse=True)
def dstack_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, machine_cache: Path) -> Path:
    """Every test gets its own DSTACK_HOME, so nothing touches the user's ~/.dstack."""
    home = tmp_path / "dstack-home"
    home.mkdir()
    monkeypatch.setenv("DSTACK_HOME", str(home))
    monkeypatch.setenv("DSTACK_CACHE_DIR", str(machine_cache))
    # prices from the shipped catalog: no test reaches AWS's price APIs unless it points them
    # at moto and the Pricing stand-in and removes this (tests/compute/aws/test_prices.py)
    monkeypatch.setenv("DSTACK_OFFLINE_PRICES", "1")
    for name in (
        "DSTACK_AWS_S3_BUCKET",
        "DSTACK_AWS_REGION",
        "DSTACK_AWS_PROFILE",
        "DSTACK_AWS_ENDPOINT_URL",
        "DSTACK_S3_RETRY_DEADLINE",
    ):
        monkeypatch.delenv(name, raising=False)
    return home


def git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Ada Lovelace",
        "GIT_AUTHOR_EMAIL": "ada@example.com",
        "GIT_COMMITTER_NAME": "Ada Lovelace",
        "GIT_COMMITTER_EMAIL": "ada@example.com",
    }
    out = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return out.stdout


def make_repo(
    path: Path,
    files: dict[str, str | bytes],
    *,
    remote: str | None = "https://github.com/acme/mnist.git",
    commit: bool = True,
) -> Path:
    """A real git repository at ``path`` holding ``files``, committed unless told otherwise."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Ada Lovelace")
    git(path, "config", "user.email", "ada@example.com")
    if remote:
        git(path, "remote", "add", "origin", remote)
    for name, content in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
    if commit:
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", "initial")
    return path


@pytest.fixture
def repo_factory(tmp_path: Path):
    """Call with a dict of files to get a committed git repo (see ``make_repo``)."""
    counter = iter(range(1000))

    def factory(files: dict[str, str | bytes], **kwargs) -> Path:  # type: ignore[no-untyped-def]
        return make_repo(tmp_path / f"repo{next(counter)}", files, **kwargs)

    return factory
