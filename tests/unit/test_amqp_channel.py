"""The amqp channel's ack bookkeeping and every failure path, with a fake pika channel.

``FakeChannel`` stands in for pika's ``TwistedChannel`` (and the raw channel
under it): it records ``basic_ack``/``basic_nack``/``basic_publish``, lets the
test confirm, nack or return each publish, can be closed by "RabbitMQ", and
keeps RabbitMQ's ledger of the channel's deliveries, so each test checks what a
``basic.ack(multiple=True)`` actually settled.  ``task.Clock`` is the reactor.
The real RabbitMQ is in tests/integration/test_amqp.py.
"""

from types import SimpleNamespace

import pytest
from pika import exceptions, spec
from twisted.internet import defer, task

from broker.amqp import AMQP_CHANNEL
from broker.amqp.channel import AMQPChannel
from broker.errors import BadRequest, ServiceError
from broker.simpleio import decode
from broker.testing.components import ComponentHarness


class FakeChannel:
    """One AMQP channel: what we sent on it, and what RabbitMQ made of it."""

    def __init__(self, number):
        self.number = number
        self._channel = self  # pika's raw channel, which consume() and cancel() use
        self.is_open = True
        self.on_closed = defer.Deferred()
        self.sent = []        # ("ack", tag, multiple) / ("nack", tag, requeue), in order
        self.published = []   # SimpleNamespace(exchange, routing_key, body, properties, deferred)
        self.unsettled = set()   # RabbitMQ's view: delivered, neither acked nor nacked
        self.acked, self.requeued, self.errors = set(), set(), []
        self.deliver_to = None
        self.consumer_cancelled = False
        self.fail_setup = False
        self.raise_on_publish = None
        self._tag = 0

    # -- set-up calls ------------------------------------------------------------------

    def confirm_delivery(self):
        if self.fail_setup:
            self.close_by_broker(406, "PRECONDITION_FAILED - set-up refused")
            return defer.fail(exceptions.ChannelClosedByBroker(406, "PRECONDITION_FAILED"))
        return defer.succeed(None)

    def queue_declare(self, queue, durable):
        return defer.succeed(None)

    def basic_qos(self, prefetch_count):
        return defer.succeed(None)

    def add_on_cancel_callback(self, callback):
        pass

    def basic_consume(self, queue, on_message_callback, auto_ack, callback):
        assert auto_ack is False
        self.deliver_to = on_message_callback
        callback(SimpleNamespace(method=SimpleNamespace(consumer_tag=f"ctag-{self.number}")))

    def basic_cancel(self, consumer_tag):
        self.consumer_cancelled = True

    # -- what the channel under test sends ----------------------------------------------

    def basic_ack(self, delivery_tag, multiple=False):
        self._check_open()
        self.sent.append(("ack", delivery_tag, multiple))
        if delivery_tag not in self.unsettled:  # RabbitMQ closes the channel: 406
            self.errors.append(f"unknown delivery tag {delivery_tag}")
            return
        tags = {t for t in self.unsettled if t <= delivery_tag} if multiple else {delivery_tag}
        self.unsettled -= tags
        self.acked |= tags

    def basic_nack(self, delivery_tag, requeue):
        self._check_open()
        self.sent.append(("nack", delivery_tag, requeue))
        if delivery_tag not in self.unsettled:
            self.errors.append(f"unknown delivery tag {delivery_tag}")
            return
        assert requeue, "nothing is nacked without requeue"
        self.unsettled.discard(delivery_tag)
        self.requeued.add(delivery_tag)

    def basic_publish(self, exchange, routing_key, body, properties, mandatory):
        if not self.is_open:  # what pika's TwistedChannel does once closed
            return defer.fail(self.closed_reason)
        if self.raise_on_publish is not None:  # closing: pika raises
            raise self.raise_on_publish
        publish = SimpleNamespace(exchange=exchange, routing_key=routing_key, body=body,
                                  properties=properties, deferred=defer.Deferred())
        self.published.append(publish)
        return publish.deferred

    def close(self):
        self._closed(exceptions.ChannelClosedByClient(200, "Normal shutdown"))

    def _check_open(self):
        if not self.is_open:
            raise exceptions.ChannelWrongStateError("Channel is closed.")

    # -- what RabbitMQ does ---------------------------------------------------------------

    def deliver(self, body=b'{"n": 1}', headers=None, reply_to=None, correlation_id=None):
        """A message arrives; its delivery tag."""
        self._tag += 1
        self.unsettled.add(self._tag)
        method = spec.Basic.Deliver(f"ctag-{self.number}", self._tag, False, "", "q")
        properties = spec.BasicProperties(headers=headers, reply_to=reply_to,
                                          correlation_id=correlation_id,
                                          content_type="application/json")
        self.deliver_to(self, method, properties, body)
        return self._tag

    def confirm(self, index=-1):
        self.published[index].deferred.callback(None)

    def close_by_broker(self, code=404, text="NOT_FOUND - no exchange 'dlx' in vhost '/'"):
        self._closed(exceptions.ChannelClosedByBroker(code, text))

    def _closed(self, reason):
        if not self.is_open:
            return
        self.is_open = False
        self.closed_reason = reason
        self.requeued |= self.unsettled  # RabbitMQ requeues what a closed channel had
        self.unsettled = set()
        for publish in self.published:
            if not publish.deferred.called:
                publish.deferred.errback(reason)
        self.on_closed.callback(reason)


