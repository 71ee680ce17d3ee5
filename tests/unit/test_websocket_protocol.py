"""The WebSocket protocol driven in memory: the write deadline (a client that stops reading is
dropped) and ``invoke`` through the shared message-channel steps."""

import base64
import json
import os
import struct

import pytest
import txaio
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from twisted.internet import defer

from broker import Int, Service
from broker.pubsub.access import Access, Grant
from broker.pubsub.feature import WEBSOCKET
from broker.pubsub.hub import Hub, TopicPolicy
from broker.pubsub.stores import MemoryStore
from broker.security.auth import APIKey
from broker.services.invoker import Invoker
from broker.services.store import ServiceStore
from broker.testing.components import ComponentHarness
from broker.websocket.invoke import InvokeChannel
from broker.websocket.protocol import PubSubFactory

PEER = IPv4Address("TCP", "10.1.2.3", 40404)


def _open(factory, headers=b""):
    """A /ws connection of ``factory`` on a StringTransport, past the handshake."""
    protocol = factory.buildProtocol(PEER)
    transport = StringTransport(peerAddress=PEER)
    protocol.makeConnection(transport)
    key = base64.b64encode(os.urandom(16))
    protocol.dataReceived(b"GET /ws HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key +
                          b"\r\nSec-WebSocket-Version: 13\r\n" + headers + b"\r\n")
    assert transport.value().startswith(b"HTTP/1.1 101"), transport.value()
    transport.clear()
    return protocol, transport


@pytest.fixture
def connection(monkeypatch):
    """An open /ws connection on a StringTransport: (factory, protocol, transport, clock)."""
    clock = MemoryReactorClock()
    monkeypatch.setattr(txaio.config, "loop", clock)  # autobahn's own timers on the fake clock
    hub = Hub(MemoryStore(clock), [TopicPolicy("#", 10)], max_message_size=1000)
    access = Access({}, {"anonymous": Grant("anonymous", ["#"])})
    options = WEBSOCKET.check({"auto_ping_interval": 0})
    factory = PubSubFactory(hub, access, None, options, clock, write_timeout=5)
    protocol, transport = _open(factory)
    assert transport.producer is protocol
    return factory, protocol, transport, clock


def test_a_client_paused_for_write_timeout_is_dropped_and_counted(connection):
    factory, protocol, transport, clock = connection
    protocol.pauseProducing()
    protocol.pauseProducing()  # paused again: still the one deadline
    assert len([c for c in clock.getDelayedCalls() if c.func == protocol._write_timed_out]) == 1
    clock.advance(4.9)
    assert not transport.disconnected
    clock.advance(0.2)
    assert transport.disconnected, "aborted, not waiting for the buffer"
    assert factory.counters["write_timeouts"] == 1


def test_a_client_reading_again_in_time_is_kept(connection):
    factory, protocol, transport, clock = connection
    protocol.pauseProducing()
    clock.advance(4.9)
    protocol.resumeProducing()
    clock.advance(30)
    assert not transport.disconnected
    assert factory.counters["write_timeouts"] == 0
    protocol.pauseProducing()  # each pause gets the whole deadline
    clock.advance(5)
    assert transport.disconnected and factory.counters["write_timeouts"] == 1


# -- invoke: through the shared message-channel steps --------------------------------------------


class Echo(Service):
    name = "t.echo"

    class SimpleIO:
        input_required = ("text",)
        input_optional = (Int("repeat", default=1),)
        output_required = ("text", "caller")

    def handle(self):
        self.response.payload.text = self.request.input.text * self.request.input.repeat
        self.response.payload.caller = self.request.caller


class Text(Service):
    name = "t.text"

    def handle(self):
        self.response.payload = self.request.payload


class Later(Service):
    name = "t.later"
    waiting = []

    def handle(self):
        d = defer.Deferred()
        self.waiting.append(d)
        return d.addCallback(lambda _: setattr(self.response, "payload", {"done": True}))


def _client_frame(value):
    """One masked text frame, as a client sends it."""
    data, mask = json.dumps(value).encode(), os.urandom(4)
    size = bytes([0x80 | len(data)]) if len(data) < 126 else b"\xfe" + struct.pack("!H", len(data))
    return b"\x81" + size + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def _server_frames(transport):
    """The JSON of every text frame the server wrote since the last call."""
    data, frames = transport.value(), []
    transport.clear()
    while data:
        size, start = data[1] & 0x7F, 2
        if size == 126:
            size, start = struct.unpack("!H", data[2:4])[0], 4
        frames.append(json.loads(data[start:start + size]))
        data = data[start + size:]
    return frames


