"""The dashboard against a hostile neighbour: what its cookie gives away, where its redirects
go, how many live streams one browser may hold, and artifacts whose names a bucket writer
chose (``..``, bytes that are not UTF-8)."""

from __future__ import annotations

import http.client
import io
import re
import time
import zipfile
from urllib.parse import quote, unquote

import pytest

from dstack.dashboard.auth import Sessions, local_path
from dstack.services.artifacts import ArtifactFile
from tests.dashboard.conftest import Served, url_of
from tests.dashboard.seed import seed_runs
from tests.e2e.conftest import Store

REPO = "github.com/acme/seeded"

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


@pytest.mark.parametrize("store", ["s3"], indirect=True)
def test_a_planted_dot_dot_key_is_left_out_not_zipped(served: Served, store: Store) -> None:
    """A bucket writer puts ``a/../../../../x`` among a run's artifacts (dstack never writes
    such a key): the page says it was left out, the zip holds the run's real files
    (3edfc6c: an empty 200 and a traceback)."""
    storage = store.storage()
    seed_runs(storage, REPO, 1)
    prefix = f"repos/{REPO}/runs/seeded-0/jobs/0/artifacts/"
    storage.put(prefix + "out/ok.txt", b"kept")
    planted = prefix + "a/../../../../x"
    client = storage._client()  # type: ignore[attr-defined]  # the raw bucket, as an attacker
    client.put_object(Bucket=storage.bucket, Key=storage._prefix + planted, Body=b"evil")  # type: ignore[attr-defined]
    page = served.get("/run", repo=REPO, run="seeded-0")
    assert page.status == 200
    assert "1 artifact left out" in page.text and "a/../../../../x" in page.text
    archive = served.get("/run/artifact", repo=REPO, run="seeded-0", folder="/")
    assert archive.status == 200
    with zipfile.ZipFile(io.BytesIO(archive.body)) as opened:
        assert opened.namelist() == ["out/ok.txt"]
        assert opened.read("out/ok.txt") == b"kept"
    missing = served.get("/run/artifact", repo=REPO, run="seeded-0", path="a/../../../../x")
    assert missing.status == 404


@local_only
def test_a_name_that_is_not_utf8_is_shown_and_downloads(
    served: Served, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``printf x > "out/$(printf 'bad\\377name')"``: the page shows the name with U+FFFD and
    its link downloads the file (3edfc6c: a 500)."""
    from dstack.services import artifacts as artifact_service

    storage = store.storage()
    seed_runs(storage, REPO, 1)
    prefix = f"repos/{REPO}/runs/seeded-0/jobs/0/artifacts/"
    storage.put(prefix + "out/fine.txt", b"fine")
    odd = ArtifactFile(0, "out/bad\udcffname", 4, prefix + "out/fine.txt", "")

    # A stand-in for the storage layer's listing of such a name: the file system hands it over
    # with its byte as a surrogate (the storage conformance suite lists real ones); its key
    # points at a real file so the download can be checked.
    real = artifact_service.list_artifacts
    monkeypatch.setattr(artifact_service, "list_artifacts", lambda *a: [*real(*a), odd])
    page = served.get("/run", repo=REPO, run="seeded-0")
    assert page.status == 200, page.text[-400:]
    assert "bad\ufffdname" in page.text
    link = next(h for h in re.findall(r'href="([^"]+)"', page.text) if "bad" in unquote(h))
    route, params = url_of(link)
    download = served.get(route, **params)
    assert download.status == 200 and download.body == b"fine"
    archive = served.get("/run/artifact", repo=REPO, run="seeded-0", folder="out")
    with zipfile.ZipFile(io.BytesIO(archive.body)) as opened:
        assert sorted(opened.namelist()) == ["out/bad\ufffdname", "out/fine.txt"]


@local_only
def test_live_logs_are_bounded_per_browser_and_never_starve_pages(
    served: Served, store: Store
) -> None:
    """More live logs than one browser may hold: the one too many is refused with a line that
    says why, pages still answer while the others stay open, and a closed stream frees its
    place (3edfc6c: every stream accepted, each holding a server thread, 45 made / take 13 s)."""
    from dstack.dashboard.logstream import PER_CLIENT
    from dstack.models import JobStatus

    seed_runs(store.storage(), REPO, 1, status=JobStatus.RUNNING)
    target = f"/run/logs?repo={quote(REPO)}&run=seeded-0"
    held: list[http.client.HTTPConnection] = []

    def open_stream(cookie: str) -> int:
        """Start a stream and keep it open: the status (the stream itself goes on)."""
        conn = http.client.HTTPConnection(served.host, served.port, timeout=60)
        conn.request("GET", target, headers={"Cookie": cookie})
        held.append(conn)
        reply = conn.getresponse()
        if reply.status == 429:
            assert "too many live logs open" in reply.read().decode()
        return reply.status

    try:
        assert [open_stream(served.cookie) for _ in range(PER_CLIENT)] == [200] * PER_CLIENT
        assert open_stream(served.cookie) == 429
        assert served.get("/").status == 200
        assert served.get("/run", repo=REPO, run="seeded-0").status == 200
        other = Served(served.host, served.port, served.token)  # another browser signs in
        assert open_stream(other.cookie) == 200
    finally:
        for conn in held:
            conn.close()
    held.clear()
    deadline = time.monotonic() + 30  # the server notices a closed connection as it writes
    try:
        while open_stream(served.cookie) == 429:
            assert time.monotonic() < deadline, "closed streams kept their places"
            time.sleep(0.2)
    finally:
        for conn in held:
            conn.close()
