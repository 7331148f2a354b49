"""The ``compute`` section refuses, in one line naming the field, tags and IAM fences AWS would
refuse at create time."""

from __future__ import annotations

import pytest

from dstack.errors import ConfigError
from dstack.store_config import parse_compute


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("tags", {"aws:team": "ml"}, r"compute\.tags: .*aws: prefix is reserved"),
        ("tags", {"dstack:run": "x"}, r"compute\.tags: .*dstack's own"),
        ("tags", {f"t{i}": "x" for i in range(44)}, r"compute\.tags: .*at most 43"),
        ("role_path", "dstack", r"compute\.role_path: .*IAM wants /"),
        ("role_name_prefix", "has space", r"compute\.role_name_prefix: "),
        ("permissions_boundary", "boundary", r"compute\.permissions_boundary: .*ARN"),
    ],
)
def test_what_aws_would_refuse_is_one_config_error(field: str, value: object, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        parse_compute({"type": "aws", "region": "eu-west-1", field: value})


def test_fences_iam_takes_are_kept() -> None:
    config = parse_compute({
        "type": "aws", "region": "eu-west-1", "role_path": "/dstack/",
        "role_name_prefix": "dstack-", "tags": {"team": "ml"},
        "permissions_boundary": "arn:aws:iam::111122223333:policy/dstack-runner-boundary",
    })  # fmt: skip
    assert config.role_path == "/dstack/" and config.role_name_prefix == "dstack-"
