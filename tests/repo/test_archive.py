"""unpack_code refuses archives that would write outside the destination."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from dstack.errors import RepoError
from dstack.repo import unpack_code


def make_tar(path: Path, members: list[tuple[str, str, str | bytes]]) -> Path:
    """A .tar.gz of (kind, name, data) members: kind is file, symlink, hardlink or dir."""
    with tarfile.open(path, "w:gz") as tar:
        for kind, name, data in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                payload = data if isinstance(data, bytes) else data.encode()
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
                continue
            if kind == "dir":
                info.type = tarfile.DIRTYPE
            else:
                info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                info.linkname = str(data)
            tar.addfile(info)
    return path


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([("file", "../evil", "x")], "outside the destination"),
        ([("file", "ok/../../evil", "x")], "outside the destination"),
        ([("file", "/tmp/evil-absolute", "x")], "absolute path"),
        ([("symlink", "escape", "../outside"), ("file", "escape/evil", "x")], "not a folder"),
        ([("symlink", "abs", "/"), ("file", "abs/tmp/evil", "x")], "not a folder"),
        ([("symlink", "a/b", ".."), ("file", "a/b/evil", "x")], "not a folder"),
        ([("hardlink", "h", "/etc/passwd")], "hard link"),
        ([("file", "f", "x"), ("file", "f/evil", "x")], "not a folder"),
    ],
)
def test_malicious_archives_are_refused(
    members: list[tuple[str, str, str | bytes]], message: str, tmp_path: Path
) -> None:
    archive = make_tar(tmp_path / "evil.tar.gz", members)
    dest = tmp_path / "a" / "dest"
    with pytest.raises(RepoError, match=message):
        unpack_code(archive, dest)
    written = {p.name for p in tmp_path.rglob("*")}
    assert "evil" not in written
    assert not Path("/tmp/evil-absolute").exists()


def test_existing_symlink_in_dest_is_not_followed(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, dest / "sub")
    os.symlink(outside / "target.txt", dest / "file.txt")
    archive = make_tar(tmp_path / "x.tar.gz", [("file", "sub/x", "x")])
    with pytest.raises(RepoError):
        unpack_code(archive, dest)
    archive = make_tar(tmp_path / "y.tar.gz", [("file", "file.txt", "new")])
    unpack_code(archive, dest)  # the symlink is replaced, its target is not written
    assert not (outside / "target.txt").exists()
    assert (dest / "file.txt").read_text() == "new" and not (dest / "file.txt").is_symlink()


def test_plain_archive_with_dirs_and_dot_prefix(tmp_path: Path) -> None:
    archive = make_tar(
        tmp_path / "ok.tar.gz",
        [("dir", "./pkg", ""), ("file", "./pkg/m.py", "m"), ("symlink", "pkg/up", "../pkg")],
    )
    unpack_code(archive, tmp_path / "dest")
    assert (tmp_path / "dest" / "pkg" / "m.py").read_text() == "m"
    assert os.readlink(tmp_path / "dest" / "pkg" / "up") == "../pkg"


def test_corrupt_archive(tmp_path: Path) -> None:
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(b"not a tar at all")
    with pytest.raises(RepoError, match="corrupt"):
        unpack_code(archive, tmp_path / "dest")


def test_archive_is_verified_against_its_address_before_anything_is_written(
    tmp_path: Path,
) -> None:
    import gzip
    import hashlib

    from dstack.repo.tree import CodeIntegrityError

    good = make_tar(tmp_path / "good.tar.gz", [("file", "a.py", "print('mine')")])
    digest = hashlib.sha256(gzip.decompress(good.read_bytes())).hexdigest()
    unpack_code(good, tmp_path / "ok", digest=digest)
    assert (tmp_path / "ok" / "a.py").read_text() == "print('mine')"
    evil = make_tar(tmp_path / "evil.tar.gz", [("file", "a.py", "print('theirs')")])
    with pytest.raises(CodeIntegrityError, match="does not match its content address"):
        unpack_code(evil, tmp_path / "dest", digest=digest)
    assert not (tmp_path / "dest").exists()