class FakeProtocol:
    """The AMQP connection: hands out FakeChannels, numbered in order."""

    is_open = True

    def __init__(self):
        self.channels = []
        self.fail_next_setup = 0
        self.slow = None  # a list: channel() answers when the test calls what it holds: channel() answers when the test pops and fires it

    def channel(self):
        channel = FakeChannel(len(self.channels) + 1)
        if self.fail_next_setup:
            self.fail_next_setup -= 1
            channel.fail_setup = True
        self.channels.append(channel)
        if self.slow is None:
            return defer.succeed(channel)
        opened = defer.Deferred()
        self.slow.append(lambda: opened.callback(channel))
        return opened


class FakeConnection:
    """Tells its users about the protocol, like AMQPConnection, while they are registered."""

    section = SimpleNamespace(drain_timeout=5.0)

    def __init__(self, connected):
        self.ready = FakeProtocol()
        self.protocol = self.ready if connected else None
        self.users = []

    def add_user(self, user):
        self.users.append(user)
        if self.protocol is not None:
            user.amqp_connected(self.protocol)

    def remove_user(self, user):
        self.users.remove(user)

    def connect(self):
        self.protocol = self.ready
        for user in list(self.users):
            user.amqp_connected(self.protocol)


class Services:
    """The invoker: decodes the body (a bad one fails at once), then each run returns a
    Deferred the test fires."""

    def __init__(self):
        self.runs = []

    def invoke(self, service, request, encode=True):
        request.payload = decode(request.channel.data_format, request.raw_request,
                                 request.content_type)
        self.runs.append(SimpleNamespace(request=request, deferred=defer.Deferred()))
        return self.runs[-1].deferred

    def succeed(self, index, body=b'{"ok": true}'):
        self.runs[index].deferred.callback(SimpleNamespace(body=body,
                                                           content_type="application/json"))

    def fail(self, index, error=None):
        self.runs[index].deferred.errback(error or ServiceError("downstream is down"))


class Harness:
    """An AMQPChannel set up on fakes: ``publisher`` and ``consumer`` are its AMQP channels."""

    def __init__(self, connected=True, **options):
        self.section = AMQP_CHANNEL.check({"name": "c", "type": "amqp", "connection": "rabbit",
                                           "queue": "q", "service": "s", "setup_retry": "5s",
                                           **options})
        self.clock = task.Clock()
        self.connection = FakeConnection(connected)
        self.protocol = self.connection.ready
        self.services = Services()
        harness = ComponentHarness(reactor=self.clock, invoker=self.services)
        self.channel = AMQPChannel(self.section, harness.context(), self.connection)
        harness.attach()
        self.metrics = harness.resources.metrics["amqp.channel.c"]
        self.channel.startService()  # the connection is up: set up at once
        assert self.channel.health()["ok"] == connected

    @property
    def publisher(self):
        return self.channel._publisher

    @property
    def consumer(self):
        return self.channel._consumers[0]

    def turn(self):
        """End the reactor turn: coalesced acks go out."""
        self.clock.advance(0)

    @property
    def counters(self):
        return self.metrics()

    def check_ledgers(self):
        for channel in self.protocol.channels:
            assert channel.errors == [], f"channel {channel.number}: {channel.errors}"


@pytest.fixture
def make():
    made = []

    def harness(**options):
        made.append(Harness(**options))
        return made[-1]

    yield harness
    for each in made:  # no test ever acks or nacks a tag twice, or one RabbitMQ never sent
        each.check_ledgers()


