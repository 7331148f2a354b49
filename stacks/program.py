"""The two stack programs: a component each, and the outputs other code reads by name.

``stacks/__main__.py`` calls these with arguments read from ``pulumi.Config`` (for a platform
team's ``pulumi preview``); dstack calls them as inline programs of the Automation API, and
through the mock runtime for offline plans — the same code in all three cases.
"""

from __future__ import annotations

import pulumi

from stacks import outputs
from stacks.bootstrap import Bootstrap, BootstrapArgs
from stacks.run import RunStack, RunStackArgs

BOOTSTRAP_NAME = "dstack"


def run_program(args: RunStackArgs) -> RunStack:
    """Declare one run's stack and export its outputs."""
    stack = RunStack(args.run_name, args)
    pulumi.export(outputs.SECURITY_GROUP_ID, stack.security_group_id)
    pulumi.export(outputs.INSTANCE_IDS, stack.instance_ids)
    pulumi.export(outputs.PUBLIC_IPS, stack.public_ips)
    if stack.role_name is not None:
        pulumi.export(outputs.ROLE_NAME, stack.role_name)
    return stack


def bootstrap_program(args: BootstrapArgs) -> Bootstrap:
    """Declare the bootstrap stack and export its outputs."""
    bootstrap = Bootstrap(BOOTSTRAP_NAME, args)
    pulumi.export(outputs.BUCKET_NAME, bootstrap.bucket_name)
    pulumi.export(outputs.BUCKET_ARN, bootstrap.bucket_arn)
    if bootstrap.bucket_kms_key_arn is not None:
        pulumi.export(outputs.BUCKET_KMS_KEY_ARN, bootstrap.bucket_kms_key_arn)
    pulumi.export(outputs.RUNNER_ROLE_ARN, bootstrap.runner_role_arn)
    pulumi.export(outputs.RUNNER_ROLE_NAME, bootstrap.runner_role_name)
    pulumi.export(outputs.INSTANCE_PROFILE_NAME, bootstrap.instance_profile_name)
    return bootstrap
