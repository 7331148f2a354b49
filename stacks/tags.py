"""The tags every dstack resource carries, so cost reports and orphan searches can find them.

Four tags name where a resource belongs: the state bucket, the repository, the run and the user
who submitted it (the bootstrap stack's resources have no run or user of their own and say so).
Values are cleaned to the characters every AWS service accepts in tags (IAM and S3 are the
strictest) and cut to 256 characters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

BUCKET = "dstack:bucket"
REPO = "dstack:repo"
RUN = "dstack:run"
USER = "dstack:user"
COMPONENT = "dstack:component"
#: the keys every taggable resource of a dstack stack carries
REQUIRED = (BUCKET, REPO, RUN, USER)

#: the bootstrap stack's resources serve every repo and run
SHARED = "shared"

_ALLOWED = re.compile(r"[^\w .:/=+\-@]", re.UNICODE)
_MAX_VALUE = 256


def resource_tags(*, bucket: str, repo: str, run: str, user: str, component: str) -> dict[str, str]:
    """The tags of one resource: the four ``REQUIRED`` ones plus the component it belongs to
    (``bootstrap`` or ``run``)."""
    return {
        BUCKET: clean(bucket),
        REPO: clean(repo),
        RUN: clean(run),
        USER: clean(user),
        COMPONENT: clean(component),
    }


def bootstrap_tags(bucket: str) -> dict[str, str]:
    return resource_tags(bucket=bucket, repo=SHARED, run=SHARED, user=SHARED, component="bootstrap")


def clean(value: str) -> str:
    """``value`` with characters that some AWS services refuse in tags replaced by ``_``."""
    cleaned = _ALLOWED.sub("_", value).strip() or "_"
    return cleaned[:_MAX_VALUE]


def merged(base: Mapping[str, str], extra: Mapping[str, str] | None) -> dict[str, str]:
    """Extra tags from a platform team's config; they never override dstack's own."""
    result = {key: clean(value) for key, value in (extra or {}).items()}
    result.update(base)
    return result
