"""Golden files: rendered artefacts compared byte for byte with ``tests/golden/<name>``.

Run with ``DSTACK_UPDATE_GOLDEN=1`` to (re)write them after an intended change, then review
the diff like any other code change.
"""

from __future__ import annotations

import os
from pathlib import Path

GOLDEN = Path(__file__).resolve().parent / "golden"


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("DSTACK_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} is missing: run with DSTACK_UPDATE_GOLDEN=1 to write it"
    expected = path.read_text()
    assert text == expected, (
        f"{name} differs from its golden file (DSTACK_UPDATE_GOLDEN=1 rewrites it)"
    )
