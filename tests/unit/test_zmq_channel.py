"""ZeroMQ channel logic (flow control, pub/sub feed, config) with a fake reactor,
fake invoker/pub-sub and real inproc ZeroMQ peers."""

import itertools
import json
import socket
from pathlib import Path

import pytest
import zmq
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock

from broker.zmq.adapter import zmq_context
from broker.zmq.channel import PullChannel, RouterChannel, SubChannel
from broker.zmq.config import ZMQ_PULL, ZMQ_ROUTER, ZMQ_SUB
from broker.config import ConfigError
from broker.config.loader import parse_yaml
from broker.node import build_node, load_config
from broker.node.model import root_schema
from broker.errors import ValidationError
from broker.runtime import Resources
from broker.services.context import Response
from broker.testing.components import ComponentHarness
from tests.unit.fake_reactor import run_zmq_until

_names = itertools.count()
SERVICES = Path(__file__).with_name("loopback_services.py")


class FakeInvoker:
    """Answers each invocation with a Deferred the test fires."""

    def __init__(self):
        self.calls = []
        self.encoded = []  # whether each call wanted the answer encoded

    def invoke(self, service, request, encode=True):
        self.encoded.append(encode)
        if request.raw_request == b"invalid":
            raise ValidationError.of([{"field": "text", "problem": "is required"}])
        d = defer.Deferred()
        self.calls.append((service, request, d))
        return d


class FakePubSub:
    def __init__(self, fail=False):
        self.published, self.fail = [], fail

    def publish(self, topic, data, publisher=None):
        if self.fail:
            return defer.fail(RuntimeError("no such topic"))
        self.published.append((topic, data, publisher))
        return defer.succeed("msg-1")


def _channel(cls, schema, pubsub=None, **config):
    address = f"inproc://channel-{next(_names)}"
    section = schema.check({"name": "c", "type": cls.type, "bind": address, **config})
    resources = Resources()
    resources.pubsub = pubsub
    ctx = ComponentHarness(invoker=FakeInvoker(), resources=resources)
    channel = cls(section, ctx.context())
    ctx.attach()
    channel.startService()
    return channel, ctx, address


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _peer(kind, address):
    sock = zmq_context().socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    if kind == zmq.XPUB:
        sock.bind(address)
    else:
        sock.connect(address)
    return sock


def test_max_in_flight_stops_reading_until_an_invocation_finishes():
    channel, ctx, address = _channel(PullChannel, ZMQ_PULL, service="s", max_in_flight=2)
    push = _peer(zmq.PUSH, address)
    for n in range(5):
        push.send(b'{"n": %d}' % n)
    ctx.reactor.advance(0)
    assert len(ctx.invoker.calls) == 2 and channel.socket.paused
    assert channel.metrics()["paused"] == 1 and channel.metrics()["in_flight"] == 2
    ctx.invoker.calls[0][2].callback(Response())
    ctx.reactor.advance(0)
    assert len(ctx.invoker.calls) == 3  # one finished, one more read
    for _, _, d in ctx.invoker.calls[1:]:
        d.callback(Response())
    ctx.reactor.advance(0)
    assert len(ctx.invoker.calls) == 5
    assert [json.loads(r.raw_request)["n"] for _, r, _ in ctx.invoker.calls] == [0, 1, 2, 3, 4]
    assert ctx.invoker.encoded == [False] * 5  # one-way: no answer is encoded for nobody
    channel.stopService(), push.close()


def test_stop_waits_for_running_invocations_then_closes():
    channel, ctx, address = _channel(PullChannel, ZMQ_PULL, service="s")
    push = _peer(zmq.PUSH, address)
    push.send(b"{}")
    ctx.reactor.advance(0)
    socket = channel.socket
    stopped = []
    channel.stopService().addCallback(stopped.append)
    assert not socket.closed and channel.socket.paused
    ctx.invoker.calls[0][2].callback(Response())
    assert socket.closed and socket not in ctx.reactor.getReaders()
    push.close()  # an inproc peer takes part in closing when it next calls ZeroMQ
    run_zmq_until(ctx.reactor, lambda: stopped)  # ZeroMQ closes sockets in its own threads
    again = zmq_context().socket(zmq.PULL)
    again.bind(address)  # the address is free once the stop has finished
    again.close(linger=0)


