"""Rate limits on a driven clock: 429 with Retry-After and RateLimit-* headers, recovering as
the bucket refills; per client address, per caller (token subject), per channel; failed
logins back off (tests/unit/test_tokens.py)."""

import pytest
from twisted.internet import task

from broker.security.ratelimit import Buckets, Limit
from tests.unit.security_support import SECRET, Node, basic, bearer

SERVICES = '''
from broker import Service


class Echo(Service):
    name = "demo.echo"

    def handle(self):
        self.response.payload = {"ok": True}
'''

CONFIG = f'''
services: {{paths: [services.py]}}
auth:
  tokens: {{secret: "{SECRET}"}}
security:
  - {{name: people, type: basic_auth, username: alice, password: pw}}
  - {{name: others, type: basic_auth, username: bob, password: pw}}
  - {{name: tokens, type: jwt, rate_limit: [{{rate: 2, per: 1m, by: caller}}]}}
channels:
  - {{name: limited, type: http, path: /limited/echo, service: demo.echo,
     rate_limit: [{{rate: 5, per: 1s, by: address}}]}}
  - {{name: all, type: http, path: /all, service: demo.echo,
     rate_limit: [{{rate: 3, per: 10s, burst: 3, by: channel}}]}}
  - {{name: mine, type: http, path: /mine, service: demo.echo, methods: [GET], security: tokens}}
'''


@pytest.fixture
def node(tmp_path):
    return Node(tmp_path, CONFIG, SERVICES)


def test_five_a_second_per_address_then_429_with_headers_then_recovered(node):
    for _ in range(5):
        assert node.request("POST", "/limited/echo", body={})[0] == 200
    status, headers, body = node.request("POST", "/limited/echo", body={})
    assert (status, body["code"]) == (429, "too_many_requests")
    assert headers["Retry-After"] == "1"
    assert (headers["RateLimit-Limit"], headers["RateLimit-Remaining"]) == ("5", "0")
    assert headers["RateLimit-Policy"] == "5;w=1;burst=5"
    assert node.node.resources.metrics_report()["guard.channel.limited"]["rate_limited"] == 1
    # another address has its own bucket
    assert node.request("POST", "/limited/echo", body={}, peer="127.0.0.2")[0] == 200
    node.clock.advance(0.2)  # one token back
    assert node.request("POST", "/limited/echo", body={})[0] == 200
    assert node.request("POST", "/limited/echo", body={})[0] == 429
    node.clock.advance(1)
    assert all(node.request("POST", "/limited/echo", body={})[0] == 200 for _ in range(5))


def test_a_channel_limit_counts_everyone_together(node):
    peers = ("10.0.0.1", "10.0.0.2", "10.0.0.3")
    assert [node.request("POST", "/all", body={}, peer=p)[0] for p in peers] == [200] * 3
    status, headers, _ = node.request("POST", "/all", body={}, peer="10.0.0.4")
    assert status == 429 and headers["Retry-After"] == "4"  # 10s / 3, rounded up


def test_a_definition_limit_counts_per_token_subject(node):
    alice = bearer(node.token(basic("alice", "pw"))["access_token"])
    alice_again = bearer(node.token(basic("alice", "pw"))["access_token"])
    bob = bearer(node.token(basic("bob", "pw"))["access_token"])
    assert node.request("GET", "/mine", alice)[0] == 200
    assert node.request("GET", "/mine", alice_again)[0] == 200  # same subject, same bucket
    status, headers, _ = node.request("GET", "/mine", alice)
    assert status == 429 and headers["Retry-After"] == "30"
    assert node.request("GET", "/mine", bob)[0] == 200


def test_buckets_are_bounded_and_refill_to_the_burst():
    clock = task.Clock()
    buckets = Buckets(clock, max_keys=2)
    limit = Limit(1, 1.0, burst=2)
    assert buckets.take("a", limit) == 0.0  # taken: 1 left
    assert buckets.take("a", limit) == 0.0
    assert buckets.take("a", limit) == 1.0  # empty: a second to wait
    buckets.take("b", limit)
    buckets.take("c", limit)
    assert len(buckets) == 2 and buckets.counters["evicted"] == 1
    clock.advance(100)
    assert [buckets.take("b", limit) for _ in range(3)] == [0.0, 0.0, 1.0]  # refilled to 2, not 100
