"""What the sections of ``scripts/bench`` share: the command under test, a repository maker,
and timing helpers."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DSTACK = [str(ROOT / ".venv/bin/dstack")] if (ROOT / ".venv/bin/dstack").exists() else ["dstack"]


def make_repo(path: Path, workflows: str) -> Path:
    (path / ".dstack").mkdir(parents=True)
    (path / ".dstack/workflows.yaml").write_text(workflows)
    for cmd in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "remote", "add", "origin", "https://github.com/acme/bench.git"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=b", "-c", "user.email=b@x", "commit", "-qm", "init"],
    ):
        subprocess.run(cmd, cwd=path, check=True)
    return path


def timed(fn: Callable[[], object], reps: int) -> list[float]:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def run(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    out = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {out.stderr}")
    return out.stdout


@contextlib.contextmanager
def dashboard(env: dict[str, str]) -> Iterator[tuple[str, str, str]]:
    """`dstack dashboard` on a free port, signed in: (host, port, the ``Cookie`` header that
    names the session) while the block runs."""
    server = subprocess.Popen(
        [*DSTACK, "dashboard", "--port", "0", "--no-browser"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        url = server.stdout.readline().strip()  # type: ignore[union-attr]
        host_port, token = url.split("//", 1)[1].split("/?token=")
        host, port = host_port.rsplit(":", 1)
        yield host, port, _signed_in(host, port, token)
    finally:
        server.terminate()
        server.wait(10)


def _signed_in(host: str, port: str, token: str) -> str:
    """Sign in as a browser opening the printed URL does: the session cookie, as a header."""
    import http.client

    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("GET", f"/?token={token}")
    reply = conn.getresponse()
    reply.read()
    conn.close()
    cookie = reply.getheader("set-cookie") or ""
    assert reply.status == 303 and cookie, f"signing in to the dashboard: {reply.status}"
    return cookie.split(";", 1)[0]
