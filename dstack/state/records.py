"""Decoding records read from the state store.

Every JSON record read back from a ``Storage`` goes through :func:`load_record`, so a record that
is truncated, foreign or of an older shape surfaces as one ``StorageError`` line naming its
key, never as a pydantic traceback.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel

from dstack.errors import DamagedRecordError

M = TypeVar("M", bound=BaseModel)


def load_record(model: type[M], data: bytes, key: str) -> M:
    """``data`` (the bytes stored at ``key``) parsed as a ``model``; ``StorageError`` if it
    is not valid JSON for it."""
    try:
        return model.model_validate_json(data)
    except ValueError as exc:  # pydantic's ValidationError, for bad JSON and bad shapes alike
        name = model.__name__
        article = "an" if name[:1] in "AEIOU" else "a"
        raise DamagedRecordError(
            f"the record {key} in the state store is unreadable "
            f"(not valid JSON for {article} {name}); remove it or re-run",
            key,
        ) from exc
