"""The account's vCPU quotas through `dstack run` as a user types it: a run that cannot fit is
refused at submit in one line naming the quota and how to raise it, with nothing written; a
policy that may not read quotas gets one warning and the run goes on (here, to a store that
does not answer). EC2 is moto; Service Quotas is ``tests.quotas_standin`` (moto serves no EC2 vCPU
quotas), reached through ``AWS_ENDPOINT_URL_SERVICE_QUOTAS`` as boto3 reads it. The quotas are
checked once the engine is found (nothing is sent to AWS while the engine is missing): the
engine here is a stand-in ``pulumi`` that is found and never run (the engine tier runs the
real one)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dstack.storage.local import LocalStorage
from tests.e2e.cli import Dstack
from tests.e2e.test_aws_cli import no_aws_env, write_config
from tests.e2e.test_costs import AWS
from tests.moto_server import DUMMY_AWS_ENV, MotoServer
from tests.quotas_standin import QuotasStandIn, start_quotas

WORKFLOWS = """\
workflows:
  - name: t4
    commands: [nvidia-smi]
    resources: {gpu: {name: T4}}
"""


@pytest.fixture
def repo(repo_factory: Any) -> Path:
    return repo_factory({".dstack/workflows.yaml": WORKFLOWS})  # type: ignore[no-any-return]


@pytest.fixture
def standin() -> Iterator[QuotasStandIn]:
    server = start_quotas({"L-DB2E81BA": 0})  # Running On-Demand G and VT instances
    yield server
    server.stop()


def cli_for(home: Path, moto_server: MotoServer, standin: QuotasStandIn) -> Dstack:
    write_config(home, AWS)
    # the stand-in engine: found in $PULUMI_HOME/bin; these runs stop before it would run
    engine = home / "pulumi-home" / "bin" / "pulumi"
    engine.parent.mkdir(parents=True)
    engine.write_text("#!/bin/sh\necho 'a stand-in, not the Pulumi CLI' >&2\nexit 1\n")
    engine.chmod(0o755)
    # moto builds its EC2 region on the first call, which can outlast the CLI's short read
    # timeout on a loaded machine: made here, with boto3's default timeout
    moto_server.client("ec2").describe_vpcs()
    env = {
        **no_aws_env(home),
        **DUMMY_AWS_ENV,
        "AWS_ENDPOINT_URL_EC2": moto_server.endpoint_url,
        "AWS_ENDPOINT_URL_SERVICE_QUOTAS": standin.endpoint_url,
        "PULUMI_HOME": str(home / "pulumi-home"),
    }
    return Dstack(home, env, whole=True)


def test_a_run_over_the_quota_is_refused_naming_it(
    dstack_home: Path, repo: Path, moto_server: MotoServer, standin: QuotasStandIn
) -> None:
    cli = cli_for(dstack_home, moto_server, standin)
    result = cli("run", "t4", cwd=repo)
    assert result.code == 1
    assert result.err.strip().splitlines() == [
        "Error: workflow 't4' does not fit the account's vCPU quotas in us-east-1: g4dn.xlarge "
        "on-demand needs 4 vCPUs of quota L-DB2E81BA (Running On-Demand G and VT instances), "
        "which allows 0 with 0 in use or asked for by this run; raise it in the Service Quotas "
        "console (https://console.aws.amazon.com/servicequotas/home/services/ec2/quotas/"
        "L-DB2E81BA) or with `aws service-quotas request-service-quota-increase --service-code "
        "ec2 --quota-code L-DB2E81BA --desired-value 4 --region us-east-1`"
    ]
    assert standin.asked == ["L-DB2E81BA"]
    assert not (dstack_home / "store").exists() or not list(
        LocalStorage(dstack_home / "store").list_objects("")
    )


def test_quotas_that_cannot_be_read_are_warned_about_and_the_run_goes_on(
    dstack_home: Path, repo: Path, moto_server: MotoServer, standin: QuotasStandIn
) -> None:
    standin.denied = True
    cli = cli_for(dstack_home, moto_server, standin)
    result = cli("run", "t4", cwd=repo)
    assert result.code == 1
    lines = result.err.strip().splitlines()
    assert lines[0].startswith(
        "warning: the account's vCPU quotas could not be read (AccessDeniedException"
    )
    assert standin.asked  # it was asked, and answered no
    # the run went on: to the store (here on a port nothing listens on)
    assert lines[-1].startswith("Error: the S3 state store s3://acme-dstack-state"), lines


def test_infra_names_the_offer_each_instance_was_created_on(
    dstack_home: Path, repo_factory: Any
) -> None:
    """The plan record of the try that succeeded names its offer (after a walk, not the
    first one): `dstack infra RUN` shows it."""
    from dstack import state
    from dstack.models import InfraRecord
    from tests.e2e.test_aws_cli import WORKFLOWS as ECHO

    repo = repo_factory({".dstack/workflows.yaml": ECHO})
    cli = Dstack(dstack_home)
    run = cli.run_detached("echo", cwd=repo)
    cli.wait_status(run, repo, lambda s: s == "done")
    offer = {"instance_type": "g4dn.xlarge", "market": "spot",
             "availability_zone": "us-east-1b", "price_per_hour": 0.21}  # fmt: skip
    plan = InfraRecord(kind="plan", stack=run, at=1.0, offers={"0": offer})
    state.write_infra_record(LocalStorage(dstack_home / "store"), "github.com/acme/mnist", run,
                             plan)  # fmt: skip
    result = cli("infra", run, cwd=repo)
    assert result.code == 0, result.err
    assert "  job 0 on g4dn.xlarge spot in us-east-1b at $0.21/h" in result.out.splitlines()
