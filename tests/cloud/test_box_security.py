"""What a cloud job can reach, in the box: with its run role's credentials (scenario f), and
through the ports it opens (scenario i). Each through the `dstack` CLI, on an instance booted
from its exact user data (see ``conftest`` and ``box``)."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dstack.compute.aws.config import PORT_BASE
from tests.cloud.calls import PROBE_AGENT
from tests.cloud.conftest import BOUNDARY, BUCKET, Box
from tests.cloud.test_box_runs import BOOT_TIMEOUT, leftovers
from tests.e2e.cli import Dstack

pytestmark = pytest.mark.slow

PROBE = Path(__file__).resolve().parent / "probe.py"
OTHER_REPO = "github.com/someone-else/their-model"
OTHER_ROLE = "another-run-runner-0000000000000000000000"
OTHER_OBJECTS = {
    f"repos/{OTHER_REPO}/{key}": b"theirs"
    for key in ("runs/r/run.json", "runs/r/jobs/0/spec.json", "runs/r/jobs/0/logs/00000000.log",
                "runs/r/jobs/0/artifacts/a.txt", "secrets/TOKEN")
} | {"code/trees/other.json.gz": b"theirs", "dist/planted/dstack-0-py3-none-any.whl": b"real"}  # fmt: skip


@pytest.fixture
def another_repo_and_run(box: Box) -> Iterator[None]:
    """Another repo's records in the bucket, and another run's role, made by the admin."""
    s3, iam = box.client("s3"), box.client("iam")
    for key, body in OTHER_OBJECTS.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
             "Principal": {"Service": "ec2.amazonaws.com"}}]}  # fmt: skip
    iam.create_role(RoleName=OTHER_ROLE, Path="/dstack/", AssumeRolePolicyDocument=json.dumps(trust),
                    PermissionsBoundary=BOUNDARY)  # fmt: skip
    try:
        yield
    finally:
        iam.delete_role(RoleName=OTHER_ROLE)
        s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in OTHER_OBJECTS]})


def test_f_a_job_with_its_run_role_cannot_reach_beyond_its_run(
    cli: Dstack, box: Box, repo_factory: Any, another_repo_and_run: None
) -> None:
    command = f"/opt/dstack/venv/bin/python probe.py {BUCKET} {OTHER_REPO} {OTHER_ROLE} {BOUNDARY}"
    repo: Path = repo_factory({
        ".dstack/workflows.yaml": (
            "workflows:\n  - name: probe\n    provider: bash\n    commands:\n"
            f"      - {command}\n"
        ),
        "probe.py": PROBE.read_text(),
    })  # fmt: skip
    before = leftovers(box)
    start = len(box.recorder.calls) if box.recorder else 0
    result = cli("run", "probe", cwd=repo, timeout=BOOT_TIMEOUT)
    assert result.code == 0, f"{result.err[-3000:]}\n{result.out[-3000:]}"
    identity = re.search(r"^PROBE-IDENTITY (\S+)$", result.out, re.M)
    assert identity and ":assumed-role/" in identity[1], result.out  # the run role, from IMDS
    role = identity[1].split(":assumed-role/")[1].split("/")[0]
    probes = [json.loads(line[6:]) for line in result.out.splitlines() if line.startswith("PROBE ")]
    assert len(probes) >= 30, result.out
    wrong = [p for p in probes if p["outcome"] != p["expect"]]
    assert wrong == [], json.dumps(wrong, indent=1)

    # what the allowed call wrote is there; what the denied ones aimed at is untouched
    run = result.err.split("Run ", 1)[1].split()[0]
    s3 = box.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert any(k.endswith("/artifacts/probe/own.txt") and f"/runs/{run}/" in k for k in keys)
    for key, body in OTHER_OBJECTS.items():
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body, key
    records = [k for k in keys if k.startswith("infra/runs/") and f"/{run}/" in k]
    assert records, keys
    for key in records:
        assert b"written by the job" not in s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert "planted" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="infra/stacks/").get(
        "Contents", [{"Key": ""}])[0]["Key"]  # fmt: skip

    # the box judged each of the job's attempts against the run role's real policy (its
    # conditions and resources, which moto alone does not check) and the boundary
    assert box.recorder is not None
    attempts = [c for c in box.recorder.calls[start:] if PROBE_AGENT in c.agent]
    assert len(attempts) >= len(probes), len(attempts)
    assert [c.action for c in attempts if c.unmodelled] == []
    assert all(c.role == role for c in attempts), {c.caller for c in attempts}
    # the listings outside its prefixes: moto lets them through, the real policy does not
    assert any(c.real_denied and "s3:prefix" in c.real_denied for c in attempts), attempts
    _nothing_left(box, before)


SERVE = """\
import http.server, os

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        client = self.client_address[0]
        print(f"request from {client} for {self.path}", flush=True)
        body = f"served by the job to {client}\\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.server.stopping = self.path == "/stop"

