"""The S3 servers ``scripts/bench`` measures against, each in a process of its own on loopback.

- moto (``tests.moto_server``): the server of the tests and of every S3 row;
- s3rver, a Node.js S3 server from the npm registry, for a second opinion on the transfer rows
  (it spends less CPU per request than moto, so the clients' own costs show more). It is
  installed once under ``~/.cache/dstack-bench`` and skipped, with a note, where ``node`` or
  ``npm`` is missing or the install fails.

Each context manager yields ``(endpoint URL, server pid)`` (the pid for ``process_cpu``) and
sets, for its duration, the AWS environment that server accepts.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench_common import ROOT

S3RVER = "s3rver@3.7.1"
S3RVER_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dstack-bench"

_MOTO = """
import logging, sys
from tests.moto_server import start_moto
server = start_moto()
# moto answers 500 when a listing meets a concurrent write (its own race; dstack retries):
# its traceback on every such request would bury the bench's rows
logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
print(server.endpoint_url, flush=True)
sys.stdin.read()
server.stop()
"""


@contextmanager
def moto_process() -> Iterator[tuple[str, int]]:
    """A moto server; the tests' dummy credentials."""
    from tests.moto_server import DUMMY_AWS_ENV

    with _aws_env(DUMMY_AWS_ENV):
        server = subprocess.Popen(
            [sys.executable, "-c", _MOTO], cwd=ROOT, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert server.stdout is not None and server.stdin is not None
        try:
            yield server.stdout.readline().strip(), server.pid
        finally:
            server.stdin.close()
            server.wait()


def s3rver_ready() -> Path | None:
    """The s3rver executable, installed if need be; None (and why, on stderr) if it cannot be."""
    binary = S3RVER_CACHE / "node_modules" / ".bin" / "s3rver"
    if binary.exists():
        return binary
    if not shutil.which("node") or not shutil.which("npm"):
        print("bench: no node/npm here: the s3rver rows are skipped", file=sys.stderr)
        return None
    S3RVER_CACHE.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(S3RVER_CACHE),
         S3RVER],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0 or not binary.exists():
        print(
            f"bench: npm could not install {S3RVER}: the s3rver rows are skipped", file=sys.stderr
        )
        return None
    return binary


@contextmanager
def s3rver_process(binary: Path, data: Path) -> Iterator[tuple[str, int]]:
    """An s3rver keeping its objects under ``data``; its default credentials."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data.mkdir(parents=True, exist_ok=True)
    env = {"AWS_ACCESS_KEY_ID": "S3RVER", "AWS_SECRET_ACCESS_KEY": "S3RVER"}
    with _aws_env(env):
        server = subprocess.Popen(
            [str(binary), "--directory", str(data), "--address", "127.0.0.1", "--port", str(port),
             "--silent"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _wait_for_port(port, server)
            yield f"http://127.0.0.1:{port}", server.pid
        finally:
            server.terminate()
            server.wait()


def process_cpu(pid: int) -> float:
    """User plus system CPU seconds of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def _aws_env(values: dict[str, str]) -> Iterator[None]:
    """``values`` plus a region and no metadata lookups, config files or profiles."""
    saved = dict(os.environ)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    os.environ.update(
        {"AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
         "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull,
         "AWS_SHARED_CREDENTIALS_FILE": os.devnull, **values}
    )  # fmt: skip
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _wait_for_port(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"s3rver exited with {server.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("s3rver did not start listening within 30 s")
