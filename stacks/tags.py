"""The tags every dstack resource carries, so cost reports and orphan searches can find them.

Five tags name where a resource belongs: the state bucket, the store's key prefix in it (several
stores share one bucket, and run names are unique per store only), the repository, the run and
the user who submitted it (the bootstrap stack's resources have no run or user of their own and
say so). Values are cleaned to the characters every AWS service accepts in tags (IAM and S3 are
the strictest) and cut to 256 characters.

A platform team's extra tags are checked against AWS's limits (``check_extra``): at most
``MAX_EXTRA`` of them, keys of 1-128 characters not starting with ``aws:``, so that the 50 tags
a resource may carry are never exceeded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

BUCKET = "dstack:bucket"
PREFIX = "dstack:prefix"
REPO = "dstack:repo"
RUN = "dstack:run"
USER = "dstack:user"
COMPONENT = "dstack:component"
#: on instances: how many seconds after its launch the instance must be gone (``dstack prune``)
LIFETIME = "dstack:lifetime"
#: the keys every taggable resource of a dstack stack carries
REQUIRED = (BUCKET, PREFIX, REPO, RUN, USER)
#: dstack's own tags and an instance's ``Name`` leave this many for a platform team's
MAX_EXTRA = 50 - len(REQUIRED) - 2

#: the bootstrap stack's resources serve every repo and run
SHARED = "shared"

_ALLOWED = re.compile(r"[^\w .:/=+\-@]", re.UNICODE)
_MAX_VALUE = 256
_MAX_KEY = 128


def store_label(prefix: str) -> str:
    """The ``PREFIX`` tag's value for a store kept under ``prefix`` (``/`` for the whole
    bucket)."""
    return clean(prefix.strip("/") or "/")


def resource_tags(
    *, bucket: str, prefix: str, repo: str, run: str, user: str, component: str
) -> dict[str, str]:
    """The tags of one resource: the ``REQUIRED`` ones plus the component it belongs to
    (``bootstrap`` or ``run``)."""
    return {
        BUCKET: clean(bucket),
        PREFIX: store_label(prefix),
        REPO: clean(repo),
        RUN: clean(run),
        USER: clean(user),
        COMPONENT: clean(component),
    }


def bootstrap_tags(bucket: str, prefix: str = "") -> dict[str, str]:
    return resource_tags(
        bucket=bucket, prefix=prefix, repo=SHARED, run=SHARED, user=SHARED, component="bootstrap"
    )


def clean(value: str) -> str:
    """``value`` with characters that some AWS services refuse in tags replaced by ``_``."""
    cleaned = _ALLOWED.sub("_", value).strip() or "_"
    return cleaned[:_MAX_VALUE]


def check_extra(extra: Mapping[str, str] | None) -> None:
    """Raise ``ValueError`` naming the first extra tag AWS would refuse."""
    extra = extra or {}
    if len(extra) > MAX_EXTRA:
        raise ValueError(
            f"{len(extra)} extra tags: AWS allows 50 per resource and dstack uses "
            f"{50 - MAX_EXTRA}, so at most {MAX_EXTRA}"
        )
    for key in extra:
        if not 1 <= len(key) <= _MAX_KEY:
            raise ValueError(f"tag key {key!r}: AWS takes 1 to {_MAX_KEY} characters")
        if key.lower().startswith("aws:"):
            raise ValueError(f"tag key {key!r}: the aws: prefix is reserved for AWS")
        if key.lower().startswith("dstack:") or key == "Name":
            raise ValueError(f"tag key {key!r} is dstack's own")
        if _ALLOWED.search(key):
            raise ValueError(f"tag key {key!r}: use letters, digits, spaces and _.:/=+-@ only")


def merged(base: Mapping[str, str], extra: Mapping[str, str] | None) -> dict[str, str]:
    """Extra tags from a platform team's config (checked by ``check_extra``); they never
    override dstack's own."""
    check_extra(extra)
    result = {key: clean(value) for key, value in (extra or {}).items()}
    result.update(base)
    return result
