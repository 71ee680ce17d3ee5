"""The WebSocket protocol's write deadline, driven in memory: a client that stops reading is dropped."""

import base64
import os

import pytest
import txaio
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from broker.channels.websocket.protocol import PubSubFactory
from broker.pubsub.access import Access, Grant
from broker.pubsub.feature import WEBSOCKET
from broker.pubsub.hub import Hub, TopicPolicy
from broker.pubsub.stores import MemoryStore

PEER = IPv4Address("TCP", "10.1.2.3", 40404)


@pytest.fixture
def connection(monkeypatch):
    """An open /ws connection on a StringTransport: (factory, protocol, transport, clock)."""
    clock = MemoryReactorClock()
    monkeypatch.setattr(txaio.config, "loop", clock)  # autobahn's own timers on the fake clock
    hub = Hub(MemoryStore(clock), [TopicPolicy("#", 10)], max_message_size=1000)
    access = Access({}, {"anonymous": Grant("anonymous", ["#"])})
    options = WEBSOCKET.check({"auto_ping_interval": 0})
    factory = PubSubFactory(hub, access, None, options, clock, write_timeout=5)
    protocol = factory.buildProtocol(PEER)
    transport = StringTransport(peerAddress=PEER)
    protocol.makeConnection(transport)
    key = base64.b64encode(os.urandom(16))
    protocol.dataReceived(b"GET /ws HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key +
                          b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 101"), transport.value()
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


def _client_frame(opcode, payload):
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
    protocol.dataReceived(_client_frame(8, payload))
    answer = transport.value()
    assert answer[:1] == b"\x88" and answer[2:4] == code.to_bytes(2, "big") and answer[4:] == reason
    assert transport.disconnecting and not transport.disconnected, "closed after our Close, not aborted"


def test_a_good_close_is_echoed_and_the_connection_closed(connection):
    factory, protocol, transport, clock = connection
    transport.clear()
    protocol.dataReceived(_client_frame(8, b"\x03\xe8bye"))
    assert transport.value()[:4] == b"\x88\x02\x03\xe8" and transport.disconnecting
