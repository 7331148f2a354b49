"""Running the dashboard: a socket bound first (so a busy port is one clear line), a fresh
token for this process, the URL printed (and opened), then uvicorn until Ctrl+C."""

from __future__ import annotations

import ipaddress
import secrets
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass

from dstack.errors import DstackError
from dstack.services.context import Context


@dataclass
class Binding:
    sock: socket.socket
    host: str
    port: int
    token: str

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/?token={self.token}"


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
    say(f"dstack dashboard over {ctx.storage.describe()}")
    if not is_loopback(binding.host):
        say(
            f"Listening on {binding.host}, not only this machine: anyone who can reach it and "
            "has the URL's token can see every run and stop runs; the connection is plain HTTP"
        )
    print(binding.url, flush=True)
    say("Press Ctrl+C to stop")
    if open_browser:
        import webbrowser

        webbrowser.open(binding.url)
    config = uvicorn.Config(
        app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2, access_log=False
    )
    uvicorn.Server(config).run(sockets=[binding.sock])
