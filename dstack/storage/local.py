"""``LocalStorage``: the state store as a folder on this machine (the embedded default).

A key maps to the file at the same relative path under the root. Writes go to a temporary file
in the same folder and are renamed into place, so readers never see a partial object; an
only-if-absent write links the temporary file to its final name, which fails atomically if the
name exists. Temporary files start with ``.tmp-`` and are never listed. The store is
owner-only: every file is born mode 0600 (0700 when it is executable), every folder 0700, so
other users of the machine read nothing of it — records, logs, code, artifacts or secrets.
"""

from __future__ import annotations

import errno
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

from dstack.errors import AlreadyExistsError, NotFoundError, StorageError
from dstack.storage.base import ObjectInfo, ProgressCallback, Storage
from dstack.store_config import LocalStoreConfig

_TMP = ".tmp-"
_CHUNK = 1 << 20


class LocalStorage(Storage):
    """Blobs as files under ``root``."""

    log_flush_interval = 0.05
    poll_interval = 0.02

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def put(self, key: str, data: bytes, *, if_absent: bool = False, private: bool = False) -> None:
        path = self._path(key)
        tmp = self._tmp_for(path)
        try:
            mode = 0o600  # born owner-only (a secret, as every record), never readable
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb") as f:
                f.write(data)
            self._commit(tmp, path, key, if_absent)
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc.strerror}") from exc
        finally:
            _unlink_quietly(tmp)

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFoundError(key) from None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list_objects(self, prefix: str, *, after: str | None = None) -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        folder, _, start = prefix.rpartition("/")
        base = self.root / folder if folder else self.root
        found: list[ObjectInfo] = []
        self._collect(base, folder + "/" if folder else "", start, found)
        # a file name that is not UTF-8 (written by a version that did not escape such names,
        # ``state.filenames``) is listed with its bytes as surrogates, so it can be deleted
        found.sort(key=lambda info: _key_bytes(info.key))
        if after is not None:
            after_bytes = _key_bytes(after)
            found = [info for info in found if _key_bytes(info.key) > after_bytes]
        yield from found

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StorageError(f"cannot delete {key}: {exc.strerror}") from exc
        self._prune_empty_parents(self._path(key).parent)

    def delete_prefix(self, prefix: str) -> int:
        infos = list(self.list_objects(prefix))
        for info in infos:
            self.delete(info.key)
        return len(infos)

    def upload_file(
        self, path: Path, key: str, *, progress: ProgressCallback | None = None
    ) -> None:
        target = self._path(key)
        self._copy(Path(path), target, progress, private=True)

    def download_file(
        self, key: str, path: Path, *, progress: ProgressCallback | None = None
    ) -> None:
        source = self._path(key)
        if not source.is_file():
            raise NotFoundError(key)
        self._copy(source, Path(path), progress)

    def write_problem(self) -> str | None:
        """Write (and remove) one byte in the store's folder: a full or read-only file system
        says so at once."""
        probe = self.root / f"{_TMP}probe-{uuid.uuid4().hex}"
        try:
            if not self.root.is_dir():
                return None
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, b"x")
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            return f"the store {self.root} cannot be written: {exc.strerror}"
        finally:
            _unlink_quietly(probe)
        return None

    def read_chunks(self, key: str, *, chunk_size: int = _CHUNK) -> Iterator[bytes]:
        path = self._path(key)
        try:
            file = open(path, "rb")  # noqa: SIM115 (closed by the with below)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFoundError(key) from None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror}") from exc
        with file:
            while chunk := file.read(chunk_size):
                yield chunk

    def config(self) -> LocalStoreConfig:
        return LocalStoreConfig(root=self.root)

    def describe(self) -> str:
        return str(self.root)

    # helpers

    def _path(self, key: str) -> Path:
        validate_key(key)
        return self.root / key

    def _tmp_for(self, path: Path) -> Path:
        try:
            _make_private_dirs(path.parent)
        except OSError as exc:
            raise StorageError(f"cannot create {path.parent}: {exc.strerror}") from exc
        return path.parent / f"{_TMP}{uuid.uuid4().hex}"

    def _commit(self, tmp: Path, path: Path, key: str, if_absent: bool) -> None:
        if not if_absent:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise AlreadyExistsError(key) from None

    def _copy(
        self,
        source: Path,
        target: Path,
        progress: ProgressCallback | None,
        *,
        private: bool = False,
    ) -> None:
        """Copy ``source`` to ``target`` keeping its executable bit: owner-only into the store
        (``private``), readable as usual out of it (a download)."""
        if private:
            tmp = self._tmp_for(target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.parent / f"{_TMP}{uuid.uuid4().hex}"
        try:
            with open(source, "rb") as src, open(tmp, "wb") as dst:
                while chunk := src.read(_CHUNK):
                    dst.write(chunk)
                    if progress:
                        progress(len(chunk))
            executable = os.stat(source).st_mode & stat.S_IXUSR
            mode = (0o700 if executable else 0o600) if private else (0o755 if executable else 0o644)
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except FileNotFoundError as exc:
            raise NotFoundError(str(source)) from exc
        except OSError as exc:
            raise StorageError(f"cannot copy {source} to {target}: {exc.strerror}") from exc
        finally:
            _unlink_quietly(tmp)

    def _collect(self, folder: Path, key_prefix: str, start: str, out: list[ObjectInfo]) -> None:
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise StorageError(f"cannot list {folder}: {exc.strerror}") from exc
        for entry in entries:
            name = entry.name
            if name.startswith(_TMP) or not name.startswith(start):
                continue
            if entry.is_dir(follow_symlinks=False):
                self._collect(Path(entry.path), f"{key_prefix}{name}/", "", out)
            else:
                try:
                    size = entry.stat().st_size
                except FileNotFoundError:
                    continue  # deleted while listing
                out.append(ObjectInfo(key=key_prefix + name, size=size))

    def _prune_empty_parents(self, folder: Path) -> None:
        root = self.root.resolve()
        while folder.resolve() != root:
            try:
                folder.rmdir()
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                    return
                return
            folder = folder.parent


def _make_private_dirs(folder: Path) -> None:
    """``folder`` and its missing parents, each created mode 0700."""
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass


def _key_bytes(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


def validate_key(key: str) -> None:
    """Refuse keys that could escape the store or are ambiguous as paths."""
    if not key or key.startswith("/") or key.endswith("/"):
        raise StorageError(f"invalid storage key: {key!r}")
    for part in key.split("/"):
        if part in ("", ".", "..") or part.startswith(_TMP) or "\0" in part:
            raise StorageError(f"invalid storage key: {key!r}")


def validate_prefix(prefix: str) -> None:
    """Refuse listing prefixes whose folders could escape the store (``..``, ``.``, ``//``)."""
    if prefix.startswith("/"):
        raise StorageError(f"invalid storage prefix: {prefix!r}")
    for part in prefix.rpartition("/")[0].split("/") if "/" in prefix else []:
        if part in ("", ".", "..") or "\0" in part:
            raise StorageError(f"invalid storage prefix: {prefix!r}")


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError:
        pass
