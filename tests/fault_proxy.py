"""A fault-injecting HTTP forwarder on 127.0.0.1, to put between a client and a (moto) server.

Every request is forwarded to ``upstream`` unless a fault is armed::

    with FaultProxy(moto.endpoint_url) as proxy:
        proxy.fail_next(5)                   # next 5 requests: 503 SlowDown (S3 error XML)
        proxy.fail_next(1, status=403, code="AccessDenied", message="Access Denied")
        proxy.drop_next(3)                   # next 3 requests: connection closed, no answer
        proxy.drop_next(1, match=lambda method, path: "partNumber=2" in path)
        proxy.refuse_for(20)                 # the next 20 s: unreachable (connections closed)
        S3Storage("b", endpoint_url=proxy.url)

Faults are served in the order armed; one with ``match`` waits for a request it accepts.
``requests`` counts the requests received (``log`` holds their method and path; ``bytes_in``
and ``bytes_out`` the bodies forwarded each way, ``sizes`` each forwarded request's path and
bodies), ``faults``
the ones answered with a fault, ``refused`` the connections and requests turned away by an
outage. Only for tests: bodies are held in memory.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
    }
)


@dataclass(frozen=True)
class _Fault:
    status: int | None  # None: drop the connection without answering
    code: str = ""
    message: str = ""
    match: Callable[[str, str], bool] | None = None  # (method, path) -> whether to fault it


class FaultProxy:
    """A threaded HTTP/1.1 forwarder that can answer with errors or drop connections."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._lock = threading.Lock()
        self._faults: deque[_Fault] = deque()
        self.requests = 0
        self.faults = 0
        self.refused = 0
        self.log: list[tuple[str, str]] = []  # (method, path) of every request received
        self.bytes_in = 0  # request bodies received
        self.bytes_out = 0  # response bodies sent back
        #: (path, body in, body out) of every forwarded request, in the order answered
        self.sizes: list[tuple[str, int, int]] = []
        self._outage_until = 0.0  # time.monotonic() before which everything is refused
        self._server = _Server(self, ("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_next(
        self,
        count: int,
        *,
        status: int = 503,
        code: str = "SlowDown",
        message: str = "Please reduce your request rate.",
        match: Callable[[str, str], bool] | None = None,
    ) -> None:
        """Answer the next ``count`` requests (that ``match``) with ``status`` and an S3 error
        document."""
        with self._lock:
            self._faults.extend(_Fault(status, code, message, match) for _ in range(count))

    def drop_next(self, count: int, *, match: Callable[[str, str], bool] | None = None) -> None:
        """Read the next ``count`` requests (that ``match``), then close their connections
        without answering."""
        with self._lock:
            self._faults.extend(_Fault(None, match=match) for _ in range(count))

    def refuse_for(self, seconds: float) -> None:
        """Be unreachable for ``seconds`` from now: new connections are closed at once, and
        requests on connections already open are closed without an answer."""
        with self._lock:
            self._outage_until = time.monotonic() + seconds

    def end_outage(self) -> None:
        with self._lock:
            self._outage_until = 0.0

    @property
    def in_outage(self) -> bool:
        with self._lock:
            return time.monotonic() < self._outage_until

    def clear(self) -> None:
        """Disarm every pending fault and end any outage."""
        with self._lock:
            self._faults.clear()
            self._outage_until = 0.0

    def _refuse(self) -> bool:
        """Whether to turn this connection or request away (counted)."""
        with self._lock:
            if time.monotonic() >= self._outage_until:
                return False
            self.refused += 1
            return True

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._faults)

    def _next_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            self.requests += 1
            self.log.append((method, path))
            for fault in self._faults:
                if fault.match is None or fault.match(method, path):
                    self._faults.remove(fault)
                    self.faults += 1
                    return fault
            return None

    def _forward(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(*self._upstream, timeout=30)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name, value)
            if body or method in ("PUT", "POST"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            data = response.read()
            return response.status, response.reason, response.getheaders(), data
        finally:
            conn.close()


class _Server(ThreadingHTTPServer):
    def __init__(self, proxy: FaultProxy, *args: Any) -> None:
        self.proxy = proxy
        super().__init__(*args)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return not self.proxy._refuse()  # refused: the socket is closed before any byte


def _handler_for(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in separate writes

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _read_body(self) -> bytes:
            if self.headers.get("Expect", "").lower() == "100-continue":
                self.send_response_only(100)
                self.end_headers()
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                parts = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return b"".join(parts)
                    parts.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _handle(self) -> None:
            body = self._read_body()
            if proxy._refuse():
                self.close_connection = True
                return
            fault = proxy._next_fault(self.command, self.path)
            if fault is not None and fault.status is None:
                self.close_connection = True
                return
            if fault is not None:
                self._send_error(fault)
                return
            headers = [
                (name, value)
                for name, value in self.headers.items()
                if name.lower() not in _HOP_BY_HOP and name.lower() != "expect"
            ]
            status, reason, out_headers, data = proxy._forward(
                self.command, self.path, headers, body
            )
            with proxy._lock:
                proxy.bytes_in += len(body)
                proxy.bytes_out += len(data)
                proxy.sizes.append((self.path, len(body), len(data)))
            self.send_response(status, reason)
            head = self.command == "HEAD"
            for name, value in out_headers:
                lowered = name.lower()
                if head and lowered == "content-length":
                    self.send_header(name, value)  # the object's size; no body follows
                elif lowered not in _HOP_BY_HOP and lowered not in ("server", "date"):
                    self.send_header(name, value)
            if not head:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if not head:
                self.wfile.write(data)

        def _send_error(self, fault: _Fault) -> None:
            assert fault.status is not None
            xml = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Error><Code>{fault.code}</Code><Message>{fault.message}</Message>"
                "<RequestId>FAULTPROXY</RequestId></Error>"
            ).encode()
            self.send_response(fault.status)
            self.send_header("Content-Type", "application/xml")
            if self.command == "HEAD":
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_header("Content-Length", str(len(xml)))
            self.end_headers()
            self.wfile.write(xml)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    return Handler
