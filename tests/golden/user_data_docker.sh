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
python3 - acme-dstack-state repos/github.com/acme/mnist/runs/wise-owl-1/infra/boot-0.log /var/log/dstack-boot.log eu-west-1 <<'PY' || true
import datetime, hashlib, hmac, json, os, sys, time, urllib.parse, urllib.request
bucket, key, path, region = sys.argv[1:5]
def call(url, headers, method="GET", data=None):
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=20) as response:
        return response.read().decode()
def credentials():
    imds = os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://169.254.169.254")
    imds = imds.rstrip("/") + "/latest/"
    token = call(imds + "api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "300"}, "PUT")
    auth = {"X-aws-ec2-metadata-token": token}
    where = imds + "meta-data/iam/security-credentials/"
    return json.loads(call(where + call(where, auth).split()[0], auth))
def put(body):
    creds = credentials()
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    endpoint = (endpoint or "https://s3.%s.amazonaws.com" % region).rstrip("/")
    url = endpoint + "/" + bucket + "/" + urllib.parse.quote(key, safe="/-_.~")
    parts = urllib.parse.urlsplit(url)
    stamp = datetime.datetime.utcnow().strftime("%Y%m%dT%H%M%SZ")
    digest = hashlib.sha256(body).hexdigest()
    headers = {"host": parts.netloc, "x-amz-content-sha256": digest, "x-amz-date": stamp,
               "x-amz-security-token": creds["Token"]}
    names = ";".join(sorted(headers))
    canonical = "\n".join(["PUT", parts.path, "",
                           "".join("%s:%s\n" % (n, headers[n]) for n in sorted(headers)),
                           names, digest])
    scope = "%s/%s/s3/aws4_request" % (stamp[:8], region)
    text = "\n".join(["AWS4-HMAC-SHA256", stamp, scope,
                      hashlib.sha256(canonical.encode()).hexdigest()])
    signing = ("AWS4" + creds["SecretAccessKey"]).encode()
    for part in (stamp[:8], region, "s3", "aws4_request"):
        signing = hmac.new(signing, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(signing, text.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = (
        "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s"
        % (creds["AccessKeyId"], scope, names, signature))
    del headers["host"]
    headers["Content-Type"] = "text/plain; charset=utf-8"  # urllib would say a form
    call(url, headers, "PUT", body)
with open(path, "rb") as log:
    log.seek(0, 2)
    log.seek(max(0, log.tell() - 1048576))
    body = log.read()
for attempt in range(3):
    try:
        put(body)
        break
    except Exception as exc:
        print("dstack: boot log upload failed (%s)" % exc, file=sys.stderr)
        if attempt < 2:
            time.sleep(3 * (attempt + 1))
PY
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
