"""Peer (b): a bare twisted.web ``Resource`` that validates and echoes a small JSON body.

POST ``{"text": str, "repeat": int = 1}`` -> 200 ``{"text": text * repeat}``; anything else -> 400 JSON.
Access log off: ``Site(root, logPath=None)`` alone still formats every request into Twisted's legacy log, so
``Site.log`` is also a no-op here; the factory is ``noisy=False``.

    python bench/peers/twisted_web.py --port 8080
"""

import argparse
import json

from twisted.internet import endpoints, reactor
from twisted.web import resource, server


class QuietSite(server.Site):
    """A Site that writes no access log at all."""

    noisy = False

    def log(self, request):
        pass


class Echo(resource.Resource):
    """The echo endpoint, at any path."""

    isLeaf = True

    def render_POST(self, request):
        request.setHeader(b"content-type", b"application/json")
        try:
            body = json.loads(request.content.read())
            error = _invalid(body)
        except ValueError:
            error = "body is not JSON"
        if error:
            request.setResponseCode(400)
            return json.dumps({"error": error}, separators=(",", ":")).encode()
        return json.dumps({"text": body["text"] * body.get("repeat", 1)}, separators=(",", ":")).encode()


def _invalid(body):
    """Why ``body`` is not ``{"text": str, "repeat": int}`` (repeat optional, nothing else), or None."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    if not isinstance(body.get("text"), str):
        return "text must be a string"
    if not isinstance(body.get("repeat", 1), int) or isinstance(body.get("repeat"), bool):
        return "repeat must be an integer"
    extra = set(body) - {"text", "repeat"}
    return f"unexpected fields: {sorted(extra)}" if extra else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    endpoint = endpoints.TCP4ServerEndpoint(reactor, args.port, interface=args.host, backlog=1024)
    endpoint.listen(QuietSite(Echo(), logPath=None))
    reactor.run()


if __name__ == "__main__":
    main()
