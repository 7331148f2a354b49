"""Run names: ``<adjective>-<animal>-<n>``, unique in the whole store, allocated without races.

A name is taken by creating ``names/<name>`` only-if-absent, which exactly one writer of any
process or machine can win; a loser simply tries the next number.
"""

from __future__ import annotations

import random
import re

from dstack import state
from dstack.errors import AlreadyExistsError, StorageError
from dstack.storage.base import Storage

ADJECTIVES = (
    "able", "bold", "brave", "bright", "calm", "clever", "cool", "crisp", "curious", "daring",
    "eager", "fancy", "fast", "fierce", "fluffy", "gentle", "glad", "golden", "grand", "happy",
    "honest", "humble", "jolly", "keen", "kind", "lively", "lucky", "mellow", "merry", "mighty",
    "nice", "noble", "polite", "proud", "quick", "quiet", "rapid", "shiny", "silent", "smart",
    "snappy", "steady", "strong", "sunny", "swift", "tidy", "tough", "vivid", "warm", "wise",
)  # fmt: skip
ANIMALS = (
    "ant", "bat", "bear", "bee", "bison", "boar", "cat", "cobra", "crab", "crow", "deer", "dog",
    "dolphin", "eagle", "eel", "elk", "falcon", "ferret", "fox", "frog", "gecko", "goat", "goose",
    "hare", "hawk", "horse", "husky", "ibis", "jaguar", "koala", "lemur", "lion", "lynx", "mole",
    "moose", "mouse", "newt", "otter", "owl", "panda", "parrot", "puma", "rabbit", "raven",
    "seal", "shark", "sloth", "snail", "swan", "tiger", "turtle", "wolf", "yak", "zebra",
)  # fmt: skip

_NAME = re.compile(r"^[a-z]+-[a-z]+-(\d+)$")
MAX_ATTEMPTS = 50


def allocate_run_name(storage: Storage, rng: random.Random | None = None) -> str:
    """Reserve and return a new run name."""
    rng = rng or random.Random()
    stem = f"{rng.choice(ADJECTIVES)}-{rng.choice(ANIMALS)}"
    taken = [
        int(m.group(1))
        for info in storage.list_objects(state.name_key(stem + "-"))
        if (m := _NAME.match(info.key.rsplit("/", 1)[-1]))
    ]
    number = max(taken, default=0) + 1
    for _ in range(MAX_ATTEMPTS):
        name = f"{stem}-{number}"
        try:
            storage.put(state.name_key(name), b"", if_absent=True)
            return name
        except AlreadyExistsError:
            number += 1
    raise StorageError(f"could not reserve a run name after {MAX_ATTEMPTS} attempts")