def test_invalid_input_is_counted_and_the_channel_goes_on():
    channel, ctx, address = _channel(PullChannel, ZMQ_PULL, service="s")
    push = _peer(zmq.PUSH, address)
    push.send(b"invalid")
    push.send_multipart([b"topic", b"{}"])
    ctx.reactor.advance(0)
    counters = channel.metrics()
    assert counters["client_errors"] == 1 and counters["received"] == 2
    assert ctx.invoker.calls[0][1].headers == {"topic": "topic"}
    channel.stopService(), push.close()


def test_router_answers_each_dealer_and_counts_replies_to_gone_clients():
    channel, ctx, address = _channel(RouterChannel, ZMQ_ROUTER, service="s")
    stays, leaves = _peer(zmq.DEALER, address), _peer(zmq.DEALER, address)
    stays.send_multipart([b"", b'{"who": "stays"}'])
    leaves.send_multipart([b'{"who": "leaves"}'])
    ctx.reactor.advance(0)
    assert len(ctx.invoker.calls) == 2 and ctx.invoker.encoded == [True, True]
    # close() alone hands the socket to ZeroMQ's reaper thread, which tells the ROUTER some time
    # later (under load: after the reply below); an inproc disconnect() tells it now.
    leaves.disconnect(address)
    leaves.close()
    stays.send_multipart([b"", b"invalid"])  # answered at once: an error reply
    channel.socket.doRead()  # the FD event a real reactor would see
    assert stays.poll(5000) and json.loads(stays.recv_multipart()[1])["code"] == "invalid_input"
    for _, request, d in reversed(ctx.invoker.calls):  # the gone client's answer first
        response = Response()
        response.body = request.raw_request
        d.callback(response)
    assert stays.poll(5000) and stays.recv_multipart() == [b"", b'{"who": "stays"}']
    counters = channel.metrics()
    assert counters["replies"] == 1 and counters["error_replies"] == 1
    assert counters["replies_undeliverable"] == 1
    channel.stopService(), stays.close()


def test_sub_feeds_a_pubsub_topic_with_the_decoded_payload():
    pubsub = FakePubSub()
    address = f"inproc://channel-{next(_names)}"
    pub = _peer(zmq.XPUB, address)  # XPUB: we can wait for the subscription
    section = ZMQ_SUB.check({"name": "feed", "type": "zmq_sub", "connect": address,
                             "subscribe": ["rates."], "pubsub_topic": "zmq.{topic}"})
    resources = Resources()
    resources.pubsub = pubsub
    ctx = ComponentHarness(invoker=FakeInvoker(), resources=resources)
    channel = SubChannel(section, ctx.context())
    ctx.attach()
    channel.startService()
    assert pub.poll(5000) and pub.recv() == b"\x01rates."
    pub.send_multipart([b"rates.EUR", b'{"rate": 1.1}'])
    pub.send_multipart([b"other", b'{"rate": 2}'])
    pub.send_multipart([b"rates.bad", b"{nope"])
    pub.send_multipart([b"rates.USD", b"[1]"])
    ctx.reactor.advance(0)
    assert pubsub.published == [("zmq.rates.EUR", {"rate": 1.1}, "zmq:feed"),
                                ("zmq.rates.USD", [1], "zmq:feed")]
    counters = channel.metrics()
    assert counters["published"] == 2 and counters["client_errors"] == 1 and not ctx.invoker.calls
    channel.stopService(), pub.close()


def test_failed_publishes_are_counted():
    channel, ctx, address = _channel(PullChannel, ZMQ_PULL, pubsub=FakePubSub(fail=True),
                                     pubsub_topic="jobs")
    push = _peer(zmq.PUSH, address)
    push.send(b'{"a": 1}')
    ctx.reactor.advance(0)
    assert channel.metrics()["publish_errors"] == 1
    channel.stopService(), push.close()


