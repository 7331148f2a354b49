"""Which remote names a repository, and the repo id ``<host>/<path>`` parsed from its URL.

Owns: choosing the remote (the current branch's tracking remote, else ``origin``, else the first
one configured), parsing every URL form git accepts (``https://``, ``ssh://``, ``git://``,
scp-like ``user@host:path``, local paths and ``file://``), resolving ``~/.ssh/config`` host
aliases (``Host``/``HostName``, wildcards and ``!`` negation, ``Include``, first value wins as
in ssh), and stripping credentials so that no token is ever stored or shown.

A repo id is ``<host>/<path>`` with the host lowercased and without a port, and the path as the
server spells it without ``.git``: ``github.com/acme/mnist``, ``gitlab.com/group/sub/name``.
Its segments are checked to be safe as state-store key segments (no empty, ``.`` or ``..``).
A remote that is a path on this machine gives ``local/<name>``, like a repo with no remote.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from dstack.errors import RepoError

#: host names that are another way to reach the same forge (ssh over port 443)
_HOST_ALIASES = {
    "ssh.github.com": "github.com",
    "www.github.com": "github.com",
    "altssh.gitlab.com": "gitlab.com",
    "altssh.bitbucket.org": "bitbucket.org",
}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# git's rule: "host:path" is scp-like when a colon comes before the first slash
_SCP = re.compile(r"^(?:(?P<user>[^@/]+)@)?(?P<host>\[[^\]/]+\]|[^:/\[\]]+):(?P<path>.*)$")
_USERINFO = re.compile(r"(?<=://)[^/@]*@")
_MAX_INCLUDE_DEPTH = 16


def strip_credentials(url: str) -> str:
    """``url`` without user:password (for messages about URLs we could not parse)."""
    return _USERINFO.sub("", url)


def parse_remote_url(url: str, ssh_config: Path | None = None) -> tuple[str, str]:
    """``(repo_id, url without credentials)`` for a git remote URL; RepoError if it is garbage.

    ``ssh_config`` is the ssh client config used to resolve host aliases; by default
    ``$HOME/.ssh/config``.
    """
    raw = url.strip()
    shown = strip_credentials(raw)
    if not raw or any(ch.isspace() or ord(ch) < 32 for ch in raw):
        raise RepoError(f"cannot read a repository from the git remote URL {shown!r}")
    scheme_match = _SCHEME.match(raw)
    if scheme_match:
        scheme = scheme_match.group(1).lower()
        if scheme == "file":
            return _local_id(urlsplit(raw).path, shown), raw
        try:
            parts = urlsplit(raw)
            host, port = parts.hostname or "", parts.port
        except ValueError:
            raise RepoError(f"cannot read a host from the git remote URL {shown!r}") from None
        netloc = f"[{host}]" if ":" in host else host
        netloc += f":{port}" if port else ""
        if scheme in ("ssh", "git+ssh", "ssh+git"):
            if parts.username:  # an ssh user name is not a secret; a password is dropped
                netloc = f"{parts.username}@{netloc}"
            host = resolve_ssh_host(host, ssh_config)
        elif scheme not in ("http", "https", "git", "ftp", "ftps"):
            raise RepoError(f"unsupported git remote URL scheme {scheme!r} in {shown!r}")
        clean = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        return _repo_id(host, parts.path, shown), clean
    scp = _SCP.match(raw)
    if scp:
        host = resolve_ssh_host(scp["host"].strip("[]"), ssh_config)
        user = f"{scp['user'].split(':')[0]}@" if scp["user"] else ""  # never a password
        return _repo_id(host, scp["path"], shown), f"{user}{scp['host']}:{scp['path']}"
    return _local_id(raw, shown), raw


def _repo_id(host: str, path: str, shown: str) -> str:
    host = host.lower().rstrip(".")
    host = _HOST_ALIASES.get(host, host)
    if not host or "/" in host or host in (".", ".."):
        raise RepoError(f"cannot read a host from the git remote URL {shown!r}")
    path = path.strip("/")
    if path.endswith(".git"):
        path = path[: -len(".git")].rstrip("/")
    segments = [segment for segment in path.split("/") if segment]
    if path.startswith("~") and segments:  # ssh://host/~user/repo: a home-relative path
        segments[0] = segments[0].lstrip("~") or segments[0]
    if not segments or any(seg in (".", "..") or "\\" in seg for seg in segments):
        raise RepoError(f"cannot read a repository path from the git remote URL {shown!r}")
    return "/".join([host, *segments])


def _local_id(path: str, shown: str) -> str:
    name = Path(path.rstrip("/\\")).name
    if name.endswith(".git"):
        name = name[: -len(".git")]
    if not name or name in (".", ".."):
        raise RepoError(f"cannot read a repository name from the git remote {shown!r}")
    return f"local/{name}"


def local_repo_id(root: Path) -> str:
    """``local/<folder name>``: the id of a repository with no remote."""
    name = Path(root).resolve().name or "root"
    return f"local/{name}"


# ---- choosing the remote -------------------------------------------------------------------


def remote_urls(config: list[tuple[str, str]]) -> dict[str, str]:
    """Remote name → its first URL, in config order, from ``git config --get-regexp`` pairs."""
    urls: dict[str, str] = {}
    for key, value in config:
        if key.startswith("remote.") and key.endswith(".url"):
            urls.setdefault(key[len("remote.") : -len(".url")], value)
    return urls


def choose_remote(config: list[tuple[str, str]], branch: str | None) -> str | None:
    """The current branch's tracking remote, else ``origin``, else the first remote."""
    urls = remote_urls(config)
    if branch:
        tracking = dict(config).get(f"branch.{branch}.remote")
        if tracking in urls:
            return tracking
    if "origin" in urls:
        return "origin"
    return next(iter(urls), None)


