"""``runner.metrics``: which lines are metric points, and the shipper that follows the file
and writes its points to the store, whole and once, whatever the store does. (The journey
through the CLI, on both stores, is tests/e2e/test_metrics.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dstack import state
from dstack.runner import metrics
from dstack.runner.metrics import MetricsShipper, parse_line, prepare_file
from dstack.storage.local import LocalStorage
from tests.runner.test_logs import SPEC, Flaky


@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        (b'{"step": 3, "loss": 0.41, "accuracy": 0.87}', (3, {"loss": 0.41, "accuracy": 0.87})),
        (b'{"loss": 1}', (None, {"loss": 1.0})),
        (b'{"step": null, "loss": 1e-3}', (None, {"loss": 0.001})),
        (b'{"step": -1, "x": 2}', (-1, {"x": 2.0})),
        (b'{"step": 2.0, "x": 1}', (2, {"x": 1.0})),
        (b"   ", None),
        (b"", None),
        (b"loss=0.4", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[" * 100_000, "not JSON"),  # nested past the parser's depth
        (b"[1, 2]", "not a JSON object"),
        (b'{"loss": "0.4"}', '"loss" is "0.4", not a finite number'),
        (b'{"loss": true}', '"loss" is true, not a finite number'),
        (b'{"loss": null}', '"loss" is null, not a finite number'),
        (b'{"loss": NaN}', '"loss" is NaN, not a finite number'),
        (b'{"loss": Infinity}', '"loss" is Infinity, not a finite number'),
        (b'{"loss": 1' + b"0" * 400 + b"}", None),  # checked below: an int beyond a float
        (b'{"loss": {"a": 1}}', '"loss" is {"a": 1}, not a finite number'),
        (b'{"step": 1.5, "loss": 1}', "step is 1.5, not a whole number"),
        (b'{"step": true, "loss": 1}', "step is true, not a whole number"),
        (b'{"step": 4}', "no metric in it, only a step"),
        (b'{"": 1}', "a metric name must have 1 to 200 characters"),
    ],
)
def test_which_lines_are_points(line: bytes, parsed: object) -> None:
    if line.startswith(b'{"loss": 1000'):
        result = parse_line(line)
        assert isinstance(result, str) and "not a finite number" in result
        return
    assert parse_line(line) == parsed


def chunks(storage: LocalStorage) -> list[tuple[str, list[dict]]]:
    prefix = state.metrics_prefix(SPEC.repo.repo_id, SPEC.run_name, SPEC.job_index)
    return [
        (
            info.key[len(prefix) :],
            [json.loads(line) for line in storage.get(info.key).splitlines()],
        )
        for info in storage.list_objects(prefix)
    ]


def shipper(storage: LocalStorage, path: Path, attempt: int = 1, **kwargs) -> MetricsShipper:  # type: ignore[no-untyped-def]
    mask = kwargs.pop("mask", lambda text: text)
    ship = MetricsShipper(storage, SPEC, attempt, path, mask=mask, interval=3600, **kwargs)
    ship.sleep = lambda _: None
    return ship


def test_points_are_written_in_order_with_one_warning_for_bad_lines(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    path, _ = prepare_file(tmp_path / "job", in_container=False)
    path.write_bytes(b'{"step": 1, "loss": 0.5}\nnope\n{"loss": "x"}\n{"step": 2, "loss": 0.4}')
    ship = shipper(storage, path)  # never started: close() reads and ships all of it
    warning = ship.close()
    assert warning == (
        "metrics: skipped 2 line(s) of $DSTACK_METRICS that are not metric points; "
        "the first, line 2: not JSON"
    )
    [(key, points)] = chunks(storage)
    assert key == "0001-0000000000-2"
    assert [(p["step"], p["values"]) for p in points] == [(1, {"loss": 0.5}), (2, {"loss": 0.4})]


def test_a_chunk_that_failed_is_sent_again_as_it_was(tmp_path: Path) -> None:
    storage = Flaky(tmp_path / "store")
    path, _ = prepare_file(tmp_path / "job", in_container=False)
    path.write_bytes(b'{"a": 1}\n')
    ship = shipper(storage, path)
    ship._poll()
    storage.landed = 1  # the store took it, the client saw a failure
    assert not ship._flush()
    path.write_bytes(b'{"a": 1}\n{"a": 2}\n')
    ship._poll()
    assert ship._flush()
    assert storage.puts[0] == storage.puts[1]  # the same key, rewritten: no duplicate
    assert [key for key, _ in chunks(storage)] == ["0001-0000000000-1", "0001-0000000001-1"]
    assert ship.close() is None


def test_an_outage_holds_at_most_a_bounded_number_of_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "MAX_BUFFERED", 500)  # smaller bounds, the same logic
    monkeypatch.setattr(metrics, "READ_LIMIT", 4096)
    storage = Flaky(tmp_path / "store")
    path, _ = prepare_file(tmp_path / "job", in_container=False)
    lines = [b'{"step": %d, "a": 1}\n' % i for i in range(10_000, 12_000)]
    path.write_bytes(b"".join(lines))
    ship = shipper(storage, path)
    storage.lost = 10**9
    for _ in range(5):
        ship._poll()
        ship._flush()
    assert len(ship._buffer) <= 500 + 4096 // len(lines[0])  # the rest waits in the file
    assert ship.tail.offset < path.stat().st_size
    storage.lost = 0
    assert ship.close() is None
    steps = [p["step"] for _, points in chunks(storage) for p in points]
    assert steps == list(range(10_000, 12_000))


def test_a_later_attempt_continues_the_series_and_names_are_masked(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    path, _ = prepare_file(tmp_path / "job", in_container=False)
    path.write_bytes(b'{"step": 1, "loss": 0.5}\n')
    assert shipper(storage, path).close() is None
    path, _ = prepare_file(tmp_path / "job", in_container=False)  # attempt 2: a fresh file
    assert not path.exists()
    path.write_bytes(b'{"step": 2, "tok-123_loss": 0.4}\n{"step": 3, "tok-123": "x"}\n')
    mask = lambda text: text.replace("tok-123", "***")  # noqa: E731 (LogSink.mask_text)
    warning = shipper(storage, path, attempt=2, mask=mask).close()
    assert warning is not None and "tok-123" not in warning and '"***" is "x"' in warning
    assert [(key, [p["values"] for p in points]) for key, points in chunks(storage)] == [
        ("0001-0000000000-1", [{"loss": 0.5}]),
        ("0002-0000000000-1", [{"***_loss": 0.4}]),
    ]


def test_a_store_that_never_comes_back_is_one_more_warning(tmp_path: Path) -> None:
    storage = Flaky(tmp_path / "store")
    path, _ = prepare_file(tmp_path / "job", in_container=False)
    path.write_bytes(b'{"a": 1}\n')
    storage.lost = 10**9
    warning = shipper(storage, path).close(deadline=0.01)
    assert warning == "metrics: some points could not be saved to the store"


def test_the_job_sees_the_container_path_in_a_container(tmp_path: Path) -> None:
    path, seen = prepare_file(tmp_path / "job", in_container=True)
    assert seen == "/dstack/metrics/metrics.jsonl"
    assert path.parent.stat().st_mode & 0o777 == 0o777  # the image's user may not be ours
    assert path == tmp_path / "job" / "metrics" / "metrics.jsonl"
    _, seen = prepare_file(tmp_path / "job", in_container=False)
    assert seen == str(path)


def test_a_file_that_cannot_be_followed_is_one_warning(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    path, _ = prepare_file(tmp_path / "job", in_container=False)
    path.symlink_to(tmp_path / "elsewhere")
    assert shipper(storage, path).close() == (
        "metrics: $DSTACK_METRICS is a symbolic link: not followed"
    )
    assert chunks(storage) == []
