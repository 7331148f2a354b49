"""The cloud in a box: what EC2 does for an instance, done on this machine.

``Hypervisor`` is the part of EC2 that runs instances. The engine's Instance stand-in
(``tests.cloud.standins``) creates the instance in moto (RunInstances, with the user data) and
asks the hypervisor, over loopback HTTP, to boot it: a fresh overlay (or copy) of the cached
Debian bullseye root (``scripts/build-cloud-box``), in which the *exact* user data runs as root
under bash, as cloud-init runs it, in its own mount and PID namespaces (``unshare`` + ``chroot``),
sharing this machine's network (so it reaches moto on loopback and the package indexes).

Stood in, because a VM has them and a container has not:

- ``shutdown``/``poweroff`` in the root: ``shutdown -h now`` ends the instance (moto's
  TerminateInstances, every process of the instance killed), ``shutdown -h +N`` schedules it;
- an IMDSv2 endpoint per instance (``Imds``): a token first, then the instance id, the
  instance profile's role credentials (moto STS AssumeRole of the profile's role: the
  instance's AWS calls run as that role, under moto's IAM enforcement) and, when a test sets
  it, the spot ``instance-action`` notice. boto3 is pointed at it with
  ``AWS_EC2_METADATA_SERVICE_ENDPOINT``, the runner with ``DSTACK_IMDS_ENDPOINT``;
- the AWS endpoints: ``AWS_ENDPOINT_URL`` (moto) in the environment cloud-init gives the script;
- the CPython download uv makes from GitHub: ``UV_PYTHON_DOWNLOADS_JSON_URL`` names a loopback
  server (``PythonMirror``) serving a CPython built inside the same bullseye root.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SHUTDOWN = """#!/usr/bin/python3
# dstack's cloud tier: the VM's power-off, stood in. `shutdown -h now` ends this instance
# (EC2 terminates it: its shutdown behaviour is terminate); `shutdown -h +N` schedules that.
import sys, urllib.request
args = [a for a in sys.argv[1:] if not a.startswith("-")]
when = args[0] if args else "now"
minutes = 0 if when == "now" else int(when.lstrip("+"))
urllib.request.urlopen(urllib.request.Request(
    "{url}/shutdown?minutes=%d" % minutes, data=b"", method="POST"), timeout=30).read()
