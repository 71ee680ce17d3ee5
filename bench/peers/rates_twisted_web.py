"""Peer for ``rates_get.py``: a bare twisted.web Resource answering ``GET /rates?currency=...``
from an in-process dict, the same JSON rows the broker answers (no pipeline, no cache layer).

    python bench/peers/rates_twisted_web.py --port 8080
"""

import argparse
import json
import time

from twisted.internet import endpoints, reactor
from twisted.web import resource, server

RATES = {"USD": 1.0921, "GBP": 0.86038, "JPY": 158.08, "CHF": 0.9313}
AS_OF = time.strftime("%Y-%m-%d", time.gmtime())


class QuietSite(server.Site):
    noisy = False

    def log(self, request):
        pass


class Rates(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"application/json")
        wanted = []
        for value in request.args.get(b"currency", []):
            wanted += [c.strip().upper() for c in value.decode().split(",") if c.strip()]
        unknown = [c for c in wanted if c not in RATES]
        if unknown:
            request.setResponseCode(404)
            return json.dumps({"error": f"no rate for {', '.join(unknown)}"}).encode()
        rows = [{"currency": c, "rate": RATES[c], "provider": "ecb", "as_of": AS_OF, "is_stale": False}
                for c in (wanted or sorted(RATES))]
        return json.dumps(rows, separators=(",", ":")).encode()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    endpoints.serverFromString(reactor, f"tcp:{args.port}:interface=127.0.0.1").listen(QuietSite(Rates()))
    reactor.run()


if __name__ == "__main__":
    main()
