"""Outgoing PUSH and PUB: full peers, the bounded wait queue, counted drops.

A fake reactor drives our logic; the sockets and peers are real ZeroMQ over
loopback TCP (a connected PUSH with no peer yet holds ``sndhwm`` messages).
"""

import json
import socket

import pytest
import zmq

from broker.zmq.adapter import zmq_context
from broker.zmq.config import ZMQ_PUB_OUT, ZMQ_PUSH_OUT
from broker.zmq.outgoing import PubOutgoing, PushOutgoing, ZmqFull
from broker.services.base import Service
from broker.testing import call_service_sync
from broker.testing.components import ComponentHarness


def _free_address():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def _push(**config):
    address = _free_address()
    section = ZMQ_PUSH_OUT.check({"name": "jobs", "type": "zmq_push", "connect": address,
                                  "sndhwm": 3, "linger": 0, **config})
    ctx = ComponentHarness()
    out = PushOutgoing(section, ctx.context())
    ctx.attach()
    out.startService()
    return out, ctx, address


def _pull_peer(address):
    peer = zmq_context().socket(zmq.PULL)
    peer.setsockopt(zmq.LINGER, 0)
    peer.bind(address)
    return peer


def _recv_all(peer, count):
    got = []
    for _ in range(count):
        assert peer.poll(5000), f"only {len(got)} of {count} arrived"
        got.append(json.loads(peer.recv()))
    return got


def test_push_full_raises_a_typed_error_never_silent():
    out, ctx, address = _push(on_full="error")
    assert [out.send({"n": n}) for n in range(3)] == [True] * 3
    with pytest.raises(ZmqFull, match=r'"jobs": every peer is at its high-water mark \(3'):
        out.send({"n": 3})
    assert ctx.resources.metrics["zmq.outgoing.jobs"]()["full_errors"] == 1
    peer = _pull_peer(address)
    assert _recv_all(peer, 3) == [{"n": 0}, {"n": 1}, {"n": 2}]
    out.stopService(), peer.close()


def test_push_queue_waits_bounded_then_flushes_in_order():
    out, ctx, address = _push(on_full="queue", queue_size=4)
    results = [out.send({"n": n}) for n in range(7)]
    assert results == [True] * 3 + [False] * 4
    with pytest.raises(ZmqFull, match="wait queue holds its limit of 4"):
        out.send({"n": 7})
    peer = _pull_peer(address)
    got = []
    while len(got) < 7:  # drive the reactor as the peer takes messages
        ctx.reactor.advance(out.section.retry_interval)
        while peer.poll(50):
            got.append(json.loads(peer.recv()))
    assert got == [{"n": n} for n in range(7)]
    counters = ctx.resources.metrics["zmq.outgoing.jobs"]()
    assert counters["sent"] == 7 and counters["queued"] == 4 and counters["waiting"] == 0
    out.stopService(), peer.close()


def test_messages_still_queued_at_shutdown_are_counted():
    out, ctx, _ = _push(on_full="queue")
    for n in range(5):
        out.send(b"raw")
    out.stopService()
    assert ctx.resources.metrics["zmq.outgoing.jobs"]()["dropped_on_close"] == 2


def test_push_topic_makes_two_frames_and_formats_apply():
    out, ctx, address = _push(data_format="xml")
    peer = _pull_peer(address)
    out.send({"text": "hi"}, topic="t.1")
    out.send("as is")
    frames = peer.poll(5000) and peer.recv_multipart()
    assert frames[0] == b"t.1" and frames[1].endswith(b"<response><text>hi</text></response>")
    assert peer.poll(5000) and peer.recv_multipart() == [b"as is"]
    out.stopService(), peer.close()


def test_pub_tracks_subscriptions_and_counts_unheard_messages():
    section = ZMQ_PUB_OUT.check({"name": "ev", "type": "zmq_pub", "bind": "tcp://127.0.0.1:*",
                                 "topic": "ev.default", "linger": 0})
    ctx = ComponentHarness()
    pub = PubOutgoing(section, ctx.context())
    ctx.attach()
    pub.startService()
    sub = zmq_context().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"ev.")
    sub.connect(pub.socket.endpoints[0])
    for _ in range(500):  # the subscription crosses TCP; the FD tells us when it lands
        if pub.subscriptions:
            break
        pub.socket.doRead()
        sub.poll(10)
    assert pub.subscriptions == {b"ev."}
    assert pub.send({"a": 1}) is True
    pub.send({"b": 2}, topic="other")
    assert sub.poll(5000) and sub.recv_multipart() == [b"ev.default", b'{"a":1}']
    counters = ctx.resources.metrics["zmq.outgoing.ev"]()
    assert counters["sent"] == 1 and counters["no_subscriber"] == 1 and counters["subscriptions"] == 1
    pub.stopService(), sub.close()


def test_services_reach_outgoing_by_name():
    out, ctx, address = _push()
    peer = _pull_peer(address)

    class Notify(Service):
        def handle(self):
            self.out.zmq["jobs"].send(self.request.input, topic="jobs.new")

    ctx.resources.out.kind("zmq").add("jobs", out)
    call_service_sync(Notify, {"id": 7}, resources=ctx.resources)
    assert peer.poll(5000) and peer.recv_multipart() == [b"jobs.new", b'{"id":7}']
    out.stopService(), peer.close()
