#!/bin/bash
# dstack 0.1.0: the runner of run wise-owl-1, job 0
# repo github.com/acme/mnist; state store s3://acme-dstack-state
# Whatever happens below, this machine powers off (and so terminates) when the script
# ends, and at the latest after the run's maximum duration.
set -euo pipefail
exec >>/var/log/dstack-boot.log 2>&1
export DSTACK_HOME=/opt/dstack/home
export HOME=/root
export AWS_DEFAULT_REGION=eu-west-1
export AWS_REGION=eu-west-1
shutdown -h +4330 'dstack: the run reached its maximum duration'
cat >/etc/systemd/system/dstack-reboot-guard.service <<'UNIT'
[Unit]
Description=dstack: a rebooted runner instance powers off (its runner is gone)
[Service]
Type=oneshot
ExecStart=/sbin/shutdown -h now 'dstack: rebooted; the runner does not survive a reboot'
[Install]
WantedBy=multi-user.target
UNIT
systemctl enable dstack-reboot-guard.service || true
finish() {
  if [ -x /opt/dstack/venv/bin/python ]; then /opt/dstack/venv/bin/python - <<"PY" || true
import boto3
boto3.client('s3').upload_file("/var/log/dstack-boot.log", "acme-dstack-state", "repos/github.com/acme/mnist/runs/wise-owl-1/infra/boot-0.log")
PY
  fi
  shutdown -h now 'dstack: the runner has ended'
}
trap finish EXIT
mkdir -p /opt/dstack/home
step() { echo "dstack-boot $(date -u +%H:%M:%S.%N | cut -c1-12) $*"; }
step boot
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  step installing python3-venv
  if command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q && apt-get install -yq python3-venv
  elif command -v dnf >/dev/null; then
    dnf install -yq python3
  fi
fi
if ! command -v docker >/dev/null; then
  apt-get update -q && apt-get install -yq docker.io && systemctl start docker
fi
step installing uv
python3 -m venv /opt/dstack/uv
cat >/opt/dstack/uv-requirements.txt <<'TXT'
uv==0.13.8 --hash=sha256:e18a57b8b352eb7c8feb317b9f6f533c8f0ad9673fd6cf34bbe3cf1a9f6a8984 --hash=sha256:0b3e8b1a4f5e405e31e2ff33de8af4744831e9f7338539671efbd8c3c94e791d
TXT
/opt/dstack/uv/bin/pip install -q --disable-pip-version-check --require-hashes -r /opt/dstack/uv-requirements.txt
step installing Python 3.11
/opt/dstack/uv/bin/uv python install 3.11
/opt/dstack/uv/bin/uv venv -q --python 3.11 /opt/dstack/venv
step installing boto3
/opt/dstack/uv/bin/uv pip install -q --python /opt/dstack/venv/bin/python 'boto3>=1.35.16'
step downloading the dstack wheel
/opt/dstack/venv/bin/python - <<"PY"
import hashlib, sys, time
import boto3
bucket, key, path = "acme-dstack-state", "dist/0123456789abcdef0123/dstack-0.1.0-py3-none-any.whl", "/opt/dstack/dstack-0.1.0-py3-none-any.whl"
expected = "0123456789abcdef0123"
for attempt in range(8):
    try:
        boto3.client('s3').download_file(bucket, key, path)
        break
    except Exception as exc:
        if attempt == 7:
            raise
        print(f'wheel download failed ({exc}); retrying', file=sys.stderr)
        time.sleep(5 * (attempt + 1))
with open(path, 'rb') as wheel:
    digest = hashlib.sha256(wheel.read()).hexdigest()
if not expected or not digest.startswith(expected):
    sys.exit(f'dstack wheel {key}: sha256 {digest}, expected {expected}: not installed')
PY
step installing dstack
/opt/dstack/uv/bin/uv pip install -q --python /opt/dstack/venv/bin/python /opt/dstack/dstack-0.1.0-py3-none-any.whl
step starting the runner
/opt/dstack/venv/bin/python -m dstack.runner --storage '{"type":"s3","bucket":"acme-dstack-state","region":"eu-west-1","profile":null,"endpoint_url":null,"prefix":""}' --repo github.com/acme/mnist --run wise-owl-1 --job 0 --spec-sha256 5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e --cloud aws --max-duration 259200 --store-timeout 1200
