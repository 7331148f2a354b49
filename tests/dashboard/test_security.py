"""The dashboard against a hostile neighbour: what its cookie gives away, where its redirects
go, how many live streams one browser may hold, and artifacts whose names a bucket writer
chose (``..``, bytes that are not UTF-8)."""

from __future__ import annotations

import pytest

from dstack.dashboard.auth import Sessions, local_path
from tests.dashboard.conftest import Served

local_only = pytest.mark.parametrize("store", ["local"], indirect=True)


@local_only
def test_the_cookie_is_a_session_of_this_server_not_the_token(served: Served) -> None:
    signed_in = served.request("GET", "/", params={"token": served.token}, cookie=False)
    name, _, session = signed_in.headers["set-cookie"].split(";", 1)[0].partition("=")
    assert name == f"dstack_dashboard_{served.port}"
    assert served.token not in signed_in.headers["set-cookie"] and len(session) >= 32
    with_session = served.request("GET", "/", cookie=False, headers={"Cookie": f"{name}={session}"})
    assert with_session.status == 200
    # the token itself, as 3edfc6c's cookie held it, is not a session
    raw = served.request("GET", "/", cookie=False, headers={"Cookie": f"{name}={served.token}"})
    assert raw.status == 401


def test_a_session_dies_with_its_server() -> None:
    first = Sessions("the-token")
    session = first.sign_in("the-token")
    assert session is not None and first.valid(session)
    assert first.sign_in("not-the-token") is None
    restarted = Sessions("the-token")  # same token (it never is): the session is still unknown
    assert not restarted.valid(session)
    expired = Sessions("the-token", lifetime=-1)
    old = expired.sign_in("the-token")
    assert old is not None and not expired.valid(old)


@local_only
def test_login_by_post_and_wrong_tokens(served: Served) -> None:
    ok = served.request("POST", "/login", form={"token": served.token, "next": "//evil.example/x"},
                        cookie=False)  # fmt: skip
    assert ok.status == 200 and "set-cookie" in ok.headers
    assert 'url=/evil.example/x"' in ok.text  # a path of this server, whatever "next" says
    bad = served.request("POST", "/login", form={"token": "x" * 32}, cookie=False)
    assert bad.status == 401 and "set-cookie" not in bad.headers


@local_only
@pytest.mark.parametrize(
    ("target", "location"),
    [
        ("//evil.example/x", "/evil.example/x"),
        ("///evil.example/x", "/evil.example/x"),
        ("/\\evil.example/x", "/evil.example/x"),
        ("/runs", "/runs"),
    ],
)
def test_signing_in_never_redirects_off_site(served: Served, target: str, location: str) -> None:
    reply = served.request("GET", f"{target}?token={served.token}", cookie=False)
    assert reply.status == 303
    assert reply.headers["location"] == location


@pytest.mark.parametrize(
    ("given", "expected"),
    [("//a/b", "/a/b"), ("\\\\a", "/a"), ("/x?y=1", "/x?y=1"), ("", "/"), ("x", "/x")],
)
def test_local_path(given: str, expected: str) -> None:
    assert local_path(given) == expected
