"""A test double for the AWS Price List Query API (``pricing``), which moto does not implement.

``start_pricing(prices)`` serves, on 127.0.0.1, the one operation dstack calls —
``AWSPriceListService.GetProducts`` in the API's JSON 1.1 wire format — answering each request
with a product document shaped as AWS shapes it (``product.attributes`` and
``terms.OnDemand.*.priceDimensions.*.pricePerUnit.USD``) for the instance type and region the
``TERM_MATCH`` filters name, from the table it was given. ``denied=True`` makes every call
answer ``AccessDeniedException``, as an account whose policy lacks ``pricing:GetProducts`` does.

What it stands for: the real Pricing API endpoint. It checks dstack's request and its reading
of the answer; it cannot check AWS's prices or its filter semantics beyond exact matches. The
real API is exercised only where AWS credentials are (the cloud tier, ``scripts/test-cloud``).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TARGET = "AWSPriceListService.GetProducts"


@dataclass
class PricingStandIn:
    """A running stand-in; ``calls`` counts the GetProducts requests it answered."""

    endpoint_url: str
    prices: dict[tuple[str, str], float]
    denied: bool = False
    calls: int = 0
    _server: Any = field(default=None, repr=False)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def start_pricing(prices: dict[tuple[str, str], float], *, denied: bool = False) -> PricingStandIn:
    """Serve ``prices`` (``{(region, instance_type): USD per hour}``) until ``stop()``."""
    standin = PricingStandIn(endpoint_url="", prices=dict(prices), denied=denied)

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
            standin.calls += 1
            if standin.denied:
                message = "not authorized to perform: pricing:GetProducts"
                self._answer(400, {"__type": "AccessDeniedException", "Message": message})
                return
            self._answer(200, {"FormatVersion": "aws_v1", "PriceList": _products(standin, body)})

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


def _products(standin: PricingStandIn, body: dict[str, Any]) -> list[str]:
    if body.get("ServiceCode") != "AmazonEC2":
        return []
    filters = {f["Field"]: f["Value"] for f in body.get("Filters", [])}
    region = filters.get("regionCode", "")
    wanted = filters.get("instanceType")
    products = []
    for (price_region, itype), price in sorted(standin.prices.items()):
        if price_region != region or (wanted and itype != wanted):
            continue
        attributes = {
            "instanceType": itype,
            "regionCode": region,
            "operatingSystem": "Linux",
            "tenancy": "Shared",
            "preInstalledSw": "NA",
            "capacitystatus": "Used",
        }
        if any(attributes.get(k, v) != v for k, v in filters.items()):
            continue
        sku = f"SKU{abs(hash((region, itype))) % 10**8:08d}"
        term = f"{sku}.JRTCKXETXF"
        products.append(
            json.dumps(
                {
                    "product": {"sku": sku, "attributes": attributes},
                    "terms": {
                        "OnDemand": {
                            term: {
                                "priceDimensions": {
                                    f"{term}.6YS6EN2CT7": {
                                        "unit": "Hrs",
                                        "pricePerUnit": {"USD": f"{price:.10f}"},
                                    }
                                }
                            }
                        }
                    },
                }
            )
        )
    return products
