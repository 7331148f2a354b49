"""Running the dashboard: a socket bound first (so a busy port is one clear line), a fresh
token for this process, a login file (owner-only) that the browser is opened on, the URL
printed, then uvicorn until Ctrl+C (the login file is removed then).

The browser is opened on the login file, never on a URL with the token: a browser started with
the URL on its command line shows the token in every user's process list, and its history
keeps it. The file posts the token to ``/login``, which is neither.
"""

from __future__ import annotations

import html
import ipaddress
import os
import secrets
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dstack import settings
from dstack.errors import DstackError
from dstack.services.context import Context


@dataclass
class Binding:
    sock: socket.socket
    host: str
    port: int
    token: str

    @property
    def base(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/?token={self.token}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> Binding:
    """A listening socket on ``host:port`` (port 0: any free one) and a new token."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise DstackError(
            f"--host {host}: not an address of this machine ({exc.strerror})"
        ) from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise DstackError(
            f"cannot listen on {host}:{port}: {exc.strerror}; choose another with --port"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    bound_host, bound_port = sock.getsockname()[:2]
    return Binding(sock, bound_host, bound_port, secrets.token_urlsafe(24))


def serve(
    ctx: Context,
    binding: Binding,
    *,
    open_browser: bool,
    say: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> None:
    import uvicorn

    from dstack.dashboard.app import create_app

    app = create_app(ctx, binding.token, cookie=f"dstack_dashboard_{binding.port}")
    login = write_login_file(binding, settings.dstack_home() / "dashboard")
    say(f"dstack dashboard over {ctx.storage.describe()}")
    if not is_loopback(binding.host):
        say(
            f"Listening on {binding.host}, not only this machine: anyone who can reach it and "
            "has the URL's token can see every run and stop runs; the connection is plain HTTP"
        )
    print(binding.url, flush=True)
    say(f"Or open {login.as_uri()} (it signs this browser in; readable by you only)")
    say("Press Ctrl+C to stop")
    # uvicorn stops on SIGTERM, then raises it again: make that unwind (removing the login
    # file) rather than end the process where it stands
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        if open_browser:
            import webbrowser

            webbrowser.open(login.as_uri())
        config = uvicorn.Config(
            app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2,
            access_log=False,
        )  # fmt: skip
        uvicorn.Server(config).run(sockets=[binding.sock])
    finally:
        login.unlink(missing_ok=True)
        signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def write_login_file(binding: Binding, folder: Path) -> Path:
    """An HTML file, readable by its owner only, that posts the token to this server's
    ``/login`` as soon as a browser opens it (a button does it without JavaScript)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    action = html.escape(f"{binding.base}/login")
    page = (
        "<!doctype html><meta charset=utf-8><title>dstack dashboard: signing in</title>"
        f'<form id=login method=post action="{action}">'
        f'<input type=hidden name=token value="{html.escape(binding.token)}">'
        '<input type=hidden name=next value="/">'
        "<p>Signing in to the dstack dashboard… <button>Continue</button></p></form>"
        "<script>document.getElementById('login').submit()</script>\n"
    )
    fd, name = tempfile.mkstemp(prefix=f"login-{binding.port}-", suffix=".html", dir=folder)
    with os.fdopen(fd, "w") as out:  # mkstemp: created 0600, by this user, never followed
        out.write(page)
    return Path(name)
