"""Who may use the dashboard: whoever holds the token of this server process, once, to sign in.

The token signs a browser in three ways: the login file the CLI writes (owner-only) and opens,
which posts it (so it is never on a command line nor in the browser's history); ``POST /login``;
or the printed URL's ``?token=``, for a browser elsewhere. Signing in sets a cookie holding a
random session id that only this process knows: browsers send cookies for a host to every port
of it, so whatever else listens on this machine may receive the cookie, but never the token,
and the session dies with the server. Compared in constant time.

A request that changes something (Stop, Restart) must also carry a form token derived from the secret
token, and come from the dashboard's own origin: another site's page cannot post it.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import secrets
import time
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

TOKEN_PARAM = "token"
LOGIN_PATH = "/login"
SESSION_KEY = "dstack.session"  # where the request scope holds the session id
SESSION_LIFETIME = 7 * 24 * 3600.0  # a signed-in browser signs in again after a week


class Sessions:
    """The session ids this server handed out, and when each expires. Only in memory: a
    restarted server knows none of them."""

    def __init__(self, token: str, lifetime: float = SESSION_LIFETIME) -> None:
        self.token = token
        self.lifetime = lifetime
        self._expiry: dict[str, float] = {}

    def sign_in(self, given: str) -> str | None:
        """A new session id for the right token, else None."""
        if not same(given, self.token):
            return None
        session = secrets.token_urlsafe(32)
        self._expiry[session] = time.monotonic() + self.lifetime
        return session

    def valid(self, session: str) -> bool:
        # compare_digest over every id would cost more than it hides: the ids are random and
        # looked up by hash, which leaks nothing about a guess's closeness
        expiry = self._expiry.get(session)
        if expiry is None:
            return False
        if expiry < time.monotonic():
            del self._expiry[session]
            return False
        return True


class TokenGuard:
    """ASGI middleware: sign in with the token, then let through only requests whose cookie
    names a live session of this server."""

    def __init__(self, app: ASGIApp, sessions: Sessions, cookie: str) -> None:
        self.app = app
        self.sessions = sessions
        self.cookie = cookie

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        if scope.get("path") == LOGIN_PATH and scope.get("method") == "POST":
            await (await self._login(receive))(scope, receive, send)
            return
        given = connection.query_params.get(TOKEN_PARAM)
        if given is not None:
            session = self.sessions.sign_in(given)
            if session is not None:
                redirect = RedirectResponse(_without_token(scope), status_code=303)
                await self._signed_in(session, redirect)(scope, receive, send)
                return
        session = connection.cookies.get(self.cookie, "")
        if session and self.sessions.valid(session):
            scope[SESSION_KEY] = session
            await self.app(scope, receive, send)
            return
        await _refused()(scope, receive, send)

    async def _login(self, receive: Receive) -> Response:
        body = b""
        while True:  # a small urlencoded form: read at most 64 KiB of it
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body") or len(body) > 65536:
                break
        form = dict(parse_qsl(body[:65536].decode(errors="replace")))
        session = self.sessions.sign_in(form.get(TOKEN_PARAM, ""))
        if session is None:
            return _refused()
        # a page of this origin that moves on, not a redirect: the post came from a file, so a
        # redirect would still be a cross-site request, which a SameSite=Strict cookie skips
        target = html.escape(local_path(form.get("next", "/")))
        page = HTMLResponse(
            f'<!doctype html><meta charset=utf-8><meta http-equiv="refresh" content="0;url={target}">'
            f'<title>dstack dashboard</title><p>Signed in: <a href="{target}">continue</a></p>'
        )
        return self._signed_in(session, page)

    def _signed_in(self, session: str, response: Response) -> Response:
        response.set_cookie(
            self.cookie, session, httponly=True, samesite="strict", path="/",
            max_age=int(self.sessions.lifetime),
        )  # fmt: skip
        return response


def local_path(target: str) -> str:
    """``target`` as a path of this server: a redirect never leaves it (``//host/x`` and
    ``/\\host/x`` name another site to a browser)."""
    path, _, query = target.partition("?")
    path = "/" + path.lstrip("/\\")
    return path + (f"?{query}" if query else "")


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


def _without_token(scope: Scope) -> str:
    query = [
        (k, v)
        for k, v in parse_qsl(scope.get("query_string", b"").decode(errors="replace"))
        if k != TOKEN_PARAM
    ]
    return local_path(scope.get("path", "/") + (f"?{urlencode(query)}" if query else ""))


def _refused() -> Response:
    return HTMLResponse(
        "<!doctype html><title>dstack dashboard</title><p>This dashboard needs signing in: open "
        "the login file or the URL that <code>dstack dashboard</code> printed when it "
        "started (a restarted dashboard has a new token).</p>",
        status_code=401,
    )
