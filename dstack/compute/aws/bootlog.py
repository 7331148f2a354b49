"""The boot log's way to the bucket when the boot fails before the runner's venv exists.

The boot script ends, whatever happened, by uploading its log (``/var/log/dstack-boot.log``)
to the run's ``boot-N.log`` so that a user learns why an instance went away. A boot can fail
before anything dstack installs is there (``apt-get`` or ``pip`` errors are the usual causes),
so the upload needs nothing but the AMI's own ``python3``: ``UPLOADER`` is a standard-library
program that takes the instance role's credentials from IMDSv2 and sends one SigV4-signed
``PutObject``, the same request boto3 would make. It runs on Python 3.6 and later (the AMIs
ship 3.9 and 3.10) and keeps the last MiB of the log.
"""

from __future__ import annotations

import shlex

#: the longest tail of the boot log that is uploaded (bytes)
TAIL_BYTES = 1 << 20

#: ``python3 - BUCKET KEY PATH REGION`` reads this on stdin
UPLOADER = f"""\
import datetime, hashlib, hmac, json, os, sys, time, urllib.parse, urllib.request
bucket, key, path, region = sys.argv[1:5]
def call(url, headers, method="GET", data=None):
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=20) as response:
        return response.read().decode()
def credentials():
    imds = os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://169.254.169.254")
    imds = imds.rstrip("/") + "/latest/"
    token = call(imds + "api/token", {{"X-aws-ec2-metadata-token-ttl-seconds": "300"}}, "PUT")
    auth = {{"X-aws-ec2-metadata-token": token}}
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
    headers = {{"host": parts.netloc, "x-amz-content-sha256": digest, "x-amz-date": stamp,
               "x-amz-security-token": creds["Token"]}}
    names = ";".join(sorted(headers))
    canonical = "\\n".join(["PUT", parts.path, "",
                           "".join("%s:%s\\n" % (n, headers[n]) for n in sorted(headers)),
                           names, digest])
    scope = "%s/%s/s3/aws4_request" % (stamp[:8], region)
    text = "\\n".join(["AWS4-HMAC-SHA256", stamp, scope,
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
    log.seek(max(0, log.tell() - {TAIL_BYTES}))
    body = log.read()
for attempt in range(3):
    try:
        put(body)
        break
    except Exception as exc:
        print("dstack: boot log upload failed (%s)" % exc, file=sys.stderr)
        if attempt < 2:
            time.sleep(3 * (attempt + 1))
"""


def upload_lines(bucket: str, key: str, path: str, region: str) -> list[str]:
    """Shell lines uploading the log at ``path`` to ``bucket``/``key``; they never fail."""
    args = " ".join(shlex.quote(part) for part in (bucket, key, path, region))
    return [f"python3 - {args} <<'PY' || true", *UPLOADER.splitlines(), "PY"]
