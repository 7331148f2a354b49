"""A test double for AWS Service Quotas' EC2 vCPU quotas, which moto does not serve.

``start_quotas(values)`` serves, on 127.0.0.1, the one operation dstack calls —
``ServiceQuotasV20190624.GetServiceQuota`` in the API's JSON 1.1 wire format — answering with
``{"Quota": {"ServiceCode", "QuotaCode", "QuotaName", "Value", ...}}`` for the codes it was
given, and ``NoSuchResourceException`` for others, as AWS does. ``denied=True`` answers every
call ``AccessDeniedException``, as an account whose policy lacks
``servicequotas:GetServiceQuota`` does. Point boto3 at it with ``endpoint_url`` or
``AWS_ENDPOINT_URL_SERVICE_QUOTAS`` (the CLI).

What it stands for: the real Service Quotas endpoint of a region. It checks dstack's request
and its reading of the answer; it cannot check AWS's quota codes or values, nor how fast AWS
counts a newly launched instance against them. The real API is asked only where AWS
credentials are.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TARGET = "ServiceQuotasV20190624.GetServiceQuota"


@dataclass
class QuotasStandIn:
    """A running stand-in; ``asked`` lists the quota codes it was asked for, in order."""

    endpoint_url: str
    values: dict[str, float]
    denied: bool = False
    asked: list[str] = field(default_factory=list)
    _server: Any = field(default=None, repr=False)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def start_quotas(values: dict[str, float], *, denied: bool = False) -> QuotasStandIn:
    """Serve ``values`` (``{quota code: vCPUs}``, the EC2 service's) until ``stop()``."""
    standin = QuotasStandIn(endpoint_url="", values=dict(values), denied=denied)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            target = self.headers.get("X-Amz-Target", "")
            if target != TARGET:
                self._answer(400, {"__type": "UnknownOperationException", "message": target})
                return
            code = body.get("QuotaCode", "")
            standin.asked.append(code)
            if standin.denied:
                message = "not authorized to perform: servicequotas:GetServiceQuota"
                self._answer(400, {"__type": "AccessDeniedException", "Message": message})
                return
            if body.get("ServiceCode") != "ec2" or code not in standin.values:
                self._answer(400, {"__type": "NoSuchResourceException", "Message": code})
                return
            quota = {
                "ServiceCode": "ec2",
                "ServiceName": "Amazon Elastic Compute Cloud (Amazon EC2)",
                "QuotaCode": code,
                "QuotaArn": f"arn:aws:servicequotas:us-east-1:123456789012:ec2/{code}",
                "Value": standin.values[code],
                "Unit": "None",
                "Adjustable": True,
                "GlobalQuota": False,
            }
            self._answer(200, {"Quota": quota})

        def _answer(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    standin._server = server
    standin.endpoint_url = f"http://127.0.0.1:{server.server_address[1]}"
    return standin
