"""Names of the stack outputs, shared by the programs that export them and the code that reads
them (``dstack.compute.aws``). Renaming one here renames it on both sides."""

from __future__ import annotations

# bootstrap stack
BUCKET_NAME = "bucket_name"
BUCKET_ARN = "bucket_arn"
#: the ARN of the bucket's customer-managed KMS key (absent with SSE-S3)
BUCKET_KMS_KEY_ARN = "bucket_kms_key_arn"
RUNNER_ROLE_ARN = "runner_role_arn"
RUNNER_ROLE_NAME = "runner_role_name"
INSTANCE_PROFILE_NAME = "instance_profile_name"

# run stack
SECURITY_GROUP_ID = "security_group_id"
ROLE_NAME = "role_name"
#: a mapping of job index (as a string) to the instance id of that job
INSTANCE_IDS = "instance_ids"
#: a mapping of job index (as a string) to the instance's public IP address
PUBLIC_IPS = "public_ips"
