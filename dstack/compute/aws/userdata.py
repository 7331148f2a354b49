"""The boot script (EC2 user data) of a runner instance, rendered from a ``Boot``.

It installs this same dstack (the wheel the CLI stored, checked by its SHA-256) and starts the
runner against the S3 store; nothing secret is in it. Whatever happens, the machine powers
itself off (and so terminates): at the end of the script, at the hard time limit, after a
reboot. The whole sequence: docs/design/cloud-runs.md.
The runner runs on the client's own Python X.Y, brought by uv (an AMI's ``python3`` is older,
and the client's pins resolve only for its own Python); ``dstack-boot <UTC time> <step>`` lines
in the boot log say where the time went.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from dstack.compute.aws.bootlog import upload_lines
from dstack.store_config import S3StoreConfig, dump_store

#: the power-off at boot comes this long after the maximum duration (the graceful stop's grace)
HARD_LIMIT_GRACE_MINUTES = 10
VENV = "/opt/dstack/venv"
#: the AMI python3's virtualenv holding uv (nothing else runs from it)
UV_VENV = "/opt/dstack/uv"
UV = f"{UV_VENV}/bin/uv"
UV_REQUIREMENTS = "/opt/dstack/uv-requirements.txt"
#: the uv the instance installs, and the SHA-256 of its Linux wheels (x86_64, aarch64)
UV_VERSION = "0.13.8"
UV_WHEEL_SHA256 = (
    "e18a57b8b352eb7c8feb317b9f6f533c8f0ad9673fd6cf34bbe3cf1a9f6a8984",
    "0b3e8b1a4f5e405e31e2ff33de8af4744831e9f7338539671efbd8c3c94e791d",
)
HOME = "/opt/dstack/home"
BOOT_LOG = "/var/log/dstack-boot.log"
CONSTRAINTS = "/opt/dstack/constraints.txt"
REBOOT_UNIT = "/etc/systemd/system/dstack-reboot-guard.service"
DOWNLOAD_ATTEMPTS = 8


@dataclass(frozen=True)
class Boot:
    """What one instance's boot script needs to know."""

    storage: S3StoreConfig
    repo_id: str
    run_name: str
    job_index: int
    region: str
    #: object keys in the bucket (with the store's prefix)
    wheel_key: str
    boot_log_key: str
    version: str
    max_duration_seconds: int
    store_timeout_seconds: int
    python: str | None = None
    #: the Python (X.Y) the runner runs on: the client's, so its pins resolve (see above)
    runner_python: str = "3.11"
    docker: bool = False
    ports: Sequence[int] = field(default_factory=tuple)
    boto3_requirement: str = "boto3"
    #: the wheel's full SHA-256; None checks the digest its key is named by (``dist/<digest>/``)
    wheel_sha256: str | None = None
    #: ``name==version`` lines pip installs the wheel's dependencies under
    constraints: Sequence[str] = field(default_factory=tuple)
    #: the SHA-256 of the job's spec as its submitter wrote it: the runner refuses any other
    #: (the bucket can change the spec, not the user data)
    spec_sha256: str = ""

    @property
    def expected_wheel_digest(self) -> str:
        """What the downloaded wheel's SHA-256 must be (or start with)."""
        if self.wheel_sha256:
            return self.wheel_sha256
        parts = self.wheel_key.split("/")
        return parts[-2] if len(parts) >= 2 else ""

    @property
    def bucket(self) -> str:
        return self.storage.bucket

    def runner_storage(self) -> S3StoreConfig:
        """The store as the runner gets it: the CLI's profile means nothing on the instance,
        whose credentials are its role's."""
        return self.storage.model_copy(update={"profile": None})