# -- acks --------------------------------------------------------------------------------


def test_acks_of_one_turn_go_out_as_one_multiple_ack(make):
    h = make()
    for _ in range(3):
        h.consumer.deliver()
    for n in range(3):
        h.services.succeed(n)
    assert h.consumer.sent == []  # not before the end of the turn
    h.turn()
    assert h.consumer.sent == [("ack", 3, True)]
    assert h.consumer.acked == {1, 2, 3} and h.counters["acked"] == 3
    assert h.counters["in_flight"] == 0


def test_a_slow_message_is_never_acked_by_a_later_one(make):
    h = make()
    for _ in range(4):
        h.consumer.deliver()
    h.services.succeed(0)
    h.services.succeed(2)
    h.services.succeed(3)
    h.turn()
    assert h.consumer.sent == [("ack", 1, True), ("ack", 3, False), ("ack", 4, False)]
    assert h.consumer.unsettled == {2}
    h.services.succeed(1)
    h.turn()
    assert h.consumer.acked == {1, 2, 3, 4}


def test_a_message_that_cannot_be_republished_is_requeued_not_acked_by_the_next_ack(make):
    """The publisher is gone when a dead letter is due: the original is requeued, and the
    next message's multiple ack does not cover it (it used to be acked away, and lost)."""
    h = make()
    publisher = h.publisher
    publisher.close_by_broker()                  # RabbitMQ closed the publisher
    bad = h.consumer.deliver(b"{not json")       # a client error: to be dead-lettered
    good = h.consumer.deliver()
    h.services.succeed(0)
    h.turn()
    assert good in h.consumer.acked and bad in h.consumer.unsettled
    assert h.counters["dead_letter_failed"] == 1
    h.clock.advance(0.1)                         # the publisher is reopened meanwhile
    assert h.publisher is not publisher and h.publisher.is_open

    later = h.consumer.deliver(b"{not json")     # already dead-lettered through the new one
    h.publisher.confirm()
    h.turn()
    assert later in h.consumer.acked and bad in h.consumer.unsettled


def test_the_publisher_gone_at_dead_letter_time_requeues_after_setup_retry(make):
    h = make()
    h.publisher.close_by_broker()
    h.consumer.deliver(b"{not json")
    h.clock.advance(4.9)
    assert h.consumer.sent == [] and h.counters["waiting"] == 1
    h.clock.advance(0.1)
    assert h.consumer.sent == [("nack", 1, True)] and h.consumer.requeued == {1}
    assert h.counters["in_flight"] == 0 and h.counters["waiting"] == 0
    assert h.counters["requeued"] == 1 and h.counters["dead_letter_failed"] == 1


# -- client errors, service errors, retries ------------------------------------------------


def test_a_client_error_is_dead_lettered_then_acked(make):
    h = make()
    h.consumer.deliver(b"{not json", headers={"x-mine": "kept"})
    dead = h.publisher.published[0]
    assert (dead.exchange, dead.routing_key, dead.body) == ("", "q.dead", b"{not json")
    assert dead.properties.headers["x-broker-error-code"] == "bad_request"
    assert dead.properties.headers["x-mine"] == "kept"
    h.turn()
    assert h.consumer.sent == []  # not before RabbitMQ confirmed the dead letter
    h.publisher.confirm()
    h.turn()
    assert h.consumer.acked == {1}
    assert h.counters["client_errors"] == 1 and h.counters["dead_lettered"] == 1


