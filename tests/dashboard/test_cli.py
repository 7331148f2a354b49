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


def test_the_browser_opens_a_login_file_not_the_token(dstack_home: Path, tmp_path: Path) -> None:
    """`BROWSER=… dstack dashboard`: the browser's command line (which every user of the
    machine can read in the process list) names an owner-only file, never the token; the file
    signs a browser in by posting it."""
    import re
    import stat
    import time
    from urllib.parse import urlencode

    seen = tmp_path / "browser-argv"
    browser = tmp_path / "browser"
    browser.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$@" > "{seen}.part" && mv "{seen}.part" "{seen}"\n'
    )
    browser.chmod(0o755)
    proc = subprocess.Popen(
        [*DSTACK, "dashboard", "--port", "0"], env={**_env(dstack_home), "BROWSER": str(browser)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = proc.stdout.readline().strip()  # type: ignore[union-attr]
        token = url.split("?token=", 1)[1]
        deadline = time.monotonic() + 60
        while not seen.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        argv = seen.read_text()
        assert token not in argv
        assert argv.startswith("file://"), argv
        login = Path(argv.strip().removeprefix("file://"))
        assert stat.S_IMODE(login.stat().st_mode) == 0o600
        page = login.read_text()
        action = re.search(r'action="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        host, port = action.removeprefix("http://").split("/")[0].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        form = urlencode({"token": token, "next": "/"})
        conn.request("POST", "/login", body=form,
                     headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
        reply = conn.getresponse()
        reply.read()
        assert reply.status == 200
        cookie = reply.getheader("set-cookie", "").split(";", 1)[0]
        assert cookie.startswith(f"dstack_dashboard_{port}=") and token not in cookie
        conn.request("GET", "/", headers={"Cookie": cookie})
        home = conn.getresponse()
        home.read()
        assert home.status == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert not login.exists(), "the login file outlived the server"