def has_url_rewrites(config: list[tuple[str, str]]) -> bool:
    """Whether ``url.<base>.insteadOf`` is configured (then ``git remote get-url`` is asked)."""
    return any(key.startswith("url.") and key.endswith(".insteadof") for key, _ in config)


# ---- ~/.ssh/config --------------------------------------------------------------------------


def default_ssh_config() -> Path:
    home = os.environ.get("HOME") or os.path.expanduser("~")
    return Path(home) / ".ssh" / "config"


def resolve_ssh_host(alias: str, ssh_config: Path | None = None) -> str:
    """The ``HostName`` ssh would connect to for ``alias`` (``alias`` itself when none)."""
    path = ssh_config if ssh_config is not None else default_ssh_config()
    found: list[str] = []
    _scan(path, alias.lower(), found, active=True, never=False, depth=0)
    if not found:
        return alias
    return found[0].replace("%%", "\0").replace("%h", alias).replace("\0", "%")


def _scan(path: Path, host: str, found: list[str], active: bool, never: bool, depth: int) -> bool:
    """Read one config file, appending HostName values that apply; return the final activity."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return active
    for line in lines:
        keyword, args = _split_line(line)
        if not keyword:
            continue
        if keyword == "host":
            active = not never and _host_matches(host, args)
        elif keyword == "match":
            active = False  # Match criteria are not evaluated: a Match block never applies
        elif keyword == "include" and depth < _MAX_INCLUDE_DEPTH:
            for pattern in args:
                pattern = os.path.expanduser(pattern)
                if not os.path.isabs(pattern):
                    pattern = str(path.parent / pattern)
                for included in sorted(glob.glob(pattern)):
                    _scan(Path(included), host, found, active, never or not active, depth + 1)
        elif keyword == "hostname" and active and args and not found:
            found.append(args[0])
    return active


def _split_line(line: str) -> tuple[str, list[str]]:
    text = line.strip()
    if not text or text.startswith("#"):
        return "", []
    match = re.match(r"^(\S+?)(?:\s*=\s*|\s+)(.*)$", text)
    if not match:
        return text.lower(), []
    keyword, rest = match.groups()
    try:
        args = shlex.split(rest, comments=True)
    except ValueError:
        args = rest.split()
    return keyword.lower(), args


def _host_matches(host: str, patterns: list[str]) -> bool:
    matched = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        if _glob_match(host, pattern.lstrip("!").lower()):
            if negated:
                return False
            matched = True
    return matched


def _glob_match(text: str, pattern: str) -> bool:
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, text) is not None
