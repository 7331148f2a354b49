"""The bootstrap stack: the state bucket and the runner role, created once per bucket.

``dstack config --backend aws`` creates (or adopts) it: the state bucket with its protections
and lifecycle rules, and the shared runner role with its instance profile. The bucket is created
outside Pulumi and imported, and every one of its settings is ``retain_on_delete``: destroying
this stack never deletes the bucket. What each setting is and why: docs/design/stacks.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from stacks import policies
from stacks import tags as tagging


@dataclass(frozen=True)
class BootstrapArgs:
    """What the bootstrap stack needs to know."""

    bucket_name: str
    #: import an existing bucket into the stack instead of creating it
    adopt_bucket: bool = False
    #: SSE-KMS key id or ARN for default encryption; None means SSE-S3 (AES256)
    kms_key_id: str | None = None
    #: statements of an adopted bucket's existing policy, kept beside dstack's
    kept_policy_statements: Sequence[Mapping[str, Any]] = ()
    #: the store's key prefix in the bucket ("" for the whole bucket)
    store_prefix: str = ""
    #: dstack created the bucket a moment ago (so its tags are dstack's to set)
    created_bucket: bool = False
    #: declare the lifecycle rules (False when an adopted bucket has its own)
    lifecycle: bool = True
    noncurrent_days: int = 30
    multipart_days: int = 7
    #: IAM fences for the shared runner role (see ``stacks.policies.check_role_fences``)
    role_path: str | None = None
    permissions_boundary: str | None = None
    partition: str = "aws"
    #: extra tags a platform team wants on every resource (dstack's own always win)
    extra_tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.bucket_name:
            raise ValueError("bootstrap: bucket_name is required")
        if self.noncurrent_days < 1 or self.multipart_days < 1:
            raise ValueError("bootstrap: lifecycle days must be at least 1")
        policies.check_role_fences(self.role_path, None, self.permissions_boundary)


class Bootstrap(pulumi.ComponentResource):
    """The state bucket with its security settings, and the shared runner role."""

    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    bucket_kms_key_arn: pulumi.Output[str] | None
    runner_role_arn: pulumi.Output[str]
    runner_role_name: pulumi.Output[str]
    instance_profile_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: BootstrapArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("dstack:aws:Bootstrap", name, None, opts)
        tags = tagging.merged(
            tagging.bootstrap_tags(args.bucket_name, args.store_prefix), args.extra_tags
        )
        child = pulumi.ResourceOptions(parent=self)
        bucket = self._bucket(name, args, tags)
        # destroying this stack by hand leaves the bucket, and leaves it protected
        bucket_child = pulumi.ResourceOptions(
            parent=self, depends_on=[bucket], retain_on_delete=True
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=bucket.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=bucket_child,
        )
        access_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=bucket_child,
        )
        aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(
                status="Enabled"
            ),
            opts=bucket_child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket.id,
            rules=[_encryption_rule(args.kms_key_id)],
            opts=bucket_child,
        )
        aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=bucket.id,
            policy=bucket.arn.apply(
                lambda arn: json.dumps(
                    policies.tls_only_bucket_policy(arn, args.kept_policy_statements)
                )
            ),
            # S3 refuses a new policy while public access settings are being changed
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[access_block], retain_on_delete=True
            ),
        )
        if args.lifecycle:
            _lifecycle(name, args, bucket, bucket_child)
        self.bucket_kms_key_arn = None
        if args.kms_key_id:
            # an id, an alias or an ARN: IAM grants need the key's own ARN
            self.bucket_kms_key_arn = aws.kms.get_key_output(key_id=args.kms_key_id).arn
        role = aws.iam.Role(
            f"{name}-runner",
            description=f"dstack runners of s3://{args.bucket_name}",
            assume_role_policy=json.dumps(policies.ec2_trust_policy()),
            path=args.role_path,
            permissions_boundary=args.permissions_boundary,
            tags=tags,
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-runner-store",
            role=role.id,
            policy=pulumi.Output.all(bucket.arn, self.bucket_kms_key_arn).apply(
                lambda values: policies.compact_json(
                    policies.store_wide_policy(values[0], args.store_prefix, kms_key_arn=values[1])
                )
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role]),
        )
        profile = aws.iam.InstanceProfile(
            f"{name}-runner", role=role.name, path=args.role_path, tags=tags, opts=child
        )
        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.runner_role_arn = role.arn
        self.runner_role_name = role.name
        self.instance_profile_name = profile.name
        self.register_outputs(
            {
                "bucket_name": self.bucket_name,
                "bucket_arn": self.bucket_arn,
                "bucket_kms_key_arn": self.bucket_kms_key_arn,
                "runner_role_arn": self.runner_role_arn,
                "instance_profile_name": self.instance_profile_name,
            }
        )

    def _bucket(self, name: str, args: BootstrapArgs, tags: dict[str, str]) -> aws.s3.Bucket:
        opts = pulumi.ResourceOptions(
            parent=self,
            retain_on_delete=True,
            # S3 replaces a bucket's whole tag set: never clobber an adopted bucket's tags
            ignore_changes=["forceDestroy"] if args.created_bucket else ["tags", "forceDestroy"],
            import_=args.bucket_name if args.adopt_bucket else None,
        )
        return aws.s3.Bucket(
            f"{name}-state",
            bucket=args.bucket_name,
            force_destroy=False,
            tags=tags,
            opts=opts,
        )


def _lifecycle(
    name: str, args: BootstrapArgs, bucket: aws.s3.Bucket, opts: pulumi.ResourceOptions
) -> aws.s3.BucketLifecycleConfiguration:
    """Expire noncurrent versions, remove expired delete markers, abort stale multipart
    uploads — under the store's prefix only, so other stores of the bucket keep their say."""
    prefix = f"{args.store_prefix.strip('/')}/" if args.store_prefix.strip("/") else ""
    lc = aws.s3
    return lc.BucketLifecycleConfiguration(
        f"{name}-lifecycle",
        bucket=bucket.id,
        rules=[
            lc.BucketLifecycleConfigurationRuleArgs(
                id="dstack-old-versions",
                status="Enabled",
                filter=lc.BucketLifecycleConfigurationRuleFilterArgs(prefix=prefix),
                noncurrent_version_expiration=lc.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                    noncurrent_days=args.noncurrent_days
                ),
                expiration=lc.BucketLifecycleConfigurationRuleExpirationArgs(
                    expired_object_delete_marker=True
                ),
                abort_incomplete_multipart_upload=lc.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                    days_after_initiation=args.multipart_days
                ),
            )
        ],
        opts=opts,
    )


def _encryption_rule(
    kms_key_id: str | None,
) -> aws.s3.BucketServerSideEncryptionConfigurationRuleArgs:
    if kms_key_id:
        default = aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
            sse_algorithm="aws:kms", kms_master_key_id=kms_key_id
        )
        return aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
            apply_server_side_encryption_by_default=default, bucket_key_enabled=True
        )
    default = (
        aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
            sse_algorithm="AES256"
        )
    )
    return aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
        apply_server_side_encryption_by_default=default
    )
