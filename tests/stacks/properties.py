"""The security properties of dstack's stacks, as checks over what a program declared.

Each check raises ``AssertionError`` when its property does not hold. ``test_*`` modules run
every check on the real programs (it must pass) and on a copy broken by the mutation named in
the check's docstring (it must fail), so no check can pass vacuously.
"""

from __future__ import annotations

import importlib
import inspect
import ipaddress
import json
from collections.abc import Mapping, Sequence
from typing import Any

from stacks import tags as tagging
from tests.stacks.harness import Declared, of_type

OPEN = {"0.0.0.0/0", "::/0"}


def no_open_ingress(declared: list[Declared]) -> None:
    """No security group (inline or separate rule) admits traffic from anywhere.
    Broken by: adding an ingress rule from 0.0.0.0/0."""
    for group in of_type(declared, ":SecurityGroup"):
        for rule in group.inputs.get("ingress") or []:
            cidrs = set(rule.get("cidrBlocks") or []) | set(rule.get("ipv6CidrBlocks") or [])
            assert not cidrs & OPEN, f"{group.name}: ingress open to {cidrs & OPEN}"
    for rule in of_type(declared, ":SecurityGroupRule") + of_type(declared, "IngressRule"):
        if rule.inputs.get("type", "ingress") == "ingress":
            cidrs = set(rule.inputs.get("cidrBlocks") or []) | {rule.inputs.get("cidrIpv4")}
            assert not cidrs & OPEN, f"{rule.name}: ingress open to {cidrs & OPEN}"


def ingress_exactly(declared: list[Declared], ports: Sequence[int], caller: str | None) -> None:
    """Ingress holds exactly the asked ports, TCP, each only from the caller's one address;
    none at all (an explicit empty list) when no port is asked for — besides, for a multi-node
    run, one rule admitting the group's own members and no address.
    Broken by: widening the caller's /32 to a /24, or adding a port."""
    groups = of_type(declared, ":SecurityGroup")
    assert groups, "no security group declared"
    nodes = len(of_type(declared, ":Instance"))
    for group in groups:
        ingress = group.inputs.get("ingress")
        assert ingress is not None, f"{group.name}: ingress left unmanaged"
        members = [r for r in ingress if r.get("self")]
        assert len(members) == (1 if nodes > 1 else 0), f"{group.name}: node-to-node rules"
        for rule in members:
            assert not rule.get("cidrBlocks") and not rule.get("ipv6CidrBlocks"), rule
        ingress = [r for r in ingress if not r.get("self")]
        assert sorted(r["fromPort"] for r in ingress) == sorted(ports), f"{group.name}: ports"
        for rule in ingress:
            assert rule["protocol"] == "tcp" and rule["fromPort"] == rule["toPort"], rule
            cidrs = (rule.get("cidrBlocks") or []) + (rule.get("ipv6CidrBlocks") or [])
            assert cidrs == [caller], f"{group.name}: port {rule['fromPort']} open to {cidrs}"
            network = ipaddress.ip_network(cidrs[0])
            assert network.prefixlen == network.max_prefixlen, f"not one address: {network}"


def imdsv2_required(declared: list[Declared]) -> None:
    """Every instance requires IMDSv2 session tokens, one network hop away at most.
    Broken by: httpTokens set to "optional"."""
    instances = of_type(declared, ":Instance")
    assert instances, "no instance declared"
    for instance in instances:
        options = instance.inputs.get("metadataOptions") or {}
        assert options.get("httpTokens") == "required", f"{instance.name}: IMDSv1 allowed"
        assert options.get("httpPutResponseHopLimit") == 1, f"{instance.name}: hop limit"


def root_volume_encrypted(declared: list[Declared]) -> None:
    """Every instance's root volume is encrypted and deleted with the instance.
    Broken by: encrypted set to False."""
    for instance in of_type(declared, ":Instance"):
        root = instance.inputs.get("rootBlockDevice") or {}
        assert root.get("encrypted") is True, f"{instance.name}: root volume not encrypted"
        assert root.get("deleteOnTermination") is True, f"{instance.name}: volume outlives it"


def spot_exactly_when(declared: list[Declared], interruptible: Mapping[str, bool]) -> None:
    """An instance asks for the spot market exactly when its job is interruptible
    (``interruptible`` maps instance names to that).
    Broken by: dropping instanceMarketOptions from a spot job, or adding it to another."""
    instances = {i.name: i for i in of_type(declared, ":Instance")}
    assert set(instances) == set(interruptible), f"instances {sorted(instances)}"
    for name, wanted in interruptible.items():
        market = instances[name].inputs.get("instanceMarketOptions")
        is_spot = bool(market) and market.get("marketType") == "spot"
        assert is_spot == wanted, f"{name}: spot={is_spot}, interruptible={wanted}"
        if is_spot:
            spot = market.get("spotOptions") or {}
            assert spot.get("spotInstanceType") == "one-time", f"{name}: persistent spot"


def shutdown_terminates(declared: list[Declared]) -> None:
    """An instance that powers itself off is terminated (the end of its cost).
    Broken by: instanceInitiatedShutdownBehavior set to "stop"."""
    for instance in of_type(declared, ":Instance"):
        behaviour = instance.inputs.get("instanceInitiatedShutdownBehavior")
        assert behaviour == "terminate", f"{instance.name}: shutdown means {behaviour}"