def render_user_data(boot: Boot) -> str:
    """The boot script; deterministic (same ``Boot``, same bytes)."""
    q = shlex.quote
    wheel_file = f"/opt/dstack/{boot.wheel_key.rsplit('/', 1)[-1]}"
    constrained = f" -c {CONSTRAINTS}" if boot.constraints else ""
    hard_minutes = hard_limit_seconds(boot.max_duration_seconds) // 60
    runner = [
        f"{VENV}/bin/python", "-m", "dstack.runner",
        "--storage", dump_store(boot.runner_storage()),
        "--repo", boot.repo_id,
        "--run", boot.run_name,
        "--job", str(boot.job_index),
        "--spec-sha256", boot.spec_sha256,
        "--cloud", "aws",
        "--max-duration", str(boot.max_duration_seconds),
        "--store-timeout", str(boot.store_timeout_seconds),
    ]  # fmt: skip
    env = {
        "DSTACK_HOME": HOME,
        "HOME": "/root",
        "AWS_DEFAULT_REGION": boot.region,
        "AWS_REGION": boot.region,
    }
    if boot.ports:
        env["DSTACK_RUNNER_PORTS"] = ",".join(str(p) for p in boot.ports)
    lines = [
        "#!/bin/bash",
        f"# dstack {boot.version}: the runner of run {boot.run_name}, job {boot.job_index}",
        f"# repo {boot.repo_id}; state store s3://{boot.bucket}",
        "# Whatever happens below, this machine powers off (and so terminates) when the script",
        "# ends, and at the latest after the run's maximum duration.",
        "set -euo pipefail",
        f"exec >>{BOOT_LOG} 2>&1",
        *(f"export {key}={q(value)}" for key, value in env.items()),
        f"shutdown -h +{hard_minutes} 'dstack: the run reached its maximum duration'",
        *_reboot_guard_lines(),
        "finish() {",
        *upload_lines(boot.bucket, boot.boot_log_key, BOOT_LOG, boot.region),
        "  shutdown -h now 'dstack: the runner has ended'",
        "}",
        "trap finish EXIT",
        f"mkdir -p {HOME}",
        'step() { echo "dstack-boot $(date -u +%H:%M:%S.%N | cut -c1-12) $*"; }',
        "step boot",
        "if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then",
        "  step installing python3-venv",
        "  if command -v apt-get >/dev/null; then",
        "    export DEBIAN_FRONTEND=noninteractive",
        "    apt-get update -q && apt-get install -yq python3-venv",
        "  elif command -v dnf >/dev/null; then",
        "    dnf install -yq python3",
        "  fi",
        "fi",
        *_docker_lines(boot),
        "step installing uv",
        f"python3 -m venv {UV_VENV}",
        f"cat >{UV_REQUIREMENTS} <<'TXT'",
        f"uv=={UV_VERSION} " + " ".join(f"--hash=sha256:{h}" for h in UV_WHEEL_SHA256),
        "TXT",
        f"{UV_VENV}/bin/pip install -q --disable-pip-version-check --require-hashes "
        f"-r {UV_REQUIREMENTS}",
        f"step installing Python {boot.runner_python}",
        f"{UV} python install {q(boot.runner_python)}",
        f"{UV} venv -q --python {q(boot.runner_python)} {VENV}",
        *_constraints_lines(boot),
        "step installing boto3",
        f"{UV} pip install -q --python {VENV}/bin/python{constrained} {q(boot.boto3_requirement)}",
        "step downloading the dstack wheel",
        f'{VENV}/bin/python - <<"PY"',
        *_download_lines(boot, wheel_file),
        "PY",
        "step installing dstack",
        f"{UV} pip install -q --python {VENV}/bin/python{constrained} {q(wheel_file)}",
        *(_job_python_lines(boot.python) if boot.python != boot.runner_python else []),
        "step starting the runner",
        " ".join(q(part) for part in runner),
        "",
    ]
    return "\n".join(lines)


