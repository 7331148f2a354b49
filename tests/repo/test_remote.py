"""Repo ids from remote URLs: URL forms, credentials, ssh config aliases, choice of remote."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dstack.errors import RepoError
from dstack.repo import parse_remote_url, read_repo_id, take_snapshot
from tests.conftest import git

RepoFactory = Callable[..., Path]

SSH_CONFIG = """\
# comments and blank lines are ignored

Host gh
    HostName github.com
    User git

Host work-*
    HostName gitlab.example.com

Host *.internal !secret.internal
    HostName %h.example.org

Host gh
    HostName ignored.example.com

Match host other
    HostName never.example.com

Host quoted
    HostName = "bitbucket.org"

Host *
    Port 22
"""


@pytest.fixture
def ssh_config(tmp_path: Path) -> Path:
    path = tmp_path / "ssh_config"
    path.write_text(SSH_CONFIG)
    return path


@pytest.mark.parametrize(
    ("url", "repo_id", "clean"),
    [
        (
            "https://github.com/acme/mnist.git",
            "github.com/acme/mnist",
            "https://github.com/acme/mnist.git",
        ),
        (
            "https://user:token@github.com/acme/mnist.git",
            "github.com/acme/mnist",
            "https://github.com/acme/mnist.git",
        ),
        (
            "https://ghp_secret@GitHub.com/acme/mnist/",
            "github.com/acme/mnist",
            "https://github.com/acme/mnist/",
        ),
        (
            "https://oauth2:tok@gitlab.example.com:8443/a/b.git?private_token=x#frag",
            "gitlab.example.com/a/b",
            "https://gitlab.example.com:8443/a/b.git",
        ),
        ("http://github.com/acme/mnist", "github.com/acme/mnist", "http://github.com/acme/mnist"),
        (
            "ssh://git@host.example.com:2222/acme/mnist.git",
            "host.example.com/acme/mnist",
            "ssh://git@host.example.com:2222/acme/mnist.git",
        ),
        (
            "ssh://git:hunter2@host.example.com/acme/mnist.git",
            "host.example.com/acme/mnist",
            "ssh://git@host.example.com/acme/mnist.git",
        ),
        (
            "git+ssh://git@github.com/acme/mnist.git",
            "github.com/acme/mnist",
            "git+ssh://git@github.com/acme/mnist.git",
        ),
        (
            "ssh://git@ssh.github.com:443/acme/mnist.git",
            "github.com/acme/mnist",
            "ssh://git@ssh.github.com:443/acme/mnist.git",
        ),
        ("git://example.org/acme/mnist.git", "example.org/acme/mnist", None),
        ("git@github.com:acme/mnist.git", "github.com/acme/mnist", None),
        (
            "git:pw@github.com:acme/mnist.git",
            "github.com/acme/mnist",
            "git@github.com:acme/mnist.git",
        ),
        ("github.com:acme/mnist", "github.com/acme/mnist", None),
        ("git@gitlab.com:group/sub/name.git", "gitlab.com/group/sub/name", None),
        (
            "https://gitlab.com/group/sub/subsub/name.git",
            "gitlab.com/group/sub/subsub/name",
            None,
        ),
        ("ssh://git@gitlab.com/group/sub/name.git", "gitlab.com/group/sub/name", None),
        ("git@[::1]:acme/mnist.git", "::1/acme/mnist", None),
        ("/srv/git/mnist.git", "local/mnist", None),
        ("../mnist", "local/mnist", None),
        ("file:///srv/git/mnist.git", "local/mnist", None),
    ],
)
def test_repo_id_from_url(url: str, repo_id: str, clean: str | None, tmp_path: Path) -> None:
    no_config = tmp_path / "missing"
    assert parse_remote_url(url, no_config) == (repo_id, clean if clean is not None else url)


@pytest.mark.parametrize(
    ("url", "repo_id"),
    [
        ("git@gh:acme/mnist.git", "github.com/acme/mnist"),  # first HostName wins
        ("ssh://gh/acme/mnist.git", "github.com/acme/mnist"),
        ("git@work-eu:team/proj.git", "gitlab.example.com/team/proj"),  # wildcard
        ("git@db.internal:acme/x.git", "db.internal.example.org/acme/x"),  # %h
        ("git@secret.internal:acme/x.git", "secret.internal/acme/x"),  # negated
        ("git@other:acme/x.git", "other/acme/x"),  # Match blocks never apply
        ("git@quoted:acme/x.git", "bitbucket.org/acme/x"),  # Key = "value"
        ("git@GH:acme/mnist.git", "github.com/acme/mnist"),  # host names are case-insensitive
    ],
)
def test_ssh_config_aliases(url: str, repo_id: str, ssh_config: Path) -> None:
    assert parse_remote_url(url, ssh_config)[0] == repo_id


def test_ssh_config_include_and_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    (home / ".ssh" / "conf.d").mkdir(parents=True)
    (home / ".ssh" / "config").write_text("Include conf.d/*.conf\nHost gh\n  HostName wrong\n")
    (home / ".ssh" / "conf.d" / "10-gh.conf").write_text("Host gh\n  HostName github.com\n")
    monkeypatch.setenv("HOME", str(home))
    assert parse_remote_url("git@gh:acme/mnist.git") == (
        "github.com/acme/mnist",
        "git@gh:acme/mnist.git",
    )


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        "https://",
        "https:///acme/mnist",
        "https://github.com",
        "https://github.com/",
        "https://github.com/../../etc/passwd",
        "https://github.com/acme/./x",
        "https://github.com:notaport/acme/mnist",
        "gopher://example.com/acme/mnist",
        "git@github.com:",
        "https://github.com/acme/mn ist",
    ],
)
def test_garbage_urls_are_refused(url: str, tmp_path: Path) -> None:
    with pytest.raises(RepoError):
        parse_remote_url(url, tmp_path / "missing")


def test_error_messages_never_show_credentials(tmp_path: Path) -> None:
    with pytest.raises(RepoError) as info:
        parse_remote_url("https://user:s3cret@github.com", tmp_path / "missing")
    assert "s3cret" not in str(info.value)


# ---- the remote a repository is identified by ---------------------------------------------


def _snapshot_ids(root: Path) -> tuple[str, str | None, list[str]]:
    with take_snapshot(root, max_size=1 << 30) as snap:
        # "cannot be shared" is the snapshot's ``unshared``: the service says it when it matters
        unshared = [snap.unshared] if snap.unshared else []
        return snap.repo.repo_id, snap.repo.remote_url, [*unshared, *snap.warnings]


def test_origin_with_credentials_is_stored_without_them(repo_factory: RepoFactory) -> None:
    root = repo_factory({"a.py": "x"}, remote="https://bob:tok3n@github.com/acme/mnist.git")
    with take_snapshot(root, max_size=1 << 30) as snap:
        assert snap.repo.repo_id == "github.com/acme/mnist"
        assert snap.repo.remote_url == "https://github.com/acme/mnist.git"
        assert "tok3n" not in snap.repo.model_dump_json()
        assert snap.warnings == []


def test_tracking_remote_wins_over_origin(repo_factory: RepoFactory) -> None:
    root = repo_factory({"a.py": "x"})
    git(root, "remote", "add", "upstream", "git@gitlab.com:group/sub/name.git")
    git(root, "config", "branch.main.remote", "upstream")
    git(root, "config", "branch.main.merge", "refs/heads/main")
    assert _snapshot_ids(root)[0] == "gitlab.com/group/sub/name"


def test_first_remote_when_no_origin(repo_factory: RepoFactory) -> None:
    root = repo_factory({"a.py": "x"}, remote=None)
    git(root, "remote", "add", "zeta", "https://github.com/acme/zeta.git")
    git(root, "remote", "add", "alpha", "https://github.com/acme/alpha.git")
    assert _snapshot_ids(root)[0] == "github.com/acme/zeta"


def test_insteadof_rewrites_apply(repo_factory: RepoFactory) -> None:
    root = repo_factory({"a.py": "x"}, remote="gh:acme/mnist")
    git(root, "config", "url.https://github.com/.insteadOf", "gh:")
    assert _snapshot_ids(root)[:2] == ("github.com/acme/mnist", "https://github.com/acme/mnist")


def test_ssh_alias_in_a_real_repo(
    repo_factory: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text("Host gh\n  HostName github.com\n")
    root = repo_factory({"a.py": "x"}, remote="git@gh:acme/mnist.git")
    monkeypatch.setenv("HOME", str(home))
    assert _snapshot_ids(root)[:2] == ("github.com/acme/mnist", "git@gh:acme/mnist.git")


def test_no_remote_is_local_with_a_warning(tmp_path: Path) -> None:
    from tests.conftest import make_repo

    root = make_repo(tmp_path / "my-project", {"a.py": "x"}, remote=None)
    repo_id, url, warnings = _snapshot_ids(root)
    assert (repo_id, url) == ("local/my-project", None)
    assert warnings == [
        "no git remote: this repo is known as local/my-project and its runs cannot be shared "
        "with other repos' users"
    ]


def test_local_path_remote_warns(repo_factory: RepoFactory, tmp_path: Path) -> None:
    root = repo_factory({"a.py": "x"}, remote=str(tmp_path / "bare" / "mnist.git"))
    repo_id, _, warnings = _snapshot_ids(root)
    assert repo_id == "local/mnist"
    assert len(warnings) == 1 and "cannot be shared" in warnings[0]


def test_read_repo_id_matches_the_snapshot(repo_factory: RepoFactory, tmp_path: Path) -> None:
    root = repo_factory({"a.py": "x"}, remote="git@gitlab.com:group/sub/name.git")
    assert read_repo_id(root / "a.py") == ("gitlab.com/group/sub/name", [])
    git(root, "checkout", "-q", "--detach")
    assert read_repo_id(root)[0] == "gitlab.com/group/sub/name"
    lonely = repo_factory({"a.py": "x"}, remote=None)
    repo_id, warnings = read_repo_id(lonely)
    assert repo_id == f"local/{lonely.name}" and "no git remote" in warnings[0]
