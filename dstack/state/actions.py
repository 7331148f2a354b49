"""Who did what to a run in a shared store: stop requests and removals, with their author.

A stop request (``jobs/<i>/stop``) holds ``{"request": "stop"|"abort", "by": Owner, "at": t}``
(a bare ``stop``/``abort``, as older clients wrote it, is still read). Removing a run leaves
``repos/<repo>/removed/<run>.json``: who removed it and when, so that ``dstack ps RUN`` can
say so instead of "no run named …". Anyone with access to the store can stop or remove
anyone's run (it is shared); these records make it visible who did.
"""

from __future__ import annotations

import json
import time

from dstack.models import Model, Owner
from dstack.state.keys import removed_key, stop_key
from dstack.storage.base import Storage


class Action(Model):
    """One thing done to a run, and by whom."""

    request: str
    by: Owner | None = None
    at: float | None = None

    @property
    def who(self) -> str:
        if self.by is None:
            return "someone (not recorded)"
        return f"{self.by.display} ({self.by.user}@{self.by.hostname})"


def encode_stop(abort: bool, by: Owner | None) -> bytes:
    request = "abort" if abort else "stop"
    return Action(request=request, by=by, at=time.time()).model_dump_json().encode()


def decode_stop(data: bytes) -> Action | None:
    """The stop request in ``data``, or None if it is not one (damaged: ignored)."""
    text = data.decode(errors="replace").strip()
    if text in ("stop", "abort"):
        return Action(request=text)
    try:
        action = Action.model_validate(json.loads(text))
    except ValueError:
        return None
    return action if action.request in ("stop", "abort") else None


def read_stop(storage: Storage, repo_id: str, run_name: str, job_index: int) -> Action | None:
    data = storage.get_or_none(stop_key(repo_id, run_name, job_index))
    return decode_stop(data) if data is not None else None


def record_removal(storage: Storage, repo_id: str, run_name: str, by: Owner | None) -> None:
    action = Action(request="remove", by=by, at=time.time())
    storage.put(removed_key(repo_id, run_name), action.model_dump_json().encode())


def read_removal(storage: Storage, repo_id: str, run_name: str) -> Action | None:
    data = storage.get_or_none(removed_key(repo_id, run_name))
    if data is None:
        return None
    try:
        return Action.model_validate_json(data)
    except ValueError:
        return Action(request="remove")