def _job_python_lines(version: str | None) -> list[str]:
    """The job's Python: the machine's own ``python3`` when it is that version (its venv
    module is installed above, and nothing is downloaded), else one uv installs."""
    if not version:
        return []
    prefix = version + "."  # 3.9 matches 3.9.2; 3.9.2 matches 3.9.2 only
    version_of = '"%d.%d.%d." % sys.version_info[:3]'
    check = f'import sys; sys.exit(not ({version_of}).startswith("{prefix}"))'  # X.Y[.Z]: safe
    return [
        f"if python3 -c {shlex.quote(check)} 2>/dev/null; then",
        f"  step using python3 for Python {version}",
        "else",
        f"  step installing Python {version}",
        f"  {UV} python install {shlex.quote(version)}",
        "fi",
    ]


def hard_limit_seconds(max_duration_seconds: int) -> int:
    """When the instance powers itself off after boot: the maximum duration, in whole minutes,
    plus the graceful stop's grace."""
    return (-(-max_duration_seconds // 60) + HARD_LIMIT_GRACE_MINUTES) * 60


def _reboot_guard_lines() -> list[str]:
    """A boot unit powering the machine off on any later boot (user data runs once; a rebooted
    instance has no runner, and no scheduled power-off)."""
    return [
        f"cat >{REBOOT_UNIT} <<'UNIT'",
        "[Unit]",
        "Description=dstack: a rebooted runner instance powers off (its runner is gone)",
        "[Service]",
        "Type=oneshot",
        "ExecStart=/sbin/shutdown -h now 'dstack: rebooted; the runner does not survive a reboot'",
        "[Install]",
        "WantedBy=multi-user.target",
        "UNIT",
        f"systemctl enable {REBOOT_UNIT.rsplit('/', 1)[-1]} || true",
    ]


def _constraints_lines(boot: Boot) -> list[str]:
    if not boot.constraints:
        return []
    return [f"cat >{CONSTRAINTS} <<'TXT'", *boot.constraints, "TXT"]


def _download_lines(boot: Boot, wheel_file: str) -> list[str]:
    """Python: download the wheel (retrying: the role's credentials may not be there yet),
    and refuse it unless its SHA-256 is the expected one."""
    return [
        "import hashlib, sys, time",
        "import boto3",
        f"bucket, key, path = {_py(boot.bucket)}, {_py(boot.wheel_key)}, {_py(wheel_file)}",
        f"expected = {_py(boot.expected_wheel_digest)}",
        f"for attempt in range({DOWNLOAD_ATTEMPTS}):",
        "    try:",
        "        boto3.client('s3').download_file(bucket, key, path)",
        "        break",
        "    except Exception as exc:",
        f"        if attempt == {DOWNLOAD_ATTEMPTS - 1}:",
        "            raise",
        "        print(f'wheel download failed ({exc}); retrying', file=sys.stderr)",
        "        time.sleep(5 * (attempt + 1))",
        "with open(path, 'rb') as wheel:",
        "    digest = hashlib.sha256(wheel.read()).hexdigest()",
        "if not expected or not digest.startswith(expected):",
        "    sys.exit(f'dstack wheel {key}: sha256 {digest}, expected {expected}: not installed')",
    ]


def runner_command(user_data: str) -> list[str]:
    """The runner's command line as the boot script runs it (tests start it this way)."""
    for line in user_data.splitlines():
        if " -m dstack.runner " in line:
            return shlex.split(line)
    raise ValueError("the user data starts no runner")


def exported_environment(user_data: str) -> dict[str, str]:
    """The variables the boot script exports for the runner."""
    env = {}
    for line in user_data.splitlines():
        if line.startswith("export ") and "=" in line:
            key, value = line[len("export ") :].split("=", 1)
            env[key] = shlex.split(value)[0] if value else ""
    return env


def _docker_lines(boot: Boot) -> list[str]:
    if not boot.docker:
        return []
    return [
        "if ! command -v docker >/dev/null; then",
        "  apt-get update -q && apt-get install -yq docker.io && systemctl start docker",
        "fi",
    ]


def _py(value: str) -> str:
    """A Python string literal (JSON strings are valid Python)."""
    return json.dumps(value)