@pytest.fixture
def invoking(monkeypatch):
    """``(send, channel, harness)``: ``send(frame)`` over a /ws connection of an API key caller
    ("apps", may invoke ``t.*``) answers the frames written back."""
    clock = MemoryReactorClock()
    monkeypatch.setattr(txaio.config, "loop", clock)
    store = ServiceStore()
    for cls in (Echo, Text, Later):
        store.add(cls)
    Later.waiting.clear()
    invoker = Invoker(store, reactor=clock, timeout=0, max_response_size=200)
    harness = ComponentHarness(reactor=clock, invoker=invoker, store=store)
    channel = InvokeChannel(harness.context())
    harness.attach()
    access = Access({"apps": APIKey("apps", "k3y", caller="django")},
                    {"apps": Grant("apps", invoke=["t.*"])})
    options = WEBSOCKET.check({"auto_ping_interval": 0, "max_pending_invokes": 2})
    hub = Hub(MemoryStore(clock), [TopicPolicy("#", 10)], max_message_size=1000)
    factory = PubSubFactory(hub, access, channel, options, clock, write_timeout=5)
    protocol, transport = _open(factory, b"X-API-Key: k3y\r\n")

    def send(frame):
        protocol.dataReceived(_client_frame(frame))
        return _server_frames(transport)
    return send, channel, harness


def test_invoke_answers_an_ok_frame_as_the_caller_the_handshake_identified(invoking):
    send, channel, harness = invoking
    reply = send({"op": "invoke", "id": 7, "service": "t.echo", "data": {"text": "ab", "repeat": 2}})
    assert reply == [{"op": "ok", "id": 7, "service": "t.echo", "cid": reply[0]["cid"],
                      "data": {"text": "abab", "caller": "django"}}]
    assert send({"op": "invoke", "id": "s", "service": "t.text", "data": '{"a": [1]}'})[0]["data"] \
        == {"a": [1]}
    assert send({"op": "invoke", "id": 9, "service": "t.text", "data": "plain"})[0]["data"] == "plain"
    metrics = harness.resources.metrics_report()["websocket.invoke"]
    assert (metrics["received"], metrics["succeeded"], metrics["in_flight"]) == (3, 3, 0)


def test_invoke_errors_are_error_frames_counted_by_the_channel(invoking):
    send, channel, harness = invoking
    bad = send({"op": "invoke", "id": 1, "service": "t.echo", "data": {"repeat": "x"}})[0]
    assert (bad["op"], bad["id"], bad["code"]) == ("error", 1, "invalid_input")
    assert {e["field"] for e in bad["errors"]} == {"text", "repeat"}
    big = send({"op": "invoke", "id": 2, "service": "t.echo", "data": {"text": "x" * 100,
                                                                       "repeat": 3}})[0]
    assert (big["code"], big["message"]) == ("response_too_large",
                                              "The answer is over the limit of 200 bytes")
    assert harness.invoker.counters["responses_too_large"] == 1
    denied = send({"op": "invoke", "id": 3, "service": "other.svc", "data": {}})[0]
    assert (denied["code"], denied["field"]) == ("forbidden", "service")
    counters = channel.counters
    assert (counters["client_errors"], counters["service_errors"]) == (1, 1)


def test_invoke_waits_and_max_pending_invokes_stays_per_connection(invoking):
    """A service that waits keeps its frame pending (at most ``max_pending_invokes`` per
    connection) and in flight: stopping waits for it, and takes no more."""
    send, channel, harness = invoking
    assert send({"op": "invoke", "id": 1, "service": "t.later"}) == []
    assert send({"op": "invoke", "id": 2, "service": "t.later"}) == []
    over = send({"op": "invoke", "id": 3, "service": "t.later"})[0]
    assert (over["code"], over["field"]) == ("too_many_requests", "id")
    assert channel.in_flight == 2
    drained = channel.drain()
    Later.waiting[0].callback(None)
    assert not drained.called
    Later.waiting[1].callback(None)
    assert drained.called and channel.in_flight == 0
    answers = send({"op": "invoke", "id": 4, "service": "t.echo", "data": {"text": "a"}})
    assert [(a["id"], a["op"], a.get("data")) for a in answers[:2]] == [(1, "ok", {"done": True}),
                                                                       (2, "ok", {"done": True})]
    assert answers[2]["code"] == "unavailable"     # draining: the node is stopping


def _control_frame(opcode, payload):
    """A masked client frame (payload under 126 bytes)."""
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + key + masked


@pytest.mark.parametrize("payload, code, reason", [
    (b"\x03\xe7", 1002, b"invalid close code 999"),
    (b"\x03", 1002, b"received close control frame with payload len 1"),
    (b"\x03\xe8\xff", 1007, b"invalid close reason (non-UTF8 payload)"),
])
def test_a_close_frame_breaking_the_protocol_is_answered_before_the_tcp_close(connection, payload,
                                                                              code, reason):
    """Our Close (1002, 1007) goes out, then the connection closes: not an abort that throws it
    away and leaves the client a reset."""
    factory, protocol, transport, clock = connection
    transport.clear()
    protocol.dataReceived(_control_frame(8, payload))
    answer = transport.value()
    assert answer[:1] == b"\x88" and answer[2:4] == code.to_bytes(2, "big") and answer[4:] == reason
    assert transport.disconnecting and not transport.disconnected, "closed after our Close, not aborted"


def test_a_good_close_is_echoed_and_the_connection_closed(connection):
    factory, protocol, transport, clock = connection
    transport.clear()
    protocol.dataReceived(_control_frame(8, b"\x03\xe8bye"))
    assert transport.value()[:4] == b"\x88\x02\x03\xe8" and transport.disconnecting
