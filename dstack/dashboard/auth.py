"""Every request needs the dashboard's token: in the URL the CLI prints (then it is swapped for
a cookie and dropped from the address bar), or in that cookie. Compared in constant time.

A request that changes something (Stop) must also carry a form token derived from the secret
token, and come from the dashboard's own origin: another site's page cannot post it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

TOKEN_PARAM = "token"


class TokenGuard:
    """ASGI middleware: let through only requests that hold the token."""

    def __init__(self, app: ASGIApp, token: str, cookie: str) -> None:
        self.app = app
        self.token = token
        self.cookie = cookie

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        given = connection.query_params.get(TOKEN_PARAM)
        if given is not None and same(given, self.token):
            await self._to_cookie(scope)(scope, receive, send)
            return
        if same(connection.cookies.get(self.cookie, ""), self.token):
            await self.app(scope, receive, send)
            return
        await _refused()(scope, receive, send)

    def _to_cookie(self, scope: Scope) -> Response:
        query = [
            (k, v)
            for k, v in parse_qsl(scope.get("query_string", b"").decode())
            if k != TOKEN_PARAM
        ]
        location = scope.get("path", "/") + (f"?{urlencode(query)}" if query else "")
        response = RedirectResponse(location, status_code=303)
        response.set_cookie(self.cookie, self.token, httponly=True, samesite="strict", path="/")
        return response


def same(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode(), token.encode())


def form_token(token: str) -> str:
    """What a page's forms carry: derived from the token, useless to guess it back from."""
    return hmac.new(token.encode(), b"dstack-dashboard-form", hashlib.sha256).hexdigest()


def same_origin(headers: Headers, scope: MutableMapping[str, Any]) -> bool:
    """Whether a request that changes something comes from a page of this dashboard."""
    host = headers.get("host", "")
    origin = headers.get("origin") or headers.get("referer")
    if not origin:
        return True  # not sent by a browser for a cross-site form: the form token decides
    scheme = scope.get("scheme", "http")
    expected = f"{scheme}://{host}"
    return origin == expected or origin.startswith(expected + "/")


def _refused() -> Response:
    return HTMLResponse(
        "<!doctype html><title>dstack dashboard</title><p>This dashboard needs its token: open "
        "the URL that <code>dstack dashboard</code> printed (it ends with "
        "<code>?token=…</code>).</p>",
        status_code=401,
    )
