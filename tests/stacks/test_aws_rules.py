"""What AWS and the AWS provider enforce, applied to dstack's stacks: the provider rules of the
mock harness (``provider_rules``) shown to pass on the real programs and to catch each kind of
stack AWS would refuse; and the bootstrap and run stack settings a platform engineer checks
before letting dstack into an account (lifecycle rules, retained settings, IAM fences, KMS)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest

from stacks import policies
from stacks import tags as tagging
from stacks.bootstrap import BootstrapArgs
from stacks.program import bootstrap_program, run_program
from stacks.run import InstanceArgs
from tests.stacks import provider_rules as rules
from tests.stacks.harness import Declared, broken, deploy, of_type
from tests.stacks.test_run_stack import BUCKET, make_args


def _run(**changes: Any) -> list[Declared]:
    return deploy(lambda: run_program(make_args(**changes))).declared


def _bootstrap(**changes: Any) -> list[Declared]:
    args = BootstrapArgs(bucket_name=BUCKET, **changes)
    return deploy(lambda: bootstrap_program(args)).declared


def _statements(declared: list[Declared], index: int = 0) -> list[dict[str, Any]]:
    return json.loads(of_type(declared, ":RolePolicy")[index].inputs["policy"])["Statement"]


# --- the provider rules themselves: each catches what AWS refuses --------------------------


def _rule_description(text: str) -> Callable[[list[Declared]], None]:
    def mutate(resources: list[Declared]) -> None:
        of_type(resources, ":SecurityGroup")[0].inputs["ingress"][0]["description"] = text

    return mutate


def _many_rules(resources: list[Declared]) -> None:
    group = of_type(resources, ":SecurityGroup")[0]
    group.inputs["ingress"] = [
        {"protocol": "tcp", "fromPort": p, "toPort": p, "cidrBlocks": ["203.0.113.7/32"]}
        for p in range(61)
    ]


def _tag(key: str, value: str) -> Callable[[list[Declared]], None]:
    def mutate(resources: list[Declared]) -> None:
        of_type(resources, ":Instance")[0].inputs["tags"][key] = value

    return mutate


def _many_tags(resources: list[Declared]) -> None:
    tags = of_type(resources, ":Instance")[0].inputs["tags"]
    tags.update({f"t{i}": "x" for i in range(50)})


def _long_role_name(resources: list[Declared]) -> None:
    of_type(resources, ":Role")[0].inputs["name"] = "r" * 65


def _big_policy(resources: list[Declared]) -> None:
    policy = of_type(resources, ":RolePolicy")[0]
    document = json.loads(policy.inputs["policy"])
    document["Statement"][0]["Resource"] += [f"arn:aws:s3:::{BUCKET}/k{i:06d}" for i in range(400)]
    policy.inputs["policy"] = json.dumps(document, indent=4)


def _big_user_data(resources: list[Declared]) -> None:
    of_type(resources, ":Instance")[0].inputs["userData"] = "#!/bin/bash\n" + "#" * 16_384


REFUSED = [
    ("apostrophe in a rule description", _rule_description("the run's nodes"), "characters EC2"),
    ("rule description over 255", _rule_description("a" * 256), "longer than 255"),
    ("61 inbound rules", _many_rules, "over 60"),
    ("aws: tag prefix", _tag("aws:team", "ml"), "reserved"),
    ("tag value over 256", _tag("team", "v" * 257), "longer than 256"),
    ("tag key over 128", _tag("k" * 129, "v"), "1-128"),
    ("51 tags", _many_tags, "over 50"),
    ("role name over 64", _long_role_name, "longer than 64"),
    ("inline policy over 10,240", _big_policy, "over 10240"),
    ("user data over 16 KB", _big_user_data, "over 16 KB"),
]


def test_the_real_programs_pass_the_provider_rules() -> None:
    for declared in (_run(), _run(instances=make_args().instances[:1]), _bootstrap()):
        assert rules.violations(declared) == []


@pytest.mark.parametrize(("name", "mutate", "why"), REFUSED, ids=[r[0] for r in REFUSED])
def test_a_stack_aws_would_refuse_fails(name: str, mutate: Callable, why: str) -> None:
    declared = _run()
    with pytest.raises(rules.ProviderRefused, match=why):
        rules.check(broken(declared, mutate))


def test_whitespace_does_not_count_toward_the_policy_limit() -> None:
    document = {"Statement": [{"Resource": "x" * 10_000}]}
    assert rules.policy_size(json.dumps(document, indent=8)) == policies.policy_size(document)
    assert policies.policy_size(document) < 10_240


# --- the run stack -------------------------------------------------------------------------


def test_a_multi_node_run_with_ports_passes_preview_rules() -> None:
    """The descriptions of both inline rule kinds (node-to-node, a port) are ones EC2 takes."""
    group = of_type(_run(), ":SecurityGroup")[0]
    descriptions = [r["description"] for r in group.inputs["ingress"] + group.inputs["egress"]]
    assert len(descriptions) == 3
    assert all(rules.SG_DESCRIPTION.match(d) for d in descriptions), descriptions


def test_store_prefix_is_tagged_on_every_resource() -> None:
    declared = _run(store_prefix="teams/ml/")
    for resource in declared:
        tags = resource.inputs.get("tags")
        if resource.custom and tags is not None:
            assert tags[tagging.PREFIX] == "teams/ml", resource.name


def test_instances_carry_their_lifetime() -> None:
    declared = _run(lifetime_seconds=3600)
    for instance in of_type(declared, ":Instance"):
        assert instance.inputs["tags"][tagging.LIFETIME] == "3600"


def test_role_fences_reach_the_role_and_its_profile() -> None:
    boundary = "arn:aws:iam::123456789012:policy/dstack-boundary"
    declared = _run(role_path="/dstack/", role_name_prefix="dstack-", permissions_boundary=boundary)
    (role,) = of_type(declared, ":Role")
    (profile,) = of_type(declared, ":InstanceProfile")
    assert role.inputs["path"] == profile.inputs["path"] == "/dstack/"
    assert role.inputs["permissionsBoundary"] == boundary
    assert role.inputs["namePrefix"].startswith("dstack-wise-owl-1")
    assert len(role.inputs["namePrefix"]) <= policies.NAME_PREFIX_MAX


def test_a_long_run_name_still_fits_a_prefixed_role_name() -> None:
    long = "a-very-long-run-name-that-someone-chose-for-a-sweep-of-forty-jobs"
    declared = _run(run_name=long, role_name_prefix="platform-team-dstack-")
    assert rules.violations(declared) == []


@pytest.mark.parametrize(
    ("fences", "why"),
    [
        ({"role_path": "dstack"}, "role path"),
        ({"role_name_prefix": "a prefix with spaces"}, "name prefix"),
        ({"role_name_prefix": "p" * 40}, "name prefix"),
        ({"permissions_boundary": "dstack-boundary"}, "ARN of an IAM policy"),
    ],
)
def test_fences_iam_would_refuse_are_refused_up_front(fences: dict, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        make_args(**fences)


def test_bucket_kms_key_data_keys_are_granted() -> None:
    key = "arn:aws:kms:us-east-1:123456789012:key/abcd"
    statements = _statements(_run(bucket_kms_key_arn=key))
    (kms,) = [s for s in statements if s["Action"][0].startswith("kms:")]
    assert kms["Resource"] == key
    assert set(kms["Action"]) == {"kms:GenerateDataKey", "kms:Decrypt"}
    assert not [s for s in _statements(_run()) if s["Action"][0].startswith("kms:")]


def test_the_group_lives_in_the_subnet_vpc() -> None:
    """Without a vpc_id the group would land in the default VPC and RunInstances would refuse a
    subnet of another one."""
    (group,) = of_type(_run(subnet_id="subnet-0abc"), ":SecurityGroup")
    assert group.inputs["vpcId"] == "vpc-of-subnet-0abc"
    (pinned,) = of_type(_run(subnet_id="subnet-0abc", vpc_id="vpc-1"), ":SecurityGroup")
    assert pinned.inputs["vpcId"] == "vpc-1"


def test_extra_tags_aws_would_refuse_are_refused() -> None:
    for extra, why in (
        ({"aws:cost": "x"}, "reserved"),
        ({f"t{i}": "x" for i in range(44)}, "at most"),
    ):
        with pytest.raises(ValueError, match=why):
            _run(extra_tags=extra)


# --- the bootstrap stack --------------------------------------------------------------------


def test_lifecycle_rules_expire_what_versioning_keeps() -> None:
    (lifecycle,) = of_type(_bootstrap(store_prefix="teams/ml"), ":BucketLifecycleConfiguration")
    (rule,) = lifecycle.inputs["rules"]
    assert rule["status"] == "Enabled"
    assert rule["filter"] == {"prefix": "teams/ml/"}
    assert rule["noncurrentVersionExpiration"]["noncurrentDays"] == 30
    assert rule["expiration"] == {"expiredObjectDeleteMarker": True}
    assert rule["abortIncompleteMultipartUpload"]["daysAfterInitiation"] == 7
    assert not of_type(_bootstrap(lifecycle=False), ":BucketLifecycleConfiguration")


def test_destroying_the_bootstrap_leaves_the_bucket_protected() -> None:
    """Every bucket setting is retained on delete, like the bucket itself."""
    mocks = deploy(lambda: bootstrap_program(BootstrapArgs(bucket_name=BUCKET, adopt_bucket=True)))
    buckets = [d for d in mocks.declared if d.type.startswith("aws:s3/")]
    assert len(buckets) == 7
    for resource in buckets:
        assert mocks.options[resource.name].retain_on_delete is True, resource.name


def test_a_bucket_dstack_created_gets_its_tags() -> None:
    created = deploy(
        lambda: bootstrap_program(BootstrapArgs(bucket_name=BUCKET, created_bucket=True))
    )
    assert "tags" not in (created.options["dstack-state"].ignore_changes or [])
    adopted = deploy(lambda: bootstrap_program(BootstrapArgs(bucket_name=BUCKET)))
    assert "tags" in (adopted.options["dstack-state"].ignore_changes or [])


def test_the_shared_role_never_reaches_the_pulumi_state() -> None:
    for statement in _statements(_bootstrap()):
        for resource in (
            statement["Resource"]
            if isinstance(statement["Resource"], list)
            else [statement["Resource"]]
        ):
            assert "pulumi" not in resource
        if "s3:PutObject" in statement["Action"]:
            assert statement["Resource"] == f"arn:aws:s3:::{BUCKET}/repos/*"


def test_the_shared_role_gets_the_bucket_key_by_its_arn() -> None:
    statements = _statements(_bootstrap(kms_key_id="alias/dstack"))
    (kms,) = [s for s in statements if s["Action"][0].startswith("kms:")]
    assert kms["Resource"] == "arn:aws:kms:us-east-1:123456789012:key/dstack"


def test_bootstrap_fences_reach_the_shared_role() -> None:
    boundary = "arn:aws:iam::123456789012:policy/b"
    (role,) = of_type(_bootstrap(role_path="/dstack/", permissions_boundary=boundary), ":Role")
    assert role.inputs["path"] == "/dstack/" and role.inputs["permissionsBoundary"] == boundary


def test_instance_args_user_data_over_16_kb_is_caught() -> None:
    big = InstanceArgs(0, "m5.large", interruptible=False, user_data="#" * 20_000)
    with pytest.raises(rules.ProviderRefused, match="16 KB"):
        deploy(lambda: run_program(dataclasses.replace(make_args(), instances=[big])))
