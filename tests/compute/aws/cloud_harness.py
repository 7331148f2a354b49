"""Stand-ins for what only EC2 can provide, for running the cloud side end to end here.

- ``FakeImds``: the instance metadata service on 127.0.0.1, IMDSv2 only (a ``PUT`` for a
  session token first; a read without a valid token gets 401), answering the instance id and
  — once a test sets ``notice`` — a spot interruption notice;
- ``InstanceStandIn``: what EC2 does on ``up``: for each instance the run's program declares
  (rendered through Pulumi's mock runtime), it creates a matching instance in moto's EC2 (so
  EC2 calls see it, tags and all) and starts the job's runner *the way the user data starts
  it* — the user data's own command line and exported variables, in a subprocess of this
  machine, with the code of the dstack wheel the CLI stored (installed with pip, offline).
  What an instance has that this machine has not is replaced, and said so: the folders
  (``/opt/dstack/home`` → a temporary folder), the credentials (moto's dummy ones instead of
  the instance role), the metadata service (``FakeImds``). When the runner exits, the moto
  instance is terminated, as the boot script's power-off would;
- ``allowed``: a small evaluator of IAM Allow statements (actions, ``*`` in resources, the
  ``s3:prefix`` StringLike condition), enough to check each S3 request the runner made against
  the run's policy. It is no substitute for IAM's own evaluation; it checks our intent.
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from dstack.compute.aws import plan
from dstack.compute.aws.userdata import exported_environment, runner_command


class FakeImds:
    def __init__(self) -> None:
        self.instance_id = "i-00000000000000000"
        self.notice: dict[str, str] | None = None
        self.public_ipv4: str | None = None
        self.local_ipv4: str | None = None
        self.tokens_issued = 0
        self.unauthorized = 0
        self._token = "token-1"
        imds = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_PUT(self) -> None:
                if self.path == "/latest/api/token" and self.headers.get(
                    "X-aws-ec2-metadata-token-ttl-seconds"
                ):
                    imds.tokens_issued += 1
                    self._reply(200, imds._token)
                else:
                    self._reply(400, "")

            def do_GET(self) -> None:
                if self.headers.get("X-aws-ec2-metadata-token") != imds._token:
                    imds.unauthorized += 1
                    self._reply(401, "")
                elif self.path == "/latest/meta-data/instance-id":
                    self._reply(200, imds.instance_id)
                elif self.path == "/latest/meta-data/public-ipv4" and imds.public_ipv4:
                    self._reply(200, imds.public_ipv4)
                elif self.path == "/latest/meta-data/local-ipv4" and imds.local_ipv4:
                    self._reply(200, imds.local_ipv4)
                elif self.path == "/latest/meta-data/spot/instance-action" and imds.notice:
                    self._reply(200, json.dumps(imds.notice))
                else:
                    self._reply(404, "")

            def _reply(self, code: int, body: str) -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class InstanceStandIn:
    ec2: Any  # a boto3 EC2 client of the moto server
    imds: FakeImds
    wheel_dir: Path
    work: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    runners: list[subprocess.Popen[bytes]] = field(default_factory=list)
    user_data: dict[int, str] = field(default_factory=dict)
    outputs: dict[str, Any] | None = None
    started: threading.Event = field(default_factory=threading.Event)

    def on_up(self, stack: str, program: Any) -> None:
        rendering = plan.render(program, project="dstack", stack=stack)
        instance_ids = {}
        for resource in rendering.cloud_resources:
            if resource.type != "aws:ec2/instance:Instance":
                continue
            index = int(resource.name.rsplit("-", 1)[1])
            tags = [{"Key": k, "Value": v} for k, v in resource.inputs["tags"].items()]
            # a spot instance where the program asks for one (EC2 then says so of it)
            market = resource.inputs.get("instanceMarketOptions")
            spot = {"InstanceMarketOptions": {"MarketType": "spot"}} if market else {}
            created = self.ec2.run_instances(
                ImageId="ami-12345678", MinCount=1, MaxCount=1,
                InstanceType=resource.inputs["instanceType"],
                TagSpecifications=[{"ResourceType": "instance", "Tags": tags}], **spot,
            )["Instances"][0]["InstanceId"]  # fmt: skip
            instance_ids[str(index)] = created
            self.imds.instance_id = created
            self.user_data[index] = resource.inputs["userData"]
            self._boot(index, created)
        if self.outputs is not None:
            self.outputs["instance_ids"] = instance_ids
        self.started.set()

    def _boot(self, index: int, instance_id: str) -> None:
        user_data = self.user_data[index]
        command = runner_command(user_data)
        command[0] = sys.executable  # the instance's venv python → this one, with the wheel
        home = self.work / f"instance-{index}"
        home.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            **exported_environment(user_data),
            "DSTACK_HOME": str(home / "dstack"),  # /opt/dstack/home on the instance
            "HOME": str(home),  # /root on the instance
            "PYTHONPATH": str(self.wheel_dir),  # the installed wheel, not this checkout
            "DSTACK_IMDS_ENDPOINT": self.imds.url,
            "DSTACK_MACHINE_POLL_INTERVAL": "0.2",
            **self.extra_env,
        }
        runner = subprocess.Popen(
            command, env=env, cwd=home, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.runners.append(runner)
        threading.Thread(
            target=self._power_off_after, args=(runner, instance_id), daemon=True
        ).start()

    def _power_off_after(self, runner: subprocess.Popen[bytes], instance_id: str) -> None:
        runner.wait()
        try:
            self.ec2.terminate_instances(InstanceIds=[instance_id])
        except Exception:
            pass  # the moto server may be gone (the store-lost test stops one)

    def wait(self, timeout: float = 60) -> list[int]:
        return [runner.wait(timeout) for runner in self.runners]

    def kill(self) -> None:
        for runner in self.runners:
            if runner.poll() is None:
                runner.kill()


def s3_requests(log: list[tuple[str, str]], bucket: str) -> list[tuple[str, str, str | None]]:
    """(action, object key or "", list prefix) of each logged path-style S3 request."""
    requests = []
    for method, raw in log:
        parts = urlsplit(raw)
        path = unquote(parts.path).lstrip("/")
        query = parse_qs(parts.query, keep_blank_values=True)
        name, _, key = path.partition("/")
        if name != bucket:
            continue
        if not key:
            if method == "GET" and "list-type" in query:
                requests.append(("s3:ListBucket", "", query.get("prefix", [""])[0]))
            continue
        action = {
            "GET": "s3:GetObject",
            "HEAD": "s3:GetObject",
            "PUT": "s3:PutObject",
            "POST": "s3:PutObject",
            "DELETE": "s3:DeleteObject",
        }[method]
        requests.append((action, key, None))
    return requests


def allowed(policy: dict[str, Any], bucket: str, action: str, key: str, prefix: str | None) -> bool:
    resource = f"arn:aws:s3:::{bucket}" + (f"/{key}" if key else "")
    for statement in policy["Statement"]:
        if statement["Effect"] != "Allow" or action not in _list(statement["Action"]):
            continue
        if not any(
            fnmatch.fnmatchcase(resource, pattern) for pattern in _list(statement["Resource"])
        ):
            continue
        condition = statement.get("Condition", {}).get("StringLike", {}).get("s3:prefix")
        if condition is not None and not any(
            fnmatch.fnmatchcase(prefix or "", p) for p in _list(condition)
        ):
            continue
        return True
    return False


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
