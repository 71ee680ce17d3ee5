"""Roles: per service (invoke) and per topic pattern (publish, subscribe), longest match wins,
deny by default once roles are configured; checked on HTTP, for service-to-service calls a
caller started, on pub/sub (WebSocket, POST /broker/publish) and on message channels feeding
a topic; the 403 says nothing of why, the log does."""

import json

import pytest
from twisted.logger import globalLogPublisher

from broker.errors import Forbidden
from broker.pubsub.access import Access, Grant
from broker.security.auth import BasicAuth
from broker.security.roles import Policy, Principal, Role
from tests.unit.security_support import SECRET, Node, basic, bearer

SERVICES = '''
from broker import Service


class Echo(Service):
    name = "demo.echo"

    def handle(self):
        self.response.payload = {"caller": self.request.caller}


class Secret(Service):
    name = "demo.admin.secret"

    def handle(self):
        self.response.payload = {"secret": 42}


class Relay(Service):
    """Invokes demo.admin.secret on behalf of its caller."""
    name = "demo.relay"

    async def handle(self):
        self.response.payload = await self.invoke("demo.admin.secret")
'''

CONFIG = f'''
services: {{paths: [services.py]}}
auth:
  tokens: {{secret: "{SECRET}"}}
  roles:
    - {{name: reader, invoke: ["demo.*", "!demo.admin.#"]}}
    - {{name: admin, invoke: ["demo.#"]}}
    - {{name: nothing}}
security:
  - {{name: readers, type: basic_auth, username: rita, password: pw, roles: [reader]}}
  - {{name: admins, type: basic_auth, username: adam, password: pw, roles: [admin]}}
  - {{name: plain, type: basic_auth, username: pete, password: pw}}
  - {{name: tokens, type: jwt}}
channels:
  - {{name: echo, type: http, path: /echo, service: demo.echo, methods: [GET], security: tokens}}
  - {{name: secret, type: http, path: /secret, service: demo.admin.secret, methods: [GET],
     security: tokens}}
  - {{name: relay, type: http, path: /relay, service: demo.relay, methods: [GET], security: tokens}}
  - {{name: open, type: http, path: /open, service: demo.admin.secret, methods: [GET]}}
  - {{name: rita.echo, type: http, path: /rita/echo, service: demo.echo, methods: [GET],
     security: readers}}
  - {{name: pete.echo, type: http, path: /pete/echo, service: demo.echo, methods: [GET],
     security: plain}}
'''


@pytest.fixture
def node(tmp_path):
    return Node(tmp_path, CONFIG, SERVICES)


@pytest.fixture
def logged():
    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def _as(node, user):
    return bearer(node.token(basic(user, "pw"))["access_token"])


def test_a_role_allows_its_services_and_the_longest_match_denies(node, logged):
    rita, adam = _as(node, "rita"), _as(node, "adam")
    assert node.request("GET", "/echo", rita)[:3:2] == (200, {"caller": "rita"})
    status, _, body = node.request("GET", "/secret", rita)
    assert status == 403 and "admin" not in json.dumps(body)
    assert any("demo.admin.#" in str(e.get("reason")) for e in logged)
    assert node.request("GET", "/secret", adam)[0] == 200
    # the definition's roles count directly too, not only a token's
    assert node.request("GET", "/rita/echo", basic("rita", "pw"))[0] == 200


def test_nothing_listed_is_denied_once_roles_are_configured(node):
    assert node.request("GET", "/pete/echo", basic("pete", "pw"))[0] == 403
    assert node.request("GET", "/echo", _as(node, "pete"))[0] == 403
    # an open channel stays open: roles judge callers, a channel without security has none
    assert node.request("GET", "/open")[0] == 200


def test_a_service_invoked_on_a_callers_behalf_is_judged_by_its_roles(node):
    assert node.request("GET", "/relay", _as(node, "adam"))[:3:2] == (200, {"secret": 42})
    assert node.request("GET", "/relay", _as(node, "rita"))[0] == 403


def test_topic_patterns_for_publish_and_subscribe():
    policy = Policy([Role("news", publish=["news.local.*"], subscribe=["news.#", "!news.secret.#"]),
                     Role("ops", subscribe=["news.secret.#"])])
    reporter, insider = Principal("r", ["news"]), Principal("i", ["news", "ops"])
    assert policy.allows(reporter, "publish", "news.local.paris")
    assert not policy.allows(reporter, "publish", "news.world")
    assert policy.allows(reporter, "subscribe", "news.sport.#")
    assert not policy.allows(reporter, "subscribe", "news.secret.x")
    # longest match over all of a caller's roles: ops' news.secret.# is as long as the deny
    # and a deny wins a tie; a longer allow would win
    assert not policy.allows(insider, "subscribe", "news.secret.x")
    policy = Policy([Role("news", subscribe=["news.#", "!news.secret.#"]),
                     Role("ops", subscribe=["news.secret.x"])])
    assert policy.allows(Principal("i", ["news", "ops"]), "subscribe", "news.secret.x")
    with pytest.raises(Forbidden) as refused:
        policy.check(reporter, "publish", "x")
    assert refused.value.message == Forbidden.default_message


def test_pubsub_grants_are_narrowed_by_roles():
    class Resources:
        rbac = Policy([Role("news", publish=["news.#"], subscribe=["news.#"], invoke=["demo.echo"])])

    definition = BasicAuth("people", "rita", "pw")
    definition.caller = definition.username = Principal("rita", ["news"])
    access = Access({"people": definition},
                    {"people": Grant("people", subscribe=["#"], publish=["#"], invoke=["demo.*"])},
                    Resources())
    grant, caller = access.caller(basic("rita", "pw"))
    assert caller == "rita"
    assert grant.may_publish("news.a") and not grant.may_publish("sport.a")
    assert grant.may_subscribe("news.#") and not grant.may_subscribe("#")
    assert grant.may_invoke("demo.echo") and not grant.may_invoke("demo.other")


def test_a_message_channel_feeding_a_topic_checks_the_publish_role(tmp_path):
    """Roles judge a caller publishing through a message channel too (loopback, as AMQP and
    ZeroMQ channels feeding a topic)."""
    import textwrap

    from twisted.internet.testing import MemoryReactorClock

    from broker.loopback.connection import LoopbackMessage
    from broker.node import build_node

    (tmp_path / "broker.yaml").write_text(textwrap.dedent('''
        auth:
          roles: [{name: news, publish: ["news.#"]}]
        security:
          - {name: desk, type: basic_auth, username: d, password: pw, roles: [news]}
        connections:
          - {name: mem, type: loopback}
        channels:
          - {name: news, type: loopback, connection: mem, queue: news, topic: news.wire,
             security: desk}
          - {name: gossip, type: loopback, connection: mem, queue: gossip, topic: gossip.wire,
             security: desk}
    '''))
    clock = MemoryReactorClock()
    node = build_node(str(tmp_path / "broker.yaml"), reactor=clock)
    node.startService()
    try:
        mem = node.components[("connection", "mem")].value
        for queue in ("news", "gossip"):
            mem.put(queue, LoopbackMessage(b'{"n": 1}', basic("d", "pw"), None, None))
        clock.advance(0)
        report = node.resources.metrics_report()
        assert (report["loopback.channel.news"]["published"],
                report["loopback.channel.news"]["client_errors"]) == (1, 0)
        assert (report["loopback.channel.gossip"]["published"],
                report["loopback.channel.gossip"]["client_errors"]) == (0, 1)
    finally:
        node.stopService()
