"""``create_or_adopt_bootstrap`` (what `dstack config --backend aws` calls) on moto S3, with
``FakeAutomation`` in place of Pulumi; the program it hands over is rendered through the mock
runtime to see what it would declare."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from dstack import state
from dstack.compute.aws import engine as engine_module
from dstack.compute.aws import plan
from dstack.compute.aws.bootstrap import BOOTSTRAP_STACK, create_or_adopt_bootstrap
from dstack.errors import ComputeError
from dstack.storage import open_storage
from dstack.store_config import S3StoreConfig
from tests.compute.aws.doubles import FakeAutomation
from tests.moto_server import MotoServer, empty_and_delete_bucket

OUTPUTS = {
    "bucket_name": "x",
    "bucket_arn": "arn:aws:s3:::x",
    "runner_role_arn": "arn:aws:iam::123456789012:role/dstack-runner-abc",
    "runner_role_name": "dstack-runner-abc",
    "instance_profile_name": "dstack-runner-def",
}


@pytest.fixture
def name(moto_server: MotoServer) -> Iterator[str]:
    bucket = f"dstack-boot-{uuid.uuid4().hex[:12]}"
    yield bucket
    client = moto_server.client()
    try:
        empty_and_delete_bucket(client, bucket)
    except Exception:
        pass


def store(moto: MotoServer, bucket: str) -> S3StoreConfig:
    return S3StoreConfig(bucket=bucket, region="us-east-1", endpoint_url=moto.endpoint_url)


def declared(automation: FakeAutomation) -> dict[str, Any]:
    rendering = plan.render(
        automation.programs[BOOTSTRAP_STACK], project="dstack", stack="bootstrap"
    )
    return {r.type.rsplit(":", 1)[1]: r for r in rendering.cloud_resources}


def test_creates_the_bucket_then_adopts_it_into_the_stack(
    moto_server: MotoServer, name: str, automation: FakeAutomation
) -> None:
    automation.outputs = dict(OUTPUTS)
    config = store(moto_server, name)
    result = create_or_adopt_bootstrap(
        config, region="us-east-1", driver=automation.driver(_workspace(config)),
        s3_client=moto_server.client(),
    )  # fmt: skip
    assert result.created_bucket is True
    moto_server.client().head_bucket(Bucket=name)  # it exists now
    assert automation.calls() == ["open", "preview", "up"]
    resources = declared(automation)
    assert resources["Bucket"].import_id == name  # created or found, the stack adopts it
    assert resources["BucketVersioning"].inputs["versioningConfiguration"]["status"] == "Enabled"
    section = result.config_section("us-east-1")
    assert (
        section["type"] == "aws"
        and section["bootstrap"]["instance_profile_name"] == "dstack-runner-def"
    )
    assert section["bootstrap"]["backend_url"].startswith(f"s3://{name}/pulumi?region=us-east-1")
    storage = open_storage(config)
    recorded = json.loads(storage.get(state.bootstrap_infra_key("up")))
    assert recorded["ok"] and recorded["outputs"] == OUTPUTS


def test_adopting_keeps_the_existing_policy_and_kms_key(
    moto_server: MotoServer, name: str, automation: FakeAutomation
) -> None:
    client = moto_server.client()
    client.create_bucket(Bucket=name)
    theirs = {"Sid": "TeamRead", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
              "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{name}/*"}  # fmt: skip
    client.put_bucket_policy(
        Bucket=name, Policy=json.dumps({"Version": "2012-10-17", "Statement": [theirs]})
    )
    client.put_bucket_encryption(
        Bucket=name,
        ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": {
            "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/team"}}]},
    )  # fmt: skip
    config = store(moto_server, name)
    result = create_or_adopt_bootstrap(
        config, region="us-east-1", driver=automation.driver(_workspace(config)), s3_client=client
    )
    assert result.created_bucket is False and result.kept_policy_statements == 1
    resources = declared(automation)
    statements = json.loads(resources["BucketPolicy"].inputs["policy"])["Statement"]
    assert statements[0] == theirs and statements[1]["Sid"] == "DenyInsecureTransport"
    default = resources["BucketServerSideEncryptionConfiguration"].inputs["rules"][0]
    assert default["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"] == "alias/team"


def test_without_the_engine_nothing_is_created(
    moto_server: MotoServer, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "engine_path", lambda: None)
    with pytest.raises(ComputeError, match="Pulumi engine is not installed"):
        create_or_adopt_bootstrap(
            store(moto_server, name), region="us-east-1", s3_client=moto_server.client()
        )
    assert name not in [b["Name"] for b in moto_server.client().list_buckets()["Buckets"]]


def test_someone_elses_bucket_is_refused(automation: FakeAutomation) -> None:
    from botocore.exceptions import ClientError

    class Forbidden:
        def head_bucket(self, **kwargs: Any) -> None:
            raise ClientError({"Error": {"Code": "403", "Message": "Forbidden"}}, "HeadBucket")

    config = S3StoreConfig(bucket="taken", region="us-east-1")
    with pytest.raises(ComputeError, match="exists but these credentials cannot use it"):
        create_or_adopt_bootstrap(
            config, region="us-east-1", driver=automation.driver(_workspace(config)),
            s3_client=Forbidden(),
        )  # fmt: skip
    assert automation.calls() == []


def _workspace(config: S3StoreConfig) -> Any:
    from dstack.compute.aws.config import state_backend_url
    from dstack.compute.aws.driver import Workspace

    return Workspace("dstack", state_backend_url(config, "us-east-1"), "us-east-1")


def test_a_created_bucket_gets_lifecycle_rules_and_its_tags(
    moto_server: MotoServer, name: str, automation: FakeAutomation
) -> None:
    automation.outputs = dict(OUTPUTS)
    config = store(moto_server, name)
    create_or_adopt_bootstrap(
        config, region="us-east-1", driver=automation.driver(_workspace(config)),
        s3_client=moto_server.client(),
    )  # fmt: skip
    resources = declared(automation)
    assert "BucketLifecycleConfiguration" in resources
    assert resources["Bucket"].inputs["tags"]["dstack:bucket"] == name


def test_an_adopted_bucket_keeps_its_own_lifecycle_rules(
    moto_server: MotoServer, name: str, automation: FakeAutomation
) -> None:
    automation.outputs = dict(OUTPUTS)
    client = moto_server.client()
    client.create_bucket(Bucket=name)
    rule = {"ID": "team-archive", "Status": "Enabled", "Filter": {"Prefix": "logs/"},
            "Expiration": {"Days": 365}}  # fmt: skip
    client.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": [rule]})
    said: list[str] = []
    config = store(moto_server, name)
    create_or_adopt_bootstrap(
        config, region="us-east-1", driver=automation.driver(_workspace(config)),
        s3_client=client, reporter=said.append,
    )  # fmt: skip
    assert "BucketLifecycleConfiguration" not in declared(automation)
    assert any("lifecycle rules of its own" in line for line in said)


@pytest.mark.parametrize("failure", ["error", "ctrl-c"])
def test_a_failed_update_leaves_the_existing_bootstrap(
    moto_server: MotoServer, name: str, automation: FakeAutomation, failure: str
) -> None:
    """The bootstrap is shared (the bucket policy with a team's statements, the runner role):
    a failed or interrupted update must never destroy it, and says so."""
    from tests.compute.aws.doubles import EngineError

    config = store(moto_server, name)
    automation.outputs = dict(OUTPUTS)
    create_or_adopt_bootstrap(
        config, region="us-east-1", driver=automation.driver(_workspace(config)),
        s3_client=moto_server.client(),
    )  # fmt: skip
    automation.fail("up", EngineError("AccessDenied: s3:PutBucketPolicy") if failure == "error"
                    else KeyboardInterrupt())  # fmt: skip
    with pytest.raises(ComputeError) as caught:
        create_or_adopt_bootstrap(
            config, region="us-east-1", driver=automation.driver(_workspace(config)),
            s3_client=moto_server.client(),
        )  # fmt: skip
    message = str(caught.value)
    assert "left in place" in message and "destroyed" not in message
    assert "destroy" not in automation.calls() and "remove" not in automation.calls()
    recorded = json.loads(open_storage(config).get(state.bootstrap_infra_key("up")))
    assert recorded["ok"] is False