"""


#: how long EC2 waits between a spot ``instance-action`` notice and taking the instance back
SPOT_WARNING_SECONDS = 120.0


class _Server:
    """A threading HTTP server on 127.0.0.1 answering with ``handle(method, path, headers,
    body) -> (code, text)``."""

    def __init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                code, text = owner.handle(self.command, self.path, self.headers, body)
                data = text.encode() if isinstance(text, str) else text
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, Any]:
        raise NotImplementedError

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Imds(_Server):
    """One instance's metadata service, IMDSv2 only (a read without a token gets 401)."""

    def __init__(self, instance_id: str, role: str | None, credentials: Any) -> None:
        self.instance_id = instance_id
        self.role = role
        self.credentials = credentials  # () -> dict of AccessKeyId, SecretAccessKey, ...
        self.notice: dict[str, str] | None = None
        #: ``public-ipv4`` and ``local-ipv4``: the addresses EC2 (moto) gave the instance
        self.addresses: dict[str, str] = {}
        self._token = f"token-{instance_id}"
        super().__init__()

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, Any]:
        if method == "PUT":
            ok = path == "/latest/api/token" and headers.get("X-aws-ec2-metadata-token-ttl-seconds")
            return (200, self._token) if ok else (400, "")
        if headers.get("X-aws-ec2-metadata-token") != self._token:
            return 401, ""
        base = "/latest/meta-data/"
        if path == base + "instance-id":
            return 200, self.instance_id
        if path.startswith(base) and path[len(base) :] in self.addresses:
            return 200, self.addresses[path[len(base) :]]
        if path == base + "spot/instance-action" and self.notice:
            return 200, json.dumps(self.notice)
        if path == base + "iam/security-credentials/" and self.role:
            return 200, self.role
        if self.role and path == base + f"iam/security-credentials/{self.role}":
            c = self.credentials()
            return 200, json.dumps({
                "Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": c["AccessKeyId"],
                "SecretAccessKey": c["SecretAccessKey"], "Token": c["SessionToken"],
                "Expiration": c["Expiration"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                "LastUpdated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            })  # fmt: skip
        return 404, ""


@dataclass
class Instance:
    instance_id: str
    root: Path
    console: Path
    imds: Imds
    process: subprocess.Popen[bytes] | None = None
    booted_at: float = field(default_factory=time.monotonic)
    ended: threading.Event = field(default_factory=threading.Event)
    timer: threading.Timer | None = None

    def boot_log(self) -> str:
        path = self.root / "var/log/dstack-boot.log"
        return path.read_text(errors="replace") if path.exists() else ""


class Hypervisor(_Server):
    """Boots and ends box instances (see the module docstring). ``ec2``/``sts``/``iam`` are
    boto3 clients of the moto server with the account's own (unrestricted) credentials: EC2
    itself is not subject to the user's policy."""

    def __init__(
        self, root: Path, work: Path, moto_url: str, python_mirror: str, clients: Any
    ) -> None:
        self.base_root = root
        self.work = work
        self.moto_url = moto_url
        self.python_mirror = python_mirror
        self.clients = clients  # service name -> boto3 client (admin)
        self.instances: dict[str, Instance] = {}
        self.booted = threading.Condition()
        self.instance_of_role: dict[str, str] = {}
        #: each run role's own policies as the run stack wrote them (conditions kept), handed
        #: over by the RolePolicy stand-in: what ``tests.cloud.calls`` checks its calls against
        self.role_policies: dict[str, list[dict[str, Any]]] = {}
        #: a pip.conf the next instance boots with (a test breaking its package index)
        self.next_pip_conf: str | None = None
        #: when set, the next boot request is answered only once this event is set: the
        #: engine's create of that instance is still in flight (a test's Ctrl+C lands in `up`)
        self.hold_next_boot: threading.Event | None = None
        super().__init__()

    # -- the API the Instance stand-in and the instances' shutdown call --------------------
    def handle(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, Any]:
        parts = path.strip("/").split("?")[0].split("/")
        if method == "POST" and parts == ["boot"]:
            request = json.loads(body)
            self.boot(request["instance_id"], request["user_data"], request.get("profile"))
            hold, self.hold_next_boot = self.hold_next_boot, None
            if hold is not None:
                hold.wait(600)
            return 200, "{}"
        if method == "POST" and parts == ["policy"]:
            request = json.loads(body)
            self.role_policies.setdefault(request["role"], []).append(request["document"])
            return 200, "{}"
        if method == "POST" and parts == ["terminate"]:
            self.end(json.loads(body)["instance_id"])
            return 200, "{}"
        if method == "POST" and len(parts) == 3 and parts[0] == "i" and parts[2] == "shutdown":
            minutes = float(path.split("minutes=")[1]) if "minutes=" in path else 0.0
            self.shutdown(parts[1], minutes)
            return 200, "{}"
        return 404, ""

    def boot(self, instance_id: str, user_data: str, profile: str | None) -> Instance:
        role = self._profile_role(profile)
        if role:
            self.instance_of_role[role["Arn"]] = instance_id
        imds = Imds(instance_id, role["RoleName"] if role else None, lambda: self._assume(role))
        imds.addresses = self._addresses(instance_id)
        folder = self.work / instance_id
        folder.mkdir(parents=True)
        root = self._make_root(folder)
        instance = Instance(instance_id, root, folder / "console.log", imds)
        shutdown = SHUTDOWN.replace("{url}", f"{self.url}/i/{instance_id}")
        for name in ("sbin/shutdown", "sbin/poweroff"):
            target = root / "usr/local" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(shutdown)
            target.chmod(0o755)
        shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
        # this machine's network may need its own CAs (a TLS-inspecting egress): the host's
        # local ones are installed as the host has them, and named as the host names them
        local_cas = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
        for ca in local_cas:
            shutil.copyfile(ca, root / "usr/local/share/ca-certificates" / ca.name)
        (root / "etc/systemd/system").mkdir(parents=True, exist_ok=True)  # a VM has systemd
        if self.next_pip_conf:
            (root / "etc/pip.conf").write_text(self.next_pip_conf)
            self.next_pip_conf = None
        script = root / "var/lib/cloud/instance/user-data.txt"
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(user_data)
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url,
            "DSTACK_IMDS_ENDPOINT": imds.url,
            "UV_PYTHON_DOWNLOADS_JSON_URL": f"{self.python_mirror}/downloads.json",
        }
        for name in ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE"):
            if local_cas and os.environ.get(name):  # uv and pip read their own CAs otherwise
                env[name] = os.environ[name]
        prepare = "update-ca-certificates >/dev/null 2>&1; " if local_cas else ""
        command = [
            "unshare", "--mount", "--pid", "--fork", "--kill-child=SIGKILL",
            f"--mount-proc={root}/proc", "/bin/sh", "-c",
            'mount --rbind /dev "$0/dev" && exec chroot "$0" /bin/sh -c '
            f'"{prepare}exec /usr/bin/env -i \\"\\$@\\"" sh "$@"', str(root),
            *(f"{k}={v}" for k, v in env.items()), "/bin/bash", "/var/lib/cloud/instance/user-data.txt",
        ]  # fmt: skip
        with open(instance.console, "wb") as console:
            instance.process = subprocess.Popen(
                command, stdout=console, stderr=subprocess.STDOUT, start_new_session=True
            )
        with self.booted:
            self.instances[instance_id] = instance
            self.booted.notify_all()
        threading.Thread(target=self._watch, args=(instance,), daemon=True).start()
        return instance

    def shutdown(self, instance_id: str, minutes: float) -> None:
        instance = self.instances.get(instance_id)
        if instance is None:
            return
        if minutes <= 0:
            threading.Thread(target=self.end, args=(instance_id,), daemon=True).start()
            return
        if instance.timer:
            instance.timer.cancel()
        instance.timer = threading.Timer(minutes * 60, self.end, args=(instance_id,))
        instance.timer.daemon = True
        instance.timer.start()

    def interrupt(self, instance_id: str, warning: float = SPOT_WARNING_SECONDS) -> None:
        """A spot interruption, as EC2 makes one: the ``instance-action`` notice on the
        instance's IMDS now, the instance taken back ``warning`` seconds later (AWS: two
        minutes; a test passes less to wait less) unless it powered itself off first."""
        instance = self.instances[instance_id]
        at = time.gmtime(time.time() + warning)
        instance.imds.notice = {
            "action": "terminate",
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", at),
        }
        self.shutdown(instance_id, warning / 60)

    def end(self, instance_id: str) -> None:
        """Power off: every process of the instance killed, the instance terminated in EC2."""
        instance = self.instances.get(instance_id)
        if instance is None:
            return
        if instance.timer:
            instance.timer.cancel()
        process = instance.process
        if process and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
        self._terminate_in_ec2(instance_id)
        instance.imds.close()
        instance.ended.set()

    def close(self) -> None:
        for instance_id in list(self.instances):
            self.end(instance_id)
        for instance in self.instances.values():
            subprocess.run(["umount", "-l", str(instance.root)], capture_output=True)
        super().close()

    def wait_for(self, count: int, timeout: float) -> list[Instance]:
        deadline = time.monotonic() + timeout
        with self.booted:
            while len(self.instances) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"{len(self.instances)} instance(s) booted, expected {count}"
                self.booted.wait(left)
            return list(self.instances.values())

    # -- internals ---------------------------------------------------------------------
    def _watch(self, instance: Instance) -> None:
        """The boot script ended without powering off (it always does): power off anyway."""
        assert instance.process is not None
        instance.process.wait()
        if not instance.ended.is_set():
            self.end(instance.instance_id)

    def _terminate_in_ec2(self, instance_id: str) -> None:
        try:
            self.clients("ec2").terminate_instances(InstanceIds=[instance_id])
        except Exception:
            pass  # already terminated (the user's TerminateInstances came first)

    def _addresses(self, instance_id: str) -> dict[str, str]:
        """The addresses moto gave the instance, as its metadata service names them."""
        found = self.clients("ec2").describe_instances(InstanceIds=[instance_id])
        instance = found["Reservations"][0]["Instances"][0]
        names = {"public-ipv4": "PublicIpAddress", "local-ipv4": "PrivateIpAddress"}
        return {path: instance[key] for path, key in names.items() if instance.get(key)}

    def _profile_role(self, profile: str | None) -> dict[str, Any] | None:
        if not profile:
            return None
        found = self.clients("iam").get_instance_profile(InstanceProfileName=profile)
        roles = found["InstanceProfile"]["Roles"]
        return roles[0] if roles else None

    def _assume(self, role: dict[str, Any] | None) -> dict[str, Any]:
        """The role's credentials, as EC2 gets them for an instance profile: from STS, as the
        EC2 service (moto's STS in this process; the role trusts EC2, not the test's users)."""
        from moto.sts.models import sts_backends

        assert role is not None
        account = role["Arn"].split(":")[4]
        assumed = sts_backends[account]["aws"].assume_role(
            region_name="us-east-1", role_session_name=self.instance_of_role.get(role["Arn"], "i"),
            role_arn=role["Arn"], policy="", duration=3600, external_id="",
        )  # fmt: skip
        return {
            "AccessKeyId": assumed.access_key_id, "SecretAccessKey": assumed.secret_access_key,
            "SessionToken": assumed.session_token, "Expiration": assumed.expiration,
        }  # fmt: skip

    def _make_root(self, folder: Path) -> Path:
        """An overlay of the cached root (its changes in ``folder``), or a copy of it."""
        root = folder / "root"
        upper, scratch = folder / "upper", folder / "overlay-work"
        for path in (root, upper, scratch):
            path.mkdir()
        options = f"lowerdir={self.base_root},upperdir={upper},workdir={scratch}"
        mounted = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", options, str(root)], capture_output=True
        )
        if mounted.returncode != 0:
            root.rmdir()
            subprocess.run(["cp", "-a", str(self.base_root), str(root)], check=True)
        return root


class PythonMirror(_Server):
    """Stands in for uv's CPython downloads (GitHub, out of this machine's reach): serves the
    CPython ``scripts/build-cloud-box`` built inside the bullseye root, packed as uv's
    downloads are, and the downloads list naming it (``UV_PYTHON_DOWNLOADS_JSON_URL``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        version, self.archive, sha256 = (folder / "build").read_text().split()
        major, minor, patch = (int(p) for p in version.split(".")[:3])
        arch = os.uname().machine
        self.listing = json.dumps({
            f"cpython-{version}-linux-{arch}-gnu": {
                "name": "cpython", "arch": {"family": arch, "variant": None}, "os": "linux",
                "libc": "gnu", "major": major, "minor": minor, "patch": patch,
                "prerelease": "", "sha256": sha256, "variant": None, "url": "",
            }
        })  # fmt: skip
        self.version = version
        self.requests: list[str] = []
        super().__init__()

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, Any]:
        self.requests.append(path)
        if path == "/downloads.json":
            return 200, self.listing.replace('"url": ""', f'"url": "{self.url}/{self.archive}"')
        if path == f"/{self.archive}":
            return 200, (self.folder / self.archive).read_bytes()
        return 404, ""
