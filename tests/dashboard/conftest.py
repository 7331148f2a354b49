"""Fixtures of the dashboard tests: the real server (uvicorn on a free loopback port, in a
thread of the test process) over the test's store, and a client that holds its cookie.

``store`` (from the end-to-end tests) makes each test that takes ``served`` run on this
machine's folder and on a bucket of the session's moto server.
"""

from __future__ import annotations

import http.client
import json
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest

from tests.conftest import make_repo
from tests.e2e.cli import FINISHED, Dstack
from tests.e2e.conftest import Store, dstack, store  # noqa: F401
from tests.moto_server import aws_test_env, moto_server, s3_bucket  # noqa: F401

pytest.importorskip("starlette", reason="the dashboard extra is not installed")
pytest.importorskip("uvicorn", reason="the dashboard extra is not installed")

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()


class Served:
    """A running dashboard: its URL, its token, and requests that carry its cookie."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port, self.token = host, port, token
        self.cookie_name = f"dstack_dashboard_{port}"
        self._cookie: str | None = None

    @property
    def cookie(self) -> str:
        """``name=session`` of a session signed in with the token (once, on first use)."""
        if self._cookie is None:
            reply = self.request("GET", "/", params={"token": self.token}, cookie=False)
            assert reply.status == 303, reply
            self._cookie = reply.headers["set-cookie"].split(";", 1)[0]
        return self._cookie

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | dict[str, str | list[str]] | None = None,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        cookie: bool = True,
        timeout: float = 60,
    ) -> Response:
        target = path + ("?" + urlencode(params, doseq=True) if params else "")
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        sent = {**({"Cookie": self.cookie} if cookie else {}), **(headers or {})}
        body = None
        if form is not None:
            body = urlencode(form)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, target, body=body, headers=sent)
            reply = conn.getresponse()
            return Response(reply.status, dict(reply.getheaders()), reply.read())
        finally:
            conn.close()

    def get(self, route: str, /, **params: str | list[str]) -> Response:
        """A GET of ``route``; a list value is the parameter repeated (``run=a&run=b``)."""
        return self.request("GET", route, params=params)

    def events(
        self, route: str, /, *, timeout: float = 60, **params: str
    ) -> list[tuple[str, dict]]:
        """Every server-sent event of a stream, until the server ends it."""
        body = self.request("GET", route, params=params, timeout=timeout).text
        found = []
        for block in body.split("\n\n"):
            lines = dict(
                line.split(": ", 1) for line in block.splitlines() if not line.startswith(":")
            )
            if "event" in lines:
                found.append((lines["event"], json.loads(lines["data"])))
        return found


@pytest.fixture
def served(store: Store) -> Iterator[Served]:  # noqa: F811
    """The dashboard over the test's store, as `dstack dashboard --port 0` serves it."""
    import uvicorn

    from dstack import api
    from dstack.dashboard.app import create_app
    from dstack.dashboard.server import bind

    binding = bind("127.0.0.1", 0)
    app = create_app(api.Context(), binding.token, cookie=f"dstack_dashboard_{binding.port}")
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [binding.sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield Served(binding.host, binding.port, binding.token)
    finally:
        server.should_exit = True
        thread.join(10)
        binding.sock.close()


def pipeline_repo(path: Path) -> Path:
    """A copy of this repository's quick-start pipeline (prepare, train, evaluate) as a repo
    of its own."""
    files: dict[str, str | bytes] = {}
    for folder in (".dstack", "tutorial"):
        for file in (ROOT / folder).rglob("*"):
            if file.is_file() and "__pycache__" not in file.parts:
                files[str(file.relative_to(ROOT))] = file.read_bytes()
    return make_repo(path, files, remote="https://github.com/acme/moons.git")


def run_pipeline(dstack: Dstack, repo: Path) -> dict[str, str]:  # noqa: F811
    """`dstack run prepare -t moons-data && dstack run train && dstack run evaluate`: the
    README's quick start; the run name of each workflow."""
    names = {}
    for workflow, *args in (("prepare", "-t", "moons-data"), ("train",), ("evaluate",)):
        name = dstack.run_detached(workflow, *args, cwd=repo)
        row = dstack.wait_status(name, repo, lambda status: status in FINISHED, timeout=300)
        assert row["status"] == "done", row
        names[workflow] = name
    return names


def url_of(link: str) -> tuple[str, dict[str, str]]:
    from html import unescape
    from urllib.parse import parse_qsl

    parts = urlsplit(unescape(link))
    return parts.path, dict(parse_qsl(parts.query))


__all__ = ["Served", "pipeline_repo", "run_pipeline", "shutil", "url_of"]
