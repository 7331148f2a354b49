"""The stat cache's journal: a run writes what changed, not the whole cache, and nothing in the
journal — cut short, left over from before a rewrite — can make a changed file pass unread."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from tests.repo.test_codestore import age, sha, snap

RepoFactory = Callable[..., Path]


def _files(cache: Path) -> tuple[Path, Path]:
    base = next((cache / "code" / "stat").glob("*.json"))
    return base, base.with_suffix(".log")


def _edit(root: Path, path: str, text: str) -> None:
    (root / path).write_text(text)
    _past(root / path)


def _past(path: Path) -> None:
    """An mtime out of the racy window, so that the file's digest is kept."""
    past = path.stat().st_mtime - 60
    os.utime(path, (past, past))


def test_an_edit_appends_to_the_journal_and_is_read_back(
    repo_factory: RepoFactory, tmp_path: Path
) -> None:
    root = repo_factory({f"src/m{i}.py": f"x = {i}\n" for i in range(300)})
    age(root)
    cache = tmp_path / "cache"
    assert snap(root, cache).hashed_files == 300
    base, journal = _files(cache)
    whole = base.read_bytes()
    _edit(root, "src/m7.py", "x = 'seven'\n")
    assert snap(root, cache).hashed_files == 1
    assert base.read_bytes() == whole  # not written again
    assert journal.read_text().count("\n") == 1 and "src/m7.py" in journal.read_text()
    (root / "src/m8.py").unlink()
    again = snap(root, cache)
    assert again.hashed_files == 0  # m7.py's digest came from the journal
    assert {e.path: e.digest for e in again.entries}["src/m7.py"] == sha(b"x = 'seven'\n")
    assert '["src/m8.py"]' in journal.read_text()  # gone


def test_a_journal_line_cut_short_costs_one_hash(repo_factory: RepoFactory, tmp_path: Path) -> None:
    root = repo_factory({"a.py": "a\n", "b.py": "b\n"})
    age(root)
    cache = tmp_path / "cache"
    snap(root, cache)
    _edit(root, "a.py", "A\n")
    snap(root, cache)
    _base, journal = _files(cache)
    journal.write_bytes(journal.read_bytes()[:-9])  # a write cut short by a crash
    again = snap(root, cache)
    assert again.hashed_files == 1
    assert {e.path: e.digest for e in again.entries}["a.py"] == sha(b"A\n")


def test_the_cache_is_written_whole_when_the_journal_grows(
    repo_factory: RepoFactory, tmp_path: Path
) -> None:
    root = repo_factory({f"m{i}.py": f"{i}\n" for i in range(400)})
    age(root)
    cache = tmp_path / "cache"
    snap(root, cache)
    _base, journal = _files(cache)
    for i in range(300):  # more than max(256, an eighth of the files) changed at once
        _edit(root, f"m{i}.py", f"{i} changed\n")
    assert snap(root, cache).hashed_files == 300
    assert not journal.exists()
    assert snap(root, cache).hashed_files == 0


def test_a_stale_journal_entry_never_hides_a_change(
    repo_factory: RepoFactory, tmp_path: Path
) -> None:
    """A journal left beside a cache written after it (a crash between the two writes) holds
    older entries: each is checked against the file's stat, so it only costs a hash."""
    root = repo_factory({"a.py": "one\n"})
    age(root)
    cache = tmp_path / "cache"
    snap(root, cache)
    _edit(root, "a.py", "two\n")
    snap(root, cache)
    _base, journal = _files(cache)
    stale = journal.read_bytes()  # a.py is "two"
    _edit(root, "a.py", "three\n")
    os.utime(root / "a.py", (1_000_000_000, 1_000_000_000))
    snap(root, cache)
    journal.write_bytes(journal.read_bytes() + stale)  # replayed last: the older entry wins
    again = snap(root, cache)
    assert {e.path: e.digest for e in again.entries}["a.py"] == sha(b"three\n")
