"""The bootstrap stack under Pulumi's mock runtime: the state bucket's security settings and the
shared runner role, each check shown to hold and to fail on a broken copy."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from stacks import tags as tagging
from stacks.bootstrap import BootstrapArgs
from stacks.program import bootstrap_program
from tests.stacks import properties as prop
from tests.stacks.harness import Declared, broken, deploy, of_type

BUCKET = "acme-dstack-state"
SHARED_TAGS = {
    **{key: tagging.SHARED for key in tagging.REQUIRED},
    tagging.BUCKET: BUCKET,
    tagging.PREFIX: "/",
}


@pytest.fixture(scope="module")
def declared() -> list[Declared]:
    return deploy(lambda: bootstrap_program(BootstrapArgs(bucket_name=BUCKET))).declared


def _set(type_suffix: str, keys: list[Any], value: Any) -> Callable[[list[Declared]], None]:
    def mutate(resources: list[Declared]) -> None:
        target: Any = of_type(resources, type_suffix)[0].inputs
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return mutate


def _remove(type_suffix: str) -> Callable[[list[Declared]], None]:
    def mutate(resources: list[Declared]) -> None:
        resources[:] = [r for r in resources if not r.type.endswith(type_suffix)]

    return mutate


def _policy(type_suffix: str, key: str, edit: Callable[[dict], None]) -> Callable:
    def mutate(resources: list[Declared]) -> None:
        resource = of_type(resources, type_suffix)[0]
        document = json.loads(resource.inputs[key])
        edit(document)
        resource.inputs[key] = json.dumps(document)

    return mutate


def _tls_true(document: dict) -> None:
    document["Statement"][-1]["Condition"]["Bool"]["aws:SecureTransport"] = "true"


def _star(document: dict) -> None:
    document["Statement"][0]["Resource"] = "*"


def _trust_everyone(document: dict) -> None:
    document["Statement"][0]["Principal"] = "*"


def _untag_bucket(resources: list[Declared]) -> None:
    del of_type(resources, ":Bucket")[0].inputs["tags"][tagging.BUCKET]


CHECKS = [
    ("bucket encrypted", lambda d: prop.bucket_encrypted(d, BUCKET), _remove(":BucketServerSideEncryptionConfiguration")),
    ("bucket versioned", prop.bucket_versioned, _set(":BucketVersioning", ["versioningConfiguration", "status"], "Suspended")),
    ("public access blocked", prop.public_access_blocked, _set(":BucketPublicAccessBlock", ["restrictPublicBuckets"], False)),
    ("TLS-only bucket policy", lambda d: prop.tls_only(d, BUCKET), _policy(":BucketPolicy", "policy", _tls_true)),
    ("role trusted by EC2 only", prop.trusted_by_ec2_only, _policy(":Role", "assumeRolePolicy", _trust_everyone)),
    ("runner policy scoped to the bucket", lambda d: prop.s3_access_scoped(d, BUCKET), _policy(":RolePolicy", "policy", _star)),
    ("every resource tagged", lambda d: prop.every_resource_tagged(d, SHARED_TAGS), _untag_bucket),
]  # fmt: skip


@pytest.mark.parametrize(("name", "check", "mutate"), CHECKS, ids=[c[0] for c in CHECKS])
def test_property_holds(name: str, check: Callable, mutate: Callable, declared: list) -> None:
    check(declared)


@pytest.mark.parametrize(("name", "check", "mutate"), CHECKS, ids=[c[0] for c in CHECKS])
def test_property_check_fails_when_broken(
    name: str, check: Callable, mutate: Callable, declared: list
) -> None:
    """Each check, on a copy of the program's resources broken as its docstring says."""
    with pytest.raises(AssertionError):
        check(broken(declared, mutate))


def test_adopting_imports_the_bucket_and_keeps_its_policy() -> None:
    kept = {"Sid": "TeamReaders", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:root"},
            "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/*"}  # fmt: skip
    args = BootstrapArgs(
        bucket_name=BUCKET, adopt_bucket=True, kept_policy_statements=[kept], kms_key_id="k-1"
    )
    declared = deploy(lambda: bootstrap_program(args)).declared
    assert of_type(declared, ":Bucket")[0].import_id == BUCKET
    assert all(d.import_id is None for d in declared if not d.type.endswith(":Bucket"))
    statements = json.loads(of_type(declared, ":BucketPolicy")[0].inputs["policy"])["Statement"]
    assert statements[0] == kept
    prop.tls_only(declared, BUCKET)
    rule = of_type(declared, ":BucketServerSideEncryptionConfiguration")[0].inputs["rules"][0]
    assert rule["applyServerSideEncryptionByDefault"] == {
        "sseAlgorithm": "aws:kms",
        "kmsMasterKeyId": "k-1",
    }


def test_creating_imports_nothing() -> None:
    declared = deploy(lambda: bootstrap_program(BootstrapArgs(bucket_name=BUCKET))).declared
    assert all(d.import_id is None for d in declared)


def test_store_under_a_prefix_limits_the_shared_role_to_it() -> None:
    args = BootstrapArgs(bucket_name=BUCKET, store_prefix="teams/ml")
    declared = deploy(lambda: bootstrap_program(args)).declared
    statements = json.loads(of_type(declared, ":RolePolicy")[0].inputs["policy"])["Statement"]
    assert statements[0]["Resource"] == f"arn:aws:s3:::{BUCKET}/teams/ml/repos/*"
    assert statements[1]["Resource"] == [
        f"arn:aws:s3:::{BUCKET}/teams/ml/codes/*",
        f"arn:aws:s3:::{BUCKET}/teams/ml/dist/*",
    ]
    assert statements[2]["Condition"] == {
        "StringLike": {"s3:prefix": ["teams/ml/repos/*", "teams/ml/codes/*", "teams/ml/dist/*"]}
    }