def test_a_service_error_is_retried_after_the_delay_then_dead_lettered(make):
    h = make(max_retries=2, retry_delay="1s", retry_delay_max="1.5s")
    h.consumer.deliver()
    h.services.fail(0)
    h.clock.advance(0.99)
    assert h.publisher.published == [] and h.counters["waiting"] == 1
    h.clock.advance(0.01)
    retry = h.publisher.published[0]
    assert (retry.routing_key, retry.properties.headers["x-broker-retries"]) == ("q", 1)
    h.publisher.confirm()
    h.turn()
    assert h.consumer.acked == {1} and h.counters["retried"] == 1

    h.consumer.deliver(headers={"x-broker-retries": 1})  # the copy comes back
    h.services.fail(1)
    h.clock.advance(1.49)                                # 2 s, capped at retry_delay_max
    assert len(h.publisher.published) == 1
    h.clock.advance(0.01)
    assert h.publisher.published[1].properties.headers["x-broker-retries"] == 2
    h.publisher.confirm()

    h.consumer.deliver(headers={"x-broker-retries": 2})
    h.services.fail(2, BadRequest("not that one"))       # a client error is never retried
    h.consumer.deliver(headers={"x-broker-retries": 2})
    h.services.fail(3)                                   # retries used up: dead letter at once
    dead = [p for p in h.publisher.published if p.routing_key == "q.dead"]
    assert [d.properties.headers["x-broker-error-code"] for d in dead] == ["bad_request",
                                                                           "service_error"]
    assert dead[1].properties.headers["x-broker-retries"] == 2
    for publish in h.publisher.published[2:]:
        publish.deferred.callback(None)
    h.turn()
    assert h.consumer.acked == {1, 2, 3, 4}
    assert h.counters["service_errors"] == 3 and h.counters["dead_lettered"] == 2


def test_a_message_waiting_for_its_retry_is_not_acked_by_later_ones(make):
    h = make(retry_delay="10s")
    h.consumer.deliver()
    h.services.fail(0)
    for n in range(1, 4):
        h.consumer.deliver()
        h.services.succeed(n)
    h.turn()
    assert h.consumer.unsettled == {1} and h.consumer.acked == {2, 3, 4}
    h.clock.advance(10)
    h.publisher.confirm()
    h.turn()
    assert h.consumer.acked == {1, 2, 3, 4}


@pytest.mark.parametrize("retry, delay", [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (900, 3.0)])
def test_retry_delays_double_up_to_the_maximum(make, retry, delay):
    h = make(retry_delay="500ms", retry_delay_max="3s")
    assert h.channel.retry_delay(retry) == delay


@pytest.mark.parametrize("header", [-1000000, "3", 1.5])
def test_a_bad_retry_count_header_counts_as_none(make, header):
    h = make(max_retries=1, retry_delay=0)
    h.consumer.deliver(headers={"x-broker-retries": header})
    h.services.fail(0)
    assert h.publisher.published[0].properties.headers["x-broker-retries"] == 1


def test_retry_delay_zero_retries_at_once(make):
    h = make(retry_delay=0)
    h.consumer.deliver()
    h.services.fail(0)
    assert h.publisher.published[0].routing_key == "q"


# -- the publisher failing at each step --------------------------------------------------


@pytest.mark.parametrize("failure, counter", [
    (exceptions.NackError([]), "retry_failed"),
    (exceptions.ChannelClosedByBroker(404, "NOT_FOUND"), "retry_failed"),
])
def test_a_retry_rabbitmq_does_not_take_requeues_the_original(make, failure, counter):
    h = make(retry_delay=0)
    h.consumer.deliver()
    h.services.fail(0)
    h.publisher.published[0].deferred.errback(failure)
    h.consumer.deliver()
    h.services.succeed(1)
    h.turn()
    assert h.consumer.acked == {2} and h.consumer.unsettled == {1}
    h.clock.advance(5)
    assert h.consumer.requeued == {1} and h.counters[counter] == 1


def test_a_publisher_closed_mid_flight_fails_what_it_had_and_is_reopened(make):
    h = make(retry_delay=0)
    first = h.publisher
    h.consumer.deliver()
    h.services.fail(0)                 # retry copy published, not confirmed yet
    h.consumer.deliver(b"{not json")  # dead letter published, not confirmed yet
    first.close_by_broker()
    report = h.channel.health()
    assert not report["ok"] and report["publisher"] == "closed"
    assert "publishing channel closed by RabbitMQ" in report["last_error"]
    assert "NOT_FOUND" in report["last_error"]
    assert h.counters["publisher_closed"] == 1
    assert h.counters["retry_failed"] == 1 and h.counters["dead_letter_failed"] == 1

    h.clock.advance(0.1)
    assert h.publisher is not None and h.publisher is not first
    assert h.channel.health()["ok"] and h.channel.health()["publisher"] == "open"
    h.clock.advance(4.9)
    assert h.consumer.requeued == {1, 2} and h.consumer.acked == set()


def test_a_publisher_closed_while_a_message_waits_for_its_retry_requeues_it(make):
    h = make(retry_delay="1s")
    h.consumer.deliver()
    h.services.fail(0)
    h.clock.advance(0.95)
    h.publisher.close_by_broker()      # reopened at 1.05 s: still closed when the retry is due
    h.clock.advance(0.05)
    assert h.counters["retry_failed"] == 1 and h.consumer.unsettled == {1}
    h.clock.advance(5)
    assert h.consumer.requeued == {1} and h.counters["in_flight"] == 0


