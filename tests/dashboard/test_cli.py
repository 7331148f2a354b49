"""`dstack dashboard` as a user types it: the printed URL, a busy port, another address, a
missing extra, and the rest of the CLI not paying for the web libraries."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
from pathlib import Path

DSTACK = [sys.executable, "-m", "dstack"]


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "DSTACK_HOME": str(home), "NO_COLOR": "1"}


def test_serves_on_the_printed_url_and_says_when_not_loopback(dstack_home: Path) -> None:
    proc = subprocess.Popen(
        [*DSTACK, "dashboard", "--host", "0.0.0.0", "--port", "0", "--no-browser"],
        env=_env(dstack_home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = proc.stdout.readline().strip()  # type: ignore[union-attr]
        assert url.startswith("http://0.0.0.0:") and "/?token=" in url
        port = int(url.split(":")[2].split("/")[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for target, status in (("/", 401), ("/?" + url.split("?", 1)[1], 303)):
            conn.request("GET", target)
            reply = conn.getresponse()
            reply.read()
            assert reply.status == status
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "not only this machine" in err and "token" in err


def test_a_busy_port_is_one_line(dstack_home: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [*DSTACK, "dashboard", "--port", str(port), "--no-browser"],
            env=_env(dstack_home), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"Error: cannot listen on 127.0.0.1:{port}: Address already in use; choose another with --port"
    ]


def test_a_missing_extra_says_how_to_install_it(dstack_home: Path) -> None:
    # a stand-in for an environment without uvicorn: find_spec answers None for it
    code = (
        "import importlib.util as u, sys; real = u.find_spec;"
        "u.find_spec = lambda name, *a: None if name == 'uvicorn' else real(name, *a);"
        "sys.argv = ['dstack', 'dashboard', '--no-browser']; from dstack.cli.main import main; main()"
    )
    result = subprocess.run([sys.executable, "-c", code], env=_env(dstack_home),
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "Error: dstack dashboard needs uvicorn: install them with pip install 'dstack[dashboard]'"
    ]


def test_the_rest_of_the_cli_does_not_import_web_libraries() -> None:
    code = (
        "import sys; from dstack.cli.main import app;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('starlette', 'uvicorn', 'jinja2', 'anyio') or m.startswith('dstack.dashboard')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "[]", result.stdout
