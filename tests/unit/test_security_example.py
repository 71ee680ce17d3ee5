"""etc/examples/security.yaml does what its comments say: a token from the token endpoint
opens /secure/echo; /limited/echo takes 5 requests a second per client address (429 with
Retry-After and RateLimit-* after), recovering on the clock; the role's deny holds."""

import base64
from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock

from broker.http.app import HTTPApp
from broker.http.wire import HTTPRequest
from broker.node import build_node

EXAMPLE = Path(__file__).parents[2] / "etc" / "examples" / "security.yaml"


@pytest.fixture
def node(monkeypatch):
    monkeypatch.setenv("BROKER_TOKEN_SECRET", "example-secret-" + "x" * 40)
    monkeypatch.setenv("BROKER_CLIENT_PASSWORD", "example-password")
    clock = MemoryReactorClock()
    clock.advance(1_800_000_000)
    built = build_node(str(EXAMPLE), reactor=clock)
    app = HTTPApp(built.parts.router, built.parts.invoker)

    def request(path, headers=None, body=b'{"text": "hi"}', peer="127.0.0.1"):
        headers = {"content-type": "application/json", **(headers or {})}
        answer = app.handle(HTTPRequest("POST", path, "", "1.1", headers, body, True, peer, b""))
        return answer.status, dict(answer.headers), answer.body
    return clock, request


def test_the_token_flow_of_the_example(node):
    clock, request = node
    basic = "Basic " + base64.b64encode(b"client:example-password").decode()
    status, headers, body = request("/broker/auth/token", {"authorization": basic}, b"")
    assert status == 200 and headers["Cache-Control"] == "no-store"
    import json
    token = json.loads(body)["access_token"]
    assert request("/secure/echo", {"authorization": f"Bearer {token}"})[::2] == (200, b'{"text":"hi"}')
    assert request("/secure/echo")[0] == 401
    # the client definition's allow-list: not from 192.0.2.1
    assert request("/broker/auth/token", {"authorization": basic}, b"", peer="192.0.2.1")[0] == 403


def test_limited_echo_takes_five_a_second_per_address(node):
    clock, request = node
    assert [request("/limited/echo")[0] for _ in range(5)] == [200] * 5
    status, headers, _ = request("/limited/echo")
    assert status == 429
    assert (headers["Retry-After"], headers["RateLimit-Limit"], headers["RateLimit-Remaining"]) == \
        ("1", "5", "0")
    assert request("/limited/echo", peer="127.0.0.2")[0] == 200
    clock.advance(1)
    assert [request("/limited/echo")[0] for _ in range(5)] == [200] * 5