def test_a_channel_replaced_on_a_running_node_hands_its_address_to_the_new_one(tmp_path):
    address = f"tcp://127.0.0.1:{_free_port()}"
    channel = "{name: work, type: zmq_pull, bind: '%s', service: test.double, max_in_flight: %d}"
    path = tmp_path / "broker.yaml"
    path.write_text(f'services: {{paths: ["{SERVICES}"]}}\nchannels:\n  - {channel % (address, 10)}\n')
    reactor = MemoryReactorClock()
    node = build_node(str(path), reactor=reactor)
    node.startService()
    push = _peer(zmq.PUSH, address)
    try:
        for n in range(1, 6):  # ZeroMQ frees an address some time after close: every time
            old = node.components[("channel", "work")].value
            push.send(b'{"n": %d}' % n)
            run_zmq_until(reactor, lambda: old.metrics()["succeeded"] == 1)
            section = root_schema().check(parse_yaml(f"channels:\n  - {channel % (address, n)}\n",
                                                     "new.yaml")).channels[0]
            replaced = []
            node.replace(("channel", "work"), section).addBoth(replaced.append)
            run_zmq_until(reactor, lambda: replaced)
            new = node.components[("channel", "work")].value
            assert replaced == [None] and old.socket is None and new.max_in_flight == n
            assert new.running and new.socket.endpoints == [address]
        push.send(b'{"n": 6}')  # the peer reconnected to the new socket on its own
        run_zmq_until(reactor, lambda: new.metrics()["succeeded"] == 1)
    finally:
        push.close()
        stopped = []
        node.stopService().addBoth(stopped.append)
        run_zmq_until(reactor, lambda: stopped)


def test_pubsub_feed_needs_pubsub_configured(tmp_path):
    config = tmp_path / "broker.yaml"
    config.write_text("pubsub: {enabled: false}\nchannels:\n  - {name: x, type: zmq_pull, "
                      "bind: 'tcp://127.0.0.1:*', pubsub_topic: t}\n")
    with pytest.raises(ConfigError, match=r":3: channels\[0\].pubsub_topic: pubsub is not configured"):
        build_node(str(config))


@pytest.mark.parametrize("config, problem", [
    ({"service": "s"}, 'needs "bind" or "connect"'),
    ({"bind": "tcp://127.0.0.1:*"}, 'exactly one of "service"'),
    ({"bind": "tcp://127.0.0.1:*", "service": "s", "pubsub_topic": "t"}, 'exactly one of'),
    ({"bind": "127.0.0.1:17031", "service": "s"}, "expected a ZeroMQ address"),
    ({"bind": ["tcp://127.0.0.1:1", "http://x"], "service": "s"}, r"bind\[1\]: expected a ZeroMQ"),
    ({"bind": "tcp://127.0.0.1:*", "service": "s", "rcvhwm": 0}, "must be at least 1"),
    ({"bind": "tcp://127.0.0.1:*", "pubsub_topic": "zmq.{name}"}, r"pubsub_topic: only \{topic\}"),
    ({"bind": "tcp://127.0.0.1:*", "service": "s", "data_format": "soap11"}, 'expected "json"'),
])
def test_config_mistakes_are_named(config, problem):
    with pytest.raises(ConfigError, match=problem):
        ZMQ_PULL.check({"name": "x", "type": "zmq_pull", **config})


def test_router_needs_a_service():
    with pytest.raises(ConfigError, match='missing required key "service"'):
        ZMQ_ROUTER.check({"name": "x", "type": "zmq_router", "bind": "tcp://127.0.0.1:*"})


def test_sample_config_loads():
    config = load_config(Path(__file__).parents[2] / "etc" / "examples" / "zmq.yaml")
    types = {c.name: c.type for c in config.channels}
    assert types == {"zmq.echo": "zmq_router", "zmq.work": "zmq_pull"}
    assert config.channels[0].bind == ("tcp://127.0.0.1:17030",)
    assert [(o.type, o.bind) for o in config.outgoing] == [("zmq_pub", ("tcp://127.0.0.1:17032",))]
