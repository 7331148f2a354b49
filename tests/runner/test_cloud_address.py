"""The address a cloud job's ports are reached at: the instance's, from its metadata service,
not the instance's own host name (``ip-172-31-…`` resolves inside its VPC only)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from dstack.models import JobSpec, JobState, RepoSnapshot
from dstack.runner.__main__ import _watch_machine
from dstack.services import apps
from dstack.storage.local import LocalStorage
from tests.compute.aws.cloud_harness import FakeImds

REPO = RepoSnapshot(repo_id="github.com/acme/mnist", code_key="codes/x.tar.gz")


@pytest.fixture
def imds(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeImds]:
    server = FakeImds()
    monkeypatch.setenv("DSTACK_IMDS_ENDPOINT", server.url)
    try:
        yield server
    finally:
        server.close()


def _ports_url(imds: FakeImds, tmp_path: Path) -> tuple[str | None, str]:
    spec = JobSpec(run_name="r", job_index=0, workflow="lab", provider="bash", repo=REPO,
                   submitted_at=1.0)  # fmt: skip
    agent = SimpleNamespace(
        storage=LocalStorage(tmp_path), spec=spec, machine_request=None,
        state=JobState(hostname=socket.gethostname(), ports=[8888]),
    )  # fmt: skip
    watch = _watch_machine(agent, None, None)
    watch.stop()
    watch.join(timeout=10)
    [endpoint] = apps.endpoints(agent.storage, spec, agent.state)
    return agent.state.hostname, endpoint.url


def test_a_cloud_job_is_reached_at_its_instance_public_address(
    imds: FakeImds, tmp_path: Path
) -> None:
    imds.public_ipv4, imds.local_ipv4 = "198.51.100.7", "172.31.5.6"
    hostname, url = _ports_url(imds, tmp_path)
    assert hostname == "198.51.100.7"
    assert url == "http://198.51.100.7:8888"


def test_an_instance_without_a_public_address_is_reached_at_its_private_one(
    imds: FakeImds, tmp_path: Path
) -> None:
    imds.local_ipv4 = "172.31.5.6"
    assert _ports_url(imds, tmp_path) == ("172.31.5.6", "http://172.31.5.6:8888")