def test_a_publisher_raising_while_closing_requeues(make):
    h = make()
    h.publisher.raise_on_publish = exceptions.ChannelWrongStateError("Channel is closing.")
    h.consumer.deliver(b"{not json")
    h.clock.advance(5)
    assert h.consumer.requeued == {1}
    assert h.counters["dead_letter_failed"] == 1 and h.counters["in_flight"] == 0


def test_reopening_backs_off_up_to_setup_retry_and_resets_once_a_publish_works(make):
    h = make(setup_retry="1s")
    h.protocol.fail_next_setup = 4
    h.publisher.close_by_broker()
    opened = len(h.protocol.channels)
    waits, errors = [], []
    while h.publisher is None:
        assert not h.channel.health()["ok"]
        errors.append(h.channel.health()["last_error"])
        waits.append(h.clock.getDelayedCalls()[0].getTime() - h.clock.seconds())
        h.clock.advance(waits[-1])
    assert waits == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0])
    assert len(h.protocol.channels) == opened + 5
    assert errors[0].startswith("publishing channel closed by RabbitMQ")
    assert errors[1].startswith("cannot reopen the publishing channel: ")
    assert "PRECONDITION_FAILED" in errors[1] and errors[-1].endswith("reopening it in 1s")
    assert h.channel.health()["ok"] and h.counters["publisher_closed"] == 1

    h.consumer.deliver(b"{not json")
    h.publisher.confirm()             # a publish works: the backoff starts again from 0.1 s
    h.publisher.close_by_broker()
    assert h.clock.getDelayedCalls()[-1].getTime() - h.clock.seconds() == pytest.approx(0.1)


# -- RPC -----------------------------------------------------------------------------------


def test_a_reply_is_published_then_the_request_acked(make):
    h = make()
    h.consumer.deliver(reply_to="replies", correlation_id="corr-7")
    h.services.succeed(0, b'{"answer": 42}')
    reply = h.publisher.published[0]
    assert (reply.routing_key, reply.body) == ("replies", b'{"answer": 42}')
    assert reply.properties.correlation_id == "corr-7"
    h.turn()
    assert h.consumer.sent == []
    h.publisher.confirm()
    h.turn()
    assert h.consumer.acked == {1} and h.counters["replies"] == 1


def test_a_reply_to_a_queue_that_is_gone_still_acks(make):
    """The caller went away (basic.return): the service did its work, no reason to run it
    again."""
    h = make()
    h.consumer.deliver(reply_to="gone")
    h.services.succeed(0)
    h.publisher.published[0].deferred.errback(exceptions.UnroutableError([]))
    h.turn()
    assert h.consumer.acked == {1} and h.counters["reply_failed"] == 1


def test_a_reply_with_the_publisher_gone_requeues_the_request(make):
    h = make()
    h.consumer.deliver(reply_to="replies")
    h.publisher.close_by_broker()
    h.services.succeed(0)
    h.consumer.deliver()
    h.services.succeed(1)
    h.turn()
    assert h.consumer.unsettled == {1} and h.consumer.acked == {2}
    h.clock.advance(5)
    assert h.consumer.requeued == {1} and h.counters["reply_failed"] == 1


def test_a_bad_rpc_request_gets_an_error_reply_and_a_dead_letter(make):
    h = make()
    h.consumer.deliver(b"{not json", reply_to="replies", correlation_id="c-1")
    dead, reply = h.publisher.published
    assert dead.routing_key == "q.dead" and reply.routing_key == "replies"
    assert reply.properties.headers["x-broker-error-code"] == "bad_request"
    reply.deferred.errback(exceptions.UnroutableError([]))
    dead.deferred.callback(None)
    h.turn()
    assert h.consumer.acked == {1} and h.counters["reply_failed"] == 1


# -- the consumer channel closing -------------------------------------------------------------


