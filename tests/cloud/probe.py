"""What a job holding its run role's credentials tries, in scenario f (``test_box_security``).

Run by the job's own commands on the instance, with the boto3 of the runner's virtualenv (a job
on a real instance would ``pip install boto3``, or use the ``aws`` CLI: the calls are the same).
The credentials come from the instance's metadata service, as boto3 finds them on EC2. The box
has no link-local metadata address and no AWS: the two endpoints are read from the environment
the stand-in cloud-init gave the boot script (``/proc/1/environ``), where a real instance has
fixed addresses.

Each attempt prints one line ``PROBE {"name", "expect", "outcome", "detail"}``: ``outcome`` is
``allowed`` or ``denied`` (an AccessDenied error); anything else is ``error``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

BUCKET, OTHER_REPO, OTHER_ROLE, BOUNDARY_ARN = sys.argv[1:5]


def _endpoints() -> None:
    """Point boto3 where a real instance's SDK goes by itself (see the module docstring)."""
    with open("/proc/1/environ", "rb") as environ:
        for item in environ.read().split(b"\0"):
            name, _, value = item.decode().partition("=")
            if name in ("AWS_ENDPOINT_URL", "AWS_EC2_METADATA_SERVICE_ENDPOINT"):
                os.environ[name] = value
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def probe(name: str, expect: str, call: Callable[[], Any]) -> None:
    try:
        call()
        outcome, detail = "allowed", ""
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        denied = code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation")
        outcome, detail = ("denied" if denied else "error"), f"{type(exc).__name__}: {exc}"
    record = {"name": name, "expect": expect, "outcome": outcome, "detail": detail[:300]}
    print("PROBE " + json.dumps(record), flush=True)


def main() -> None:
    _endpoints()
    import boto3
    from botocore.config import Config

    # the box tells these deliberate attempts from the runner's own calls by this mark
    config = Config(user_agent_extra="dstack-box-probe", retries={"max_attempts": 1})
    session = boto3.session.Session()
    identity = session.client("sts", config=config).get_caller_identity()["Arn"]
    print("PROBE-IDENTITY " + identity, flush=True)
    s3, iam, ec2, sts = (session.client(s, config=config) for s in ("s3", "iam", "ec2", "sts"))
    repo, run = os.environ["REPO_ID"], os.environ["RUN_NAME"]
    own = f"repos/{repo}/runs/{run}/"
    other = f"repos/{OTHER_REPO}/"
    role_name = identity.split("/")[1]

    def put(key: str) -> Callable[[], Any]:
        return lambda: s3.put_object(Bucket=BUCKET, Key=key, Body=b"written by the job")

    def get(key: str) -> Callable[[], Any]:
        return lambda: s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    def listing(prefix: str) -> Callable[[], Any]:
        return lambda: s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)

    # what the job may do: its own artifacts, its own records
    probe("write its own artifacts", "allowed", put(own + "jobs/0/artifacts/probe/own.txt"))
    probe("read its own spec", "allowed", get(own + "jobs/0/spec.json"))
    probe("list its own run", "allowed", listing(own))
    # its run's audit trail, outside its write scope
    for kind in ("plan", "up", "destroy"):
        key = f"infra/runs/{repo}/{run}/{kind}.json"
        probe(f"overwrite its run's {kind} record", "denied", put(key))
    probe("delete its run's plan record", "denied",
          lambda: s3.delete_object(Bucket=BUCKET, Key=f"infra/runs/{repo}/{run}/plan.json"))  # fmt: skip
    probe("list the infra records", "denied", listing("infra/"))
    # another repo's records, specs, logs, artifacts, secrets, code tree
    for what, key in [
        ("run record", "runs/r/run.json"), ("spec", "runs/r/jobs/0/spec.json"),
        ("log", "runs/r/jobs/0/logs/00000000.log"), ("artifact", "runs/r/jobs/0/artifacts/a.txt"),
        ("secret", "secrets/TOKEN"),
    ]:  # fmt: skip
        probe(f"read another repo's {what}", "denied", get(other + key))
        probe(f"overwrite another repo's {what}", "denied", put(other + key))
    probe("list another repo", "denied", listing(other))
    probe("list every repo", "denied", listing("repos/"))
    probe("read another repo's code tree", "denied", get("code/trees/other.json.gz"))
    # the bootstrap, the engine's state, the wheel the next instances install
    probe("overwrite a dstack wheel", "denied", put("dist/planted/dstack-0-py3-none-any.whl"))
    probe("read the Pulumi state", "denied", listing("pulumi/"))
    probe("write a stack record", "denied", put("infra/stacks/planted.json"))
    probe("read the bucket policy", "denied", lambda: s3.get_bucket_policy(Bucket=BUCKET))
    probe("replace the bucket policy", "denied", lambda: s3.put_bucket_policy(
        Bucket=BUCKET, Policy=json.dumps({"Version": "2012-10-17", "Statement": []})))  # fmt: skip
    probe("widen its own role", "denied", lambda: iam.put_role_policy(
        RoleName=role_name, PolicyName="more", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})))  # fmt: skip
    probe("drop its boundary", "denied",
          lambda: iam.delete_role_permissions_boundary(RoleName=role_name))  # fmt: skip
    probe("rewrite the boundary", "denied", lambda: iam.create_policy_version(
        PolicyArn=BOUNDARY_ARN, SetAsDefault=True, PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})))  # fmt: skip
    probe("read another run's role", "denied", lambda: iam.get_role(RoleName=OTHER_ROLE))
    probe("assume another run's role", "denied", lambda: sts.assume_role(
        RoleArn=f"arn:aws:iam::123456789012:role/dstack/{OTHER_ROLE}",
        RoleSessionName="job"))  # fmt: skip
    probe("list roles", "denied", lambda: iam.list_roles())
    probe("create a user", "denied", lambda: iam.create_user(UserName="planted"))
    probe("list instances", "denied", lambda: ec2.describe_instances())
    probe("launch an instance", "denied", lambda: ec2.run_instances(
        ImageId="ami-12c6146b", InstanceType="t3.micro", MinCount=1, MaxCount=1))  # fmt: skip


if __name__ == "__main__":
    main()
