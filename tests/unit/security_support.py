"""Helpers for the security tests: a node built from a config on a fake clock, asked over its
HTTP app without sockets."""

import base64
import json
import textwrap

from twisted.internet.testing import MemoryReactorClock

from broker.http.app import HTTPApp
from broker.http.wire import HTTPRequest
from broker.node import build_node

SECRET = "s" * 40  # HMAC secret of the test configs (32 bytes or more)


def basic(user, password):
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bearer(token):
    return {"authorization": f"Bearer {token}"}


class Node:
    """A node from ``config`` (YAML text) on a MemoryReactorClock, and its HTTP app."""

    def __init__(self, tmp_path, config, services=None):
        if services:
            (tmp_path / "services.py").write_text(textwrap.dedent(services))
        path = tmp_path / "broker.yaml"
        path.write_text(textwrap.dedent(config))
        self.clock = MemoryReactorClock()
        self.clock.advance(1_800_000_000)
        self.node = build_node(str(path), reactor=self.clock)
        self.app = HTTPApp(self.node.parts.router, self.node.parts.invoker)

    def request(self, method, path, headers=None, body=b"", peer="127.0.0.1"):
        """``(status, headers dict, decoded JSON body or bytes)``."""
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        headers = {k.lower(): v for k, v in (headers or {}).items()}
        if body:
            headers.setdefault("content-type", "application/json")
        path, _, query = path.partition("?")
        result = self.app.handle(HTTPRequest(method, path, query, "1.1", headers, body, True,
                                             peer, b""))
        if hasattr(result, "addBoth"):
            results = []
            result.addBoth(results.append)
            assert results, "the answer did not come at once"
            result = results[0]
        try:
            payload = json.loads(result.body) if result.body else None
        except ValueError:
            payload = result.body
        return result.status, dict(result.headers), payload

    def token(self, headers, **kwargs):
        status, _, body = self.request("POST", "/broker/auth/token", headers, **kwargs)
        assert status == 200, body
        return body
