"""``LogSink``: the job's output reaches the store whole and once, whatever the store does."""

from __future__ import annotations

from pathlib import Path

from dstack import state
from dstack.errors import StorageError
from dstack.models import JobSpec, RepoSnapshot
from dstack.runner.logs import LogSink
from dstack.storage.local import LocalStorage

SPEC = JobSpec(
    run_name="calm-owl-1",
    workflow="w",
    provider="bash",
    repo=RepoSnapshot(repo_id="local/x", code_key="codes/x.tar.gz"),
)


class Flaky(LocalStorage):
    """Fails the puts it is told to: ``lost`` ones never land, ``landed`` ones land but report
    a failure (a connection dropped after the store took the write)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.lost = 0
        self.landed = 0
        self.puts: list[str] = []

    def put(self, key: str, data: bytes, *, if_absent: bool = False, **kwargs: object) -> None:
        self.puts.append(key)
        if self.lost:
            self.lost -= 1
            raise StorageError("store unreachable")
        super().put(key, data, if_absent=if_absent)
        if self.landed:
            self.landed -= 1
            raise StorageError("connection dropped after the write")


def stored(storage: LocalStorage) -> list[bytes]:
    prefix = state.logs_prefix(SPEC.repo.repo_id, SPEC.run_name, SPEC.job_index)
    return [storage.get(info.key) for info in storage.list_objects(prefix)]


def test_a_write_that_landed_but_failed_is_not_duplicated(tmp_path: Path) -> None:
    storage = Flaky(tmp_path)
    sink = LogSink(storage, SPEC)
    sink.write(b"line 1\n")
    storage.landed = 1
    assert not sink.flush()
    sink.write(b"line 2\n")  # arrives while the first chunk is still unconfirmed
    assert sink.flush()
    assert stored(storage) == [b"line 1\n", b"line 2\n"]
    assert storage.puts[0] == storage.puts[1]  # the retry rewrote the same object


def test_an_outage_loses_nothing_and_keeps_the_order(tmp_path: Path) -> None:
    storage = Flaky(tmp_path)
    sink = LogSink(storage, SPEC)
    storage.lost = 3
    for i in range(1, 5):
        sink.write(f"line {i}\n".encode())
        sink.flush()
    assert sink.failures == 3
    assert sink.flush()
    assert b"".join(stored(storage)) == b"".join(f"line {i}\n".encode() for i in range(1, 5))
    assert stored(storage)[0] == b"line 1\n"  # the first chunk went as it was first tried


def test_close_gives_up_at_its_deadline(tmp_path: Path) -> None:
    storage = Flaky(tmp_path)
    sink = LogSink(storage, SPEC).start()
    storage.lost = 10**6
    sink.write(b"never stored\n")
    assert not sink.close(deadline=0.3)
    assert stored(storage) == []