def trusted_by_ec2_only(declared: list[Declared]) -> None:
    """Every role may be assumed by the EC2 service and nothing else.
    Broken by: adding an AWS account principal to the trust policy."""
    roles = of_type(declared, ":Role")
    assert roles, "no role declared"
    for role in roles:
        policy = json.loads(role.inputs["assumeRolePolicy"])
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow"
            assert statement["Principal"] == {"Service": "ec2.amazonaws.com"}, statement
            assert statement["Action"] in ("sts:AssumeRole", ["sts:AssumeRole"]), statement
            assert "Condition" not in statement or statement["Condition"], statement


def s3_access_scoped(declared: list[Declared], bucket: str) -> None:
    """Role policies name the bucket's own ARNs only: never a ``*`` resource, never ``s3:*``,
    and listing only under a prefix condition when the policy is a run's.
    Broken by: a resource of "*", or the bucket ARN of another bucket."""
    policies = of_type(declared, ":RolePolicy")
    assert policies, "no role policy declared"
    arn = f"arn:aws:s3:::{bucket}"
    for policy in policies:
        for statement in json.loads(policy.inputs["policy"])["Statement"]:
            resources = _as_list(statement["Resource"])
            actions = _as_list(statement["Action"])
            assert "*" not in resources, f"{policy.name}: Resource *"
            assert "s3:*" not in actions and "*" not in actions, f"{policy.name}: all actions"
            for resource in resources:
                assert resource == arn or resource.startswith(f"{arn}/"), resource


def run_writes_scoped(declared: list[Declared], writable: Sequence[str]) -> None:
    """A run's own role writes only under ``writable`` object prefixes (its run folder and its
    index entries) and lists only under prefix conditions.
    Broken by: widening the run folder to the whole repo."""
    for policy in of_type(declared, ":RolePolicy"):
        for statement in json.loads(policy.inputs["policy"])["Statement"]:
            actions = _as_list(statement["Action"])
            if "s3:PutObject" in actions or "s3:DeleteObject" in actions:
                for resource in _as_list(statement["Resource"]):
                    key = resource.split(":::", 1)[1].split("/", 1)[1]
                    assert any(key.startswith(w) for w in writable), f"writes {key}"
            if "s3:ListBucket" in actions:
                prefixes = statement["Condition"]["StringLike"]["s3:prefix"]
                assert prefixes and all(p not in ("*", "") for p in prefixes), prefixes


def every_resource_tagged(declared: list[Declared], expected: Mapping[str, str]) -> None:
    """Every resource whose type takes tags carries the bucket, repo, run and user tags with
    these values (instances also on their volumes).
    Broken by: dropping the run tag from one resource."""
    taggable = [d for d in declared if d.custom and _takes_tags(d.type)]
    assert taggable, "no taggable resource"
    for resource in taggable:
        tags = resource.inputs.get("tags") or {}
        for key in tagging.REQUIRED:
            assert tags.get(key) == expected[key], f"{resource.name}: {key}={tags.get(key)}"
        if resource.type.endswith(":Instance"):
            volume = resource.inputs.get("volumeTags") or {}
            assert all(volume.get(k) == expected[k] for k in tagging.REQUIRED), resource.name


def bucket_encrypted(declared: list[Declared], bucket: str) -> None:
    """The bucket encrypts by default (SSE-S3 or SSE-KMS).
    Broken by: removing the encryption configuration."""
    configs = [d for d in of_type(declared, ":BucketServerSideEncryptionConfiguration")]
    assert configs, "no default encryption"
    rules = configs[0].inputs["rules"]
    algorithm = rules[0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"]
    assert algorithm in ("AES256", "aws:kms"), algorithm


def bucket_versioned(declared: list[Declared]) -> None:
    """Versioning is on. Broken by: status "Suspended"."""
    versioning = of_type(declared, ":BucketVersioning")
    assert versioning, "no versioning"
    assert versioning[0].inputs["versioningConfiguration"]["status"] == "Enabled"


def public_access_blocked(declared: list[Declared]) -> None:
    """All four public access blocks are on, and ACLs are disabled.
    Broken by: restrictPublicBuckets set to False."""
    blocks = of_type(declared, ":BucketPublicAccessBlock")
    assert blocks, "no public access block"
    for key in (
        "blockPublicAcls",
        "blockPublicPolicy",
        "ignorePublicAcls",
        "restrictPublicBuckets",
    ):
        assert blocks[0].inputs.get(key) is True, f"{key} is not on"
    ownership = of_type(declared, ":BucketOwnershipControls")
    assert ownership and ownership[0].inputs["rule"]["objectOwnership"] == "BucketOwnerEnforced"


def tls_only(declared: list[Declared], bucket: str) -> None:
    """The bucket policy denies every request not made over TLS, on the bucket and objects.
    Broken by: the condition's value flipped to "true"."""
    policies = of_type(declared, ":BucketPolicy")
    assert policies, "no bucket policy"
    arn = f"arn:aws:s3:::{bucket}"
    statements = json.loads(policies[0].inputs["policy"])["Statement"]
    deny = [
        s
        for s in statements
        if s["Effect"] == "Deny"
        and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
    ]
    assert deny, "no statement denies insecure transport"
    assert set(_as_list(deny[0]["Resource"])) == {arn, f"{arn}/*"}
    assert deny[0]["Principal"] == "*" and deny[0]["Action"] == "s3:*"


def _takes_tags(type_token: str) -> bool:
    """Whether the pulumi_aws resource class of this type accepts ``tags``."""
    _, module, name = type_token.split(":")
    package = module.split("/")[0]
    cls = getattr(importlib.import_module(f"pulumi_aws.{package}"), name)
    return "tags" in inspect.signature(cls._internal_init).parameters


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
