"""The outgoing publisher's own bookkeeping: outbox bound, timeouts, confirms, resends.

A fake confirming channel and ``task.Clock`` stand in for RabbitMQ and time;
the real thing is covered in tests/integration/test_amqp*.py.
"""

from types import SimpleNamespace

import pytest
from twisted.internet import defer, task
from twisted.python.failure import Failure

from broker.amqp import AMQP_OUTGOING
from broker.amqp.errors import OutboxFull, PublishNacked, PublishTimeout, Unroutable
from broker.amqp.outgoing import AMQPOutgoing


class FakeConnection:
    protocol = None
    section = SimpleNamespace(drain_timeout=5.0)

    def __init__(self):
        self.users = []

    def add_user(self, user):
        self.users.append(user)

    def remove_user(self, user):
        self.users.remove(user)


class FakeProtocol:
    is_open = True


class FakeChannel:
    """Records publishes and hands out delivery tags like a channel in confirm mode."""

    is_open = True

    def __init__(self):
        self.sent = []
        self.twisted = self  # the TwistedChannel it wraps, which is closed

    def close(self):
        self.is_open = False

    def publish(self, exchange, routing_key, body, properties, mandatory):
        self.sent.append((routing_key, body, properties))
        return len(self.sent)


def outgoing(**options):
    section = AMQP_OUTGOING.check({"name": "o", "type": "amqp", "connection": "c",
                                   "exchange": "x", **options})
    clock = task.Clock()
    out = AMQPOutgoing(section, FakeConnection(), clock)
    out.startService()
    return out, clock


def attach(out):
    from broker.amqp import _pika
    out._pika = _pika
    channel = FakeChannel()
    out._channel = channel
    out._lowest_tag = 1
    out._flush()
    return channel


def results(deferreds):
    found = []
    for d in deferreds:
        d.addBoth(found.append)
    return found


def test_a_full_outbox_fails_at_once_and_is_counted():
    out, _clock = outgoing(max_outbox=2)
    out.publish({"n": 1})
    out.publish({"n": 2})
    failure = results([out.publish({"n": 3})])[0]
    assert isinstance(failure, Failure) and failure.check(OutboxFull)
    assert out.metrics()["outbox_full"] == 1 and out.metrics()["outbox"] == 2


def test_an_unconfirmed_message_times_out_and_leaves_the_outbox():
    out, clock = outgoing(publish_timeout="5s")
    first = results([out.publish("a")])
    clock.advance(2)
    second = results([out.publish("b")])
    clock.advance(3)
    assert first[0].check(PublishTimeout) and second == []
    clock.advance(2)
    assert second[0].check(PublishTimeout)
    assert out.metrics()["timeouts"] == 2 and out.metrics()["outbox"] == 0


def test_confirms_multiple_nack_and_return_settle_the_right_messages():
    out, _clock = outgoing(max_in_flight=10)
    found = results([out.publish({"n": n}, routing_key=f"k{n}") for n in range(4)])
    channel = attach(out)
    assert [key for key, _, _ in channel.sent] == ["k0", "k1", "k2", "k3"]
    out._on_confirm(2, True, False)               # basic.ack multiple up to tag 2
    assert found[:2] == [None, None] and len(found) == 2
    out._on_confirm(3, False, True)               # basic.nack tag 3
    assert found[2].check(PublishNacked)
    out._on_return(channel.sent[3][2].message_id, "NO_ROUTE")   # basic.return, then its ack
    out._on_confirm(4, False, False)
    assert found[3].check(Unroutable) and "k3" in found[3].value.message
    assert out.metrics()["in_flight"] == 0 and out.metrics()["confirmed"] == 2


def test_the_window_holds_messages_in_the_outbox_until_confirms_come():
    out, _clock = outgoing(max_in_flight=2)
    for n in range(5):
        out.publish(n)
    channel = attach(out)
    assert len(channel.sent) == 2 and out.metrics()["outbox"] == 3
    out._on_confirm(1, False, False)
    assert len(channel.sent) == 3


def test_unconfirmed_messages_are_sent_again_in_order_after_a_lost_connection():
    out, _clock = outgoing(max_in_flight=10)
    found = results([out.publish(n, routing_key=f"k{n}") for n in range(3)])
    first = attach(out)
    out._on_confirm(1, False, False)
    from pika.exceptions import StreamLostError
    out._channel_closed(StreamLostError("gone"), first, FakeProtocol())
    assert out._channel is None and out.metrics()["outbox"] == 2
    second = attach(out)
    assert [key for key, _, _ in second.sent] == ["k1", "k2"]
    assert out.metrics()["resent"] == 2
    out._on_confirm(2, True, False)
    assert found == [None, None, None]


@pytest.mark.parametrize("data, body, content_type", [
    ({"a": 1}, b'{"a":1}', "application/json"),
    ("text", b"text", "text/plain; charset=utf-8"),
    (b"\x00raw", b"\x00raw", "application/octet-stream"),
])
def test_data_is_encoded_by_type(data, body, content_type):
    out, _clock = outgoing()
    out.publish(data, headers={"h": "1"}, correlation_id="c1")
    channel = attach(out)
    _key, sent, properties = channel.sent[0]
    assert sent == body and properties.content_type == content_type
    assert properties.headers == {"h": "1"} and properties.correlation_id == "c1"
    assert properties.delivery_mode == 2 and properties.message_id


def test_it_uses_its_connection_from_start_until_it_stopped_after_its_confirms():
    out, _clock = outgoing()
    assert out.connection.users == [out]
    found = results([out.publish("a")])
    channel = attach(out)
    stopped = out.stopService()
    assert not stopped.called and channel.is_open and out.connection.users == [out]
    out._on_confirm(1, False, False)
    assert found == [None] and stopped.called
    assert not channel.is_open and out.connection.users == []


def test_stopping_waits_for_confirms_at_most_the_connections_drain_timeout():
    out, clock = outgoing()
    out.publish("a")
    channel = attach(out)
    stopped = out.stopService()
    clock.advance(4.9)
    assert not stopped.called
    clock.advance(0.1)
    assert stopped.called and not channel.is_open and out.connection.users == []


class FakeTwistedChannel:
    """What ``amqp_connected`` opens: pika's TwistedChannel and the raw channel under it."""

    def __init__(self):
        self._channel = self
        self.is_open = True
        self.on_closed = defer.Deferred()

    def add_on_return_callback(self, callback):
        pass

    def confirm_delivery(self, ack_nack_callback, callback):
        callback(None)

    def exchange_declare(self, exchange, passive):
        return defer.succeed(None)

    def close(self):
        self.is_open = False


def test_an_outgoing_stopped_while_opening_its_channel_closes_it():
    out, _clock = outgoing()
    opening = defer.Deferred()
    out.connection.protocol = SimpleNamespace(channel=lambda: opening, is_open=True)
    out.amqp_connected(out.connection.protocol)
    out.stopService()
    channel = FakeTwistedChannel()
    opening.callback(channel)
    assert not channel.is_open and out._channel is None and out.connection.users == []