def test_a_message_from_a_closed_consumer_channel_never_touches_the_new_one(make):
    """Tags restart at 1 on the new channel: the old message's ack must not land there."""
    h = make(retry_delay=0)
    old = h.consumer
    old.deliver()                     # tag 1, in progress
    old.deliver()                     # tag 2, in progress
    old.close_by_broker(406, "PRECONDITION_FAILED - consumer timeout")
    assert not h.channel.health()["ok"] and old.requeued == {1, 2}
    h.clock.advance(5)                # set up again: a new publisher and consumer
    new = h.consumer
    assert new is not old and h.channel.health()["ok"]
    new.deliver()                     # tag 1 again, on the new channel
    h.services.succeed(0)             # the old tag 1 finishes: nothing to ack it on
    h.services.fail(1)                # the old tag 2 fails: no retry copy for it
    h.turn()
    assert new.sent == [] and h.publisher.published == []
    assert h.counters["ack_failed"] == 2
    h.services.succeed(2)
    h.turn()
    assert new.sent == [("ack", 1, True)] and new.acked == {1}
    assert h.counters["in_flight"] == 0


def test_messages_waiting_when_the_connection_drops_are_let_go(make):
    h = make(retry_delay="30s")
    h.consumer.deliver()
    h.services.fail(0)
    assert h.counters["waiting"] == 1
    h.connection.protocol = None
    h.channel.amqp_lost(exceptions.StreamLostError("gone"))
    assert h.counters["waiting"] == 0 and h.counters["in_flight"] == 0
    assert h.clock.getDelayedCalls() == []
    assert h.counters["ack_failed"] == 1


# -- drain on stop ----------------------------------------------------------------------------


def test_stopping_requeues_waiting_messages_drains_the_rest_then_closes_and_leaves(make):
    h = make(retry_delay="30s")
    consumer, publisher = h.consumer, h.publisher
    consumer.deliver()
    h.services.fail(0)                # waiting 30 s for its retry
    consumer.deliver()                # in progress
    consumer.deliver(b"{not json")    # its dead letter is not confirmed yet
    stopped = h.channel.stopService()
    drained = h.channel.amqp_drain()  # the connection drains its users too, when it stops
    assert consumer.consumer_cancelled
    assert consumer.requeued == {1} and not stopped.called and not drained.called
    h.services.fail(1)                # fails while draining: requeued now, not held
    assert consumer.requeued == {1, 2}
    publisher.confirm()
    assert stopped.called and drained.called and consumer.acked == {3}  # flushed first
    assert not consumer.is_open and not publisher.is_open and h.connection.users == []
    assert h.clock.getDelayedCalls() == [] and h.counters["in_flight"] == 0


def test_a_channel_started_again_stops_consuming_again_on_its_next_stop(make):
    h = make()
    h.channel.stopService()
    h.channel.startService()
    consumer = h.consumer
    consumer.deliver()                # in flight: the stop drains it
    h.channel.stopService()
    assert consumer.consumer_cancelled and consumer.is_open


def test_stopping_gives_up_waiting_after_the_connections_drain_timeout(make):
    h = make()
    consumer = h.consumer
    consumer.deliver()                # its service never answers
    stopped = h.channel.stopService()
    h.clock.advance(4.9)
    assert not stopped.called and consumer.is_open
    h.clock.advance(0.1)
    assert stopped.called and not consumer.is_open and consumer.requeued == {1}
    assert h.connection.users == []
    h.services.succeed(0)             # answers at last: its channel is gone, RabbitMQ has it
    assert h.counters["ack_failed"] == 1 and h.counters["in_flight"] == 0


def test_a_channel_started_before_its_connection_sets_up_once_connected(make):
    h = make(connected=False)
    assert h.channel.health()["consumers"] == 0 and h.connection.users == [h.channel]
    h.connection.connect()
    assert h.channel.health()["ok"] and h.consumer.deliver_to is not None


def test_a_channel_stopped_while_setting_up_opens_nothing_more(make):
    """Replaced before its consumers were set up: what it had opened is closed, nothing
    consumes for it."""
    h = make(connected=False)
    h.protocol.slow = []
    h.connection.connect()            # asks for the publisher's channel
    h.protocol.slow.pop()()
    stopped = h.channel.stopService()
    assert stopped.called and h.connection.users == []
    h.protocol.slow.pop()()           # the first consumer's channel comes too late
    assert [c.is_open for c in h.protocol.channels] == [False, False]
    assert all(c.deliver_to is None for c in h.protocol.channels)


def test_a_publisher_closed_with_its_connection_is_left_to_the_reconnect(make):
    h = make()
    h.publisher._closed(exceptions.StreamLostError("Transport indicated EOF"))
    assert h.counters["publisher_closed"] == 0 and h.clock.getDelayedCalls() == []
