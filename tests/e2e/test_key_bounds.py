"""Names that become parts of store keys are bounded by their encoded length, at the edge,
and a failed submit leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from dstack import state
from dstack.errors import RunNotFoundError, StorageError
from dstack.storage.local import LocalStorage
from tests.e2e.conftest import Store
from tests.e2e.test_shared_store import ps_all, user
from tests.test_state import REPO, make_run


@pytest.mark.parametrize("store", ["local"], indirect=True)
def test_a_long_cyrillic_user_name_runs_and_shows(
    tmp_path: Path, store: Store, repo_factory
) -> None:  # type: ignore[no-untyped-def]
    name = "Ж" * 42
    cli, repo = user(tmp_path, store, name, repo_factory)
    result = cli("run", "hello", cwd=repo)
    assert result.code == 0, result.err
    rows = ps_all(cli, repo)
    assert len(rows) == 1 and rows[0]["owner"].startswith("ЖЖЖ")


def test_workflow_and_secret_names_are_bounded(tmp_path: Path) -> None:
    from dstack.errors import DstackError
    from dstack.services.secrets import validate_name, validate_value
    from tests.providers.test_build_jobs import workflow

    with pytest.raises(ValueError, match="at most 64"):
        workflow(name="w" * 190, commands=["x"])
    with pytest.raises(DstackError, match="at most 128"):
        validate_name("S" * 300)
    with pytest.raises(DstackError, match="one environment variable holds at most"):
        validate_value("BIG", "x" * (128 * 1024))


class FailingHeadsStorage(LocalStorage):
    """A test double of a store whose file system refuses one kind of key (as a name too
    long for it would): every write under ``heads/`` fails."""

    def put(self, key: str, data: bytes, *, if_absent: bool = False, private: bool = False) -> None:
        if "/heads/" in key:
            raise StorageError(f"cannot write {key}: File name too long")
        super().put(key, data, if_absent=if_absent, private=private)


def test_a_submit_that_fails_leaves_no_orphan_record(tmp_path: Path) -> None:
    storage = FailingHeadsStorage(tmp_path / "store")
    with pytest.raises(StorageError):
        make_run(storage, "wise-owl-1", 100.0)
    assert list(storage.list_objects("repos/")) == []
    with pytest.raises(RunNotFoundError):
        state.read_run(storage, REPO.repo_id, "wise-owl-1")