server = http.server.HTTPServer(("0.0.0.0", int(os.environ["PORT_0"])), Handler)
server.stopping = False
print("serving", flush=True)
while not server.stopping:
    server.handle_request()
"""
CLIENT = "127.0.0.1"  # the client's address as the instance sees it: the box is on loopback


def test_i_a_port_answers_from_the_client_and_opens_only_to_it(
    cli: Dstack, box: Box, repo_factory: Any
) -> None:
    repo: Path = repo_factory({
        ".dstack/workflows.yaml": (
            "workflows:\n  - name: serve\n    provider: bash\n    ports: 1\n"
            "    commands:\n      - python3 serve.py\n"
        ),
        "serve.py": SERVE,
    })  # fmt: skip
    before = leftovers(box)
    cli.env["DSTACK_CALLER_IP"] = CLIENT  # checkip.amazonaws.com is out of this machine's reach
    process = cli.popen("run", "serve", cwd=repo)
    lines: list[str] = []  # stderr: dstack's lines, the address among them
    output: list[str] = []  # stdout: the job's
    readers = [
        threading.Thread(target=lambda into=into, stream=stream: into.extend(
            line.decode(errors="replace") for line in stream), daemon=True)
        for into, stream in ((lines, process.stderr), (output, process.stdout))
    ]  # fmt: skip
    for reader in readers:
        reader.start()
    try:
        url = _printed_url(lines, process)
        instance = _instance_of(box, repo_run(lines))
        # the URL names the instance's address (its public one), not its host name
        host, port = url.split("//", 1)[1].split("/")[0].rsplit(":", 1)
        assert host == instance.get("PublicIpAddress", instance["PrivateIpAddress"]), url
        assert int(port) == PORT_BASE
        # the box has no route to EC2's addresses: the instance's address is mapped to loopback
        local = url.replace(f"//{host}:", f"//{CLIENT}:")
        status, body = _get_until(local, deadline=time.monotonic() + 300)
        assert (status, body) == (200, f"served by the job to {CLIENT}\n")

        # only from the client's address: the run's group lets in exactly its /32, on the port
        [group] = [box.client("ec2").describe_security_groups(GroupIds=[g["GroupId"]])[
            "SecurityGroups"][0] for g in instance["SecurityGroups"]]  # fmt: skip
        ingress = group["IpPermissions"]
        assert ingress == [{
            "IpProtocol": "tcp", "FromPort": PORT_BASE, "ToPort": PORT_BASE,
            "IpRanges": [{"CidrIp": f"{CLIENT}/32"}],
            "Ipv6Ranges": [], "PrefixListIds": [], "UserIdGroupPairs": [],
        }], ingress  # fmt: skip
        assert "0.0.0.0/0" not in json.dumps(ingress) and "::/0" not in json.dumps(ingress)
        _get(local.split("?")[0].rstrip("/") + "/stop")
        process.wait(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
    for reader in readers:
        reader.join(timeout=10)
    assert process.returncode == 0, "".join(lines)[-3000:]
    # the server saw the requests come from the address its group lets in
    assert f"request from {CLIENT} for /" in "".join(output), "".join(output)[-3000:]
    _nothing_left(box, before)


def _printed_url(lines: list[str], process: Any, timeout: float = BOOT_TIMEOUT) -> str:
    """The URL `dstack run` prints for the port (``PORT_0 will be at: http://…``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(lines):
            found = re.search(r"PORT_0 (?:will be at|is ready): (http://\S+)", line)
            if found:
                return found[1]
        assert process.poll() is None, "".join(lines)[-3000:]
        time.sleep(0.5)
    raise AssertionError("no address printed:\n" + "".join(lines)[-3000:])


def repo_run(lines: list[str]) -> str:
    text = "".join(lines)
    return text.split("Run ", 1)[1].split()[0] if "Run " in text else ""


def _instance_of(box: Box, run: str) -> dict[str, Any]:
    found = box.client("ec2").describe_instances(
        Filters=[{"Name": "tag:dstack:run", "Values": [run]}]
    )["Reservations"]
    instances = [i for r in found for i in r["Instances"] if i["State"]["Name"] == "running"]
    assert len(instances) == 1, (run, found)
    return instances[0]  # type: ignore[no-any-return]


def _get_until(url: str, deadline: float) -> tuple[int, str]:
    """The first answer at ``url`` (the job may print its address before it serves)."""
    while True:
        try:
            return _get(url)
        except OSError:
            assert time.monotonic() < deadline, f"{url} never answered"
            time.sleep(1)


def _nothing_left(box: Box, before: dict[str, list[str]], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while leftovers(box, before) and time.monotonic() < deadline:
        time.sleep(1)
    assert leftovers(box, before) == {}


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode(errors="replace")
