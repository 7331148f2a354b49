"""The policy documents as plain functions: no runtime needed."""

from __future__ import annotations

import pytest

from stacks import policies, tags


def test_run_policy_grants_exactly_the_scope() -> None:
    scope = policies.StoreScope(
        prefix="teams/ml",
        read_write=("repos/r/runs/x/", "repos/r/heads/1;x;"),
        read_only=("codes/abc.tar.gz",),
        listable=("repos/r/runs/x/",),
    )
    document = policies.runner_access_policy("arn:aws:s3:::b", scope)
    write, read, listing = document["Statement"]
    assert write["Resource"] == [
        "arn:aws:s3:::b/teams/ml/repos/r/runs/x/*",
        "arn:aws:s3:::b/teams/ml/repos/r/heads/1;x;*",
    ]
    assert read == {
        "Sid": "InputsReadOnly",
        "Effect": "Allow",
        "Action": ["s3:GetObject"],
        "Resource": ["arn:aws:s3:::b/teams/ml/codes/abc.tar.gz"],
    }
    assert listing["Resource"] == "arn:aws:s3:::b"
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["teams/ml/repos/r/runs/x/*"]}}


def test_an_empty_listing_scope_lists_nothing() -> None:
    document = policies.runner_access_policy("arn:aws:s3:::b", policies.StoreScope())
    (listing,) = document["Statement"]
    assert listing["Condition"]["StringLike"]["s3:prefix"] == ["-nothing-"]


@pytest.mark.parametrize("entry", ["repos/*", "codes/?.tar.gz"])
def test_wildcards_cannot_enter_a_scope(entry: str) -> None:
    with pytest.raises(ValueError, match="wildcards"):
        policies.StoreScope(read_write=(entry,))


def test_kept_statements_do_not_duplicate_ours() -> None:
    first = policies.tls_only_bucket_policy("arn:aws:s3:::b")
    again = policies.tls_only_bucket_policy("arn:aws:s3:::b", first["Statement"])
    assert again == first


@pytest.mark.parametrize(
    ("raw", "clean"),
    [("github.com/acme/mnist", "github.com/acme/mnist"), ("Zoë O'Brien", "Zoë O_Brien"), ("", "_")],
)
def test_tag_values_are_cleaned(raw: str, clean: str) -> None:
    assert tags.clean(raw) == clean
    assert len(tags.clean("x" * 300)) == 256
