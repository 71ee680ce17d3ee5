"""The loopback transport: the shared message-channel steps, end to end, in memory.

A node is built from a config the way ``twistd broker`` builds it, on a fake
clock; messages go in through the loopback outgoing (or the connection) and
come out as service calls, replies, dead letters and topic messages.
"""

import json
import textwrap
from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock

from broker.config import ConfigError
from broker.loopback.connection import LoopbackMessage
from broker.node import build_node

SERVICES = Path(__file__).with_name("loopback_services.py")

CONFIG = f"""
services: {{paths: ["{SERVICES}"]}}
connections:
  - {{name: mem, type: loopback, max_queue: 3}}
outgoing:
  - {{name: out, type: loopback, connection: mem, queue: work}}
channels:
  - {{name: work, type: loopback, connection: mem, queue: work, service: test.double}}
  - {{name: slow, type: loopback, connection: mem, queue: slow, service: test.slow,
     max_in_flight: 2}}
  - {{name: feed, type: loopback, connection: mem, queue: feed, topic: demo.feed}}
"""


class Node:
    def __init__(self, tmp_path, text=CONFIG):
        path = tmp_path / "broker.yaml"
        path.write_text(textwrap.dedent(text))
        self.clock = MemoryReactorClock()
        self.node = build_node(str(path), reactor=self.clock)
        self.node.startService()
        self.mem = self.node.components[("connection", "mem")].value
        self.waiting = self.node.store.get("test.slow").cls.waiting  # the deployed module's
        self.waiting.clear()

    def put(self, queue, data, reply_to=None):
        self.mem.put(queue, LoopbackMessage(json.dumps(data).encode(), {}, None, reply_to))
        self.clock.advance(0)

    def taken(self, queue):
        return [json.loads(m.body) for m in self.mem.queue(queue)]

    def metrics(self, name):
        return self.node.resources.metrics_report()[name]


@pytest.fixture
def node(tmp_path):
    node = Node(tmp_path)
    yield node
    node.node.stopService()


def test_a_message_invokes_the_service_and_a_reply_goes_to_reply_to(node):
    node.put("work", {"n": 21}, reply_to="answers")
    assert node.taken("answers") == [{"n": 42}]
    assert node.metrics("loopback.channel.work")["succeeded"] == 1


def test_a_service_sends_through_the_outgoing_by_name(node):
    response = node.node.invoker.invoke("test.send", _request(node, {"n": 4}))
    node.clock.advance(0)
    assert response.payload["cid"] and node.metrics("loopback.outgoing.out") == {"sent": 1}
    assert node.metrics("loopback.channel.work")["succeeded"] == 1


def test_bad_input_is_dead_lettered_naming_the_field_and_answered(node):
    node.put("work", {"n": "many"}, reply_to="answers")
    dead = node.mem.queue("work.dead")[0]
    assert dead.headers["x-broker-error-code"] == "invalid_input"
    assert "n: expected an integer" in dead.headers["x-broker-error"]
    assert node.taken("answers")[0]["errors"] == [{"field": "n", "problem": "expected an integer"}]
    assert node.metrics("loopback.channel.work")["client_errors"] == 1


def test_a_service_failure_is_dead_lettered_as_a_service_error(node):
    node.put("work", {"n": 13})
    assert node.mem.queue("work.dead")[0].headers["x-broker-error-code"] == "service_error"
    assert node.metrics("loopback.channel.work")["service_errors"] == 1


def test_max_in_flight_leaves_messages_queued_until_one_is_settled(node):
    for n in range(3):
        node.put("slow", {"n": n})
    assert len(node.waiting) == 2 and len(node.mem.queue("slow")) == 1
    assert node.metrics("loopback.channel.slow")["paused"] == 1
    node.waiting[0].callback(None)
    node.clock.advance(0)
    assert len(node.waiting) == 3 and not node.mem.queue("slow")


def test_a_full_queue_refuses_more(node):
    node.node.components[("channel", "slow")].value.pause_reading()
    for n in range(5):
        node.put("slow", {"n": n})
    with pytest.raises(Exception, match="queue slow is full"):
        node.put("slow", {"n": 99})
    assert node.metrics("loopback.connection.mem")["refused"] == 1


def test_stopping_drains_what_is_in_flight(node):
    node.put("slow", {"n": 1})
    stopped = []
    node.node.stopService().addBoth(stopped.append)
    assert not stopped, "stopped before the message in flight was settled"
    node.waiting[0].callback(None)
    node.clock.advance(0)
    assert len(stopped) == 1 and not isinstance(stopped[0], Exception)


def test_the_node_stops_connections_and_outgoing_only_once_its_channels_drained(node):
    """A service still running for a draining channel may use them until it is done."""
    node.put("slow", {"n": 1})
    node.node.stopService()
    rest = [c for c in node.node.components.values() if not c.takes_work]
    assert rest and all(c.running for c in rest), "stopped while a channel was draining"
    node.waiting[0].callback(None)
    node.clock.advance(0)
    assert not any(c.running for c in rest)


def test_a_channel_feeding_a_topic_publishes_the_decoded_message(node):
    got = []
    node.node.resources.pubsub.publish = lambda topic, data, publisher: got.append(
        (topic, data, publisher)) or "id-1"
    node.put("feed", {"rate": 1.1})
    assert got == [("demo.feed", {"rate": 1.1}, "loopback:feed")]
    assert node.metrics("loopback.channel.feed")["published"] == 1


def test_a_channel_naming_a_missing_connection_is_refused_at_its_key(tmp_path):
    with pytest.raises(ConfigError, match=r":2: channels\[0\].connection: no loopback connection "
                                          r'"nope" in connections \(known: none\)'):
        Node(tmp_path, "channels:\n  - {name: c, type: loopback, connection: nope,\n"
                       "     queue: q, service: demo.echo}\n")


def _request(node, data):
    from broker.services.context import ChannelInfo, Request
    return Request(payload=data, channel=ChannelInfo("t", "test"))
