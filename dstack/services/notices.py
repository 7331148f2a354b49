"""One-time notices: what dstack says once per repo (or per machine), not on every command.

A notice said is remembered by an empty-ish marker file under ``DSTACK_HOME/notices/``, named
by the notice's topic and a hash of what it is about (a repo id); removing the folder makes
dstack say them all again. A marker that cannot be written only means the notice is said again.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from dstack import settings

if TYPE_CHECKING:
    from dstack.storage.base import Storage


def first_time(topic: str, about: str) -> bool:
    """True the first time ``topic`` is asked ``about`` something on this machine (and marks
    it said); False ever after."""
    digest = hashlib.sha256(about.encode()).hexdigest()[:16]
    # the notice that came first ("this repo's runs cannot be shared") has no topic in its name
    marker = settings.dstack_home() / "notices" / (f"{topic}-{digest}" if topic else digest)
    if marker.exists():
        return False
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(about + "\n")
    except OSError:
        pass
    return True


def unshared_repo_due(storage: Storage, repo_id: str) -> bool:
    """Whether to say "this repo's runs cannot be shared" now: always with a shared store
    (where it matters), else once per repo on this machine."""
    from dstack.storage.local import LocalStorage

    return not isinstance(storage, LocalStorage) or first_time("", repo_id)
