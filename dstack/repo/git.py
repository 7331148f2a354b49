"""The only place in dstack that runs git.

It calls the ``git`` executable through ``subprocess`` and parses its machine-readable output
(``-z``, ``--porcelain=v2``). It never changes the repository; the one thing it lets git write
is the index's refreshed stat data, as ``git status`` does (see :func:`read_facts`). It does
not use GitPython: importing GitPython alone costs about 0.1 s of the 0.5 s budget of ``dstack run``, and a snapshot needs only four git processes
(``rev-parse``, ``status``, ``ls-files``, ``config``), three of which run in parallel, plus
``diff`` when the tree is dirty and ``remote get-url`` when ``insteadOf`` rewrites are configured.

Every failure becomes a :class:`~dstack.errors.RepoError` that says what to do.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from dstack.errors import RepoError

#: the largest diff kept in a RepoSnapshot; the archive always has the whole working tree
MAX_DIFF_BYTES = 1 << 20

_CONFIG_KEYS = r"^(remote\..+\.url|branch\..+\.remote|url\..+\.insteadof|user\.name|user\.email)$"


def _env(*, refresh: bool = False) -> dict[str, str]:
    # No credential prompts, no pager, and messages in English for our error mapping. No
    # optional locks (an index refresh written as a side effect) unless asked for: see
    # read_facts.
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "LC_ALL": "C"}
    if not refresh:
        env["GIT_OPTIONAL_LOCKS"] = "0"
    return env


def _spawn(
    cwd: Path, *args: str, stderr: int = subprocess.PIPE, refresh: bool = False
) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(
            ["git", *args],
            cwd=cwd,
            env=_env(refresh=refresh),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    except FileNotFoundError as exc:
        if not Path(cwd).is_dir():
            raise RepoError(f"{cwd} is not a folder") from None
        raise RepoError(
            "git is not installed (or not on PATH): install it (https://git-scm.com/downloads) "
            "and try again"
        ) from exc
    except NotADirectoryError:
        raise RepoError(f"{cwd} is not a folder") from None


def _finish(proc: subprocess.Popen[bytes], ok_codes: tuple[int, ...] = (0,)) -> bytes:
    out, err = proc.communicate()
    if proc.returncode not in ok_codes:
        command = " ".join(map(str, proc.args)) if isinstance(proc.args, list) else "git"
        message = err.decode(errors="replace").strip().splitlines()
        detail = message[-1] if message else f"exit code {proc.returncode}"
        raise RepoError(f"`{command}` failed: {detail}")
    return out


def run_git(cwd: Path, *args: str, ok_codes: tuple[int, ...] = (0,)) -> bytes:
    """Run ``git args`` in ``cwd`` and return its stdout; RepoError if it fails."""
    return _finish(_spawn(cwd, *args), ok_codes)


def find_toplevel(path: Path) -> Path:
    """The root of the work tree that contains ``path``."""
    path = Path(path).absolute()
    if not path.exists():
        raise RepoError(f"{path} does not exist")
    cwd = path if path.is_dir() else path.parent
    proc = _spawn(cwd, "rev-parse", "--show-toplevel")
    out, err = proc.communicate()
    if proc.returncode != 0:
        text = err.decode(errors="replace")
        if "not a git repository" in text.lower():
            raise RepoError(
                f"{path} is not a git repository: run `git init` there, or cd into your project"
            )
        detail = " ".join(line.strip() for line in text.splitlines() if line.strip())
        raise RepoError(f"cannot read the git repository at {path}: {detail}")
    top = os.fsdecode(out.rstrip(b"\n"))
    if not top:  # inside .git, or a bare repository
        raise RepoError(
            f"{path} is not inside a git work tree: cd into your project's folder and try again"
        )
    return Path(top)


@dataclass
class Status:
    """What ``git status --porcelain=v2 --branch`` says about HEAD and tracked files."""

    branch: str | None = None
    commit: str | None = None
    tracked_changes: bool = False


def parse_status(out: bytes) -> Status:
    status = Status()
    for entry in out.split(b"\0"):
        if entry.startswith(b"# branch.oid "):
            oid = entry[len(b"# branch.oid ") :].decode()
            status.commit = None if oid == "(initial)" else oid
        elif entry.startswith(b"# branch.head "):
            head = os.fsdecode(entry[len(b"# branch.head ") :])
            status.branch = None if head == "(detached)" else head
        elif entry[:2] in (b"1 ", b"2 ", b"u "):
            status.tracked_changes = True
    return status


@dataclass
class Files:
    """``git ls-files -t``: tracked and untracked-but-not-ignored paths, relative to the root."""

    tracked: set[str] = field(default_factory=set)
    untracked: set[str] = field(default_factory=set)


def parse_ls_files(out: bytes) -> Files:
    files = Files()
    for entry in out.split(b"\0"):
        if len(entry) < 3:
            continue
        tag, path = entry[:1], os.fsdecode(entry[2:])
        (files.untracked if tag == b"?" else files.tracked).add(path)
    return files


def parse_config(out: bytes) -> list[tuple[str, str]]:
    """``git config -z --get-regexp`` output as (key, value) pairs, in config-file order.

    Section and variable names come lowercased from git; subsection names keep their case.
    """
    pairs = []
    for entry in out.split(b"\0"):
        if not entry:
            continue
        key, _, value = entry.partition(b"\n")
        pairs.append((key.decode(errors="replace"), value.decode(errors="replace")))
    return pairs


@dataclass
class RepoFacts:
    """Everything a snapshot needs from git, read with three parallel processes."""

    status: Status
    files: Files
    config: list[tuple[str, str]]


def read_facts(root: Path) -> RepoFacts:
    """Run ``status``, ``ls-files`` and ``config`` on ``root`` in parallel.

    ``status`` may write the refreshed stat data of the index, as the user's own ``git status``
    does (it skips the write when the index is locked): a file whose stat changed while its
    content did not (a ``touch``, a tool that rewrote it unchanged) would otherwise be read and
    hashed by git again at every run — 0.5 to 2 s for 30,000 files. Nothing else is written.
    """
    procs = [
        _spawn(
            root,
            "status",
            "--porcelain=v2",
            "--branch",
            "-z",
            "--untracked-files=no",
            refresh=True,
        ),
        _spawn(root, "ls-files", "-z", "-t", "--cached", "--others", "--exclude-standard"),
        _spawn(root, "config", "-z", "--get-regexp", _CONFIG_KEYS),
    ]
    try:
        status_out = _finish(procs[0])
        files_out = _finish(procs[1])
        config_out = _finish(procs[2], ok_codes=(0, 1))  # 1: no key matched
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return RepoFacts(parse_status(status_out), parse_ls_files(files_out), parse_config(config_out))


def read_config(root: Path) -> list[tuple[str, str]]:
    """The config keys a snapshot or an owner needs (remotes, insteadOf, user)."""
    return parse_config(
        run_git(root, "config", "-z", "--get-regexp", _CONFIG_KEYS, ok_codes=(0, 1))
    )


def read_branch_and_config(root: Path) -> tuple[str | None, list[tuple[str, str]]]:
    """The current branch (None when detached) and :func:`read_config`, in parallel."""
    procs = [
        _spawn(root, "symbolic-ref", "--quiet", "--short", "HEAD"),
        _spawn(root, "config", "-z", "--get-regexp", _CONFIG_KEYS),
    ]
    try:
        branch_out = _finish(procs[0], ok_codes=(0, 1))  # 1: detached HEAD
        config_out = _finish(procs[1], ok_codes=(0, 1))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    branch = os.fsdecode(branch_out.strip()) or None
    return branch, parse_config(config_out)


def remote_get_url(root: Path, remote: str) -> str:
    """The URL of ``remote`` with ``url.<base>.insteadOf`` rewrites applied."""
    return run_git(root, "remote", "get-url", "--", remote).decode(errors="replace").strip()


def diff_head(root: Path, limit: int = MAX_DIFF_BYTES) -> str:
    """``git diff HEAD`` as text, cut at ``limit`` bytes with a note saying so.

    The output is read in a stream and git is stopped at the limit, so a huge diff never sits in
    memory. External diff drivers and textconv filters are not run.
    """
    # stderr is not read while stdout is, so it must not be a pipe that could fill up
    proc = _spawn(
        root,
        "diff",
        "HEAD",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    data = proc.stdout.read(limit + 1)
    truncated = len(data) > limit
    if truncated:
        proc.kill()
    proc.communicate()
    if not truncated and proc.returncode != 0:
        return ""
    text = data[:limit].decode(errors="replace")
    if truncated:
        text = text.rsplit("\n", 1)[0] + (
            f"\n[diff truncated at {limit // 1024} KiB: the code snapshot holds every file]\n"
        )
    return text
