"""An amqp channel with ``topic:`` feeds pub/sub: a real RabbitMQ queue, a fake ``resources.pubsub``.

Runs the channel in-process (the reactor driven by trial's TestCase) against the
real RabbitMQ; only the pub/sub side is a fake, since it is built elsewhere.
"""

import json

from twisted.internet import defer, reactor
from twisted.trial import unittest

from broker.amqp import AMQP_CHANNEL, AMQP_CONNECTION
from broker.runtime import Resources
from broker.testing.components import ComponentHarness
from tests.integration.amqp_support import (blocking_connection, rabbitmq_reachable, suffix,
                                            until)


class FakePubSub:
    """Records publishes; fails the first ``fail_first`` of them."""

    def __init__(self, fail_first=0):
        self.published = []
        self.fail_first = fail_first

    def publish(self, topic, data, publisher=None):
        if self.fail_first:
            self.fail_first -= 1
            return defer.fail(RuntimeError("pub/sub is briefly unavailable"))
        self.published.append((topic, data, publisher))
        return defer.succeed(f"msg-{len(self.published)}")


class TopicChannelTests(unittest.TestCase):
    timeout = 60

    def setUp(self):
        if not rabbitmq_reachable():
            raise unittest.SkipTest("RabbitMQ is not reachable on 127.0.0.1:5672 "
                                    "(start it: rabbitmq-server -detached)")
        self.s = suffix()
        self.queue, self.dead = f"t.topic.{self.s}", f"t.topic.{self.s}.dead"
        self.blocking = blocking_connection()
        self.raw = self.blocking.channel()
        self.raw.queue_declare(self.queue)
        self.addCleanup(self._cleanup)

    def _cleanup(self):
        for queue in (self.queue, self.dead):
            self.raw.queue_delete(queue)
        self.blocking.close()

    @defer.inlineCallbacks
    def start_channel(self, pubsub):
        from broker.amqp.channel import AMQPChannel
        from broker.amqp.connection import AMQPConnection
        resources = Resources()
        resources.pubsub = pubsub
        connection = AMQPConnection(AMQP_CONNECTION.check(
            {"name": "rabbit", "type": "amqp", "username": "guest", "password": "guest"}), reactor)
        channel = AMQPChannel(AMQP_CHANNEL.check(
            {"name": "feed", "type": "amqp", "connection": "rabbit", "queue": self.queue,
             "topic": "news.amqp", "max_retries": 2}),
            ComponentHarness(reactor=reactor, resources=resources).context(), connection)
        connection.startService()
        channel.startService()
        self.addCleanup(connection.stopService)
        self.addCleanup(channel.stopService)
        self.assertTrue((yield until(lambda: channel.health()["ok"])))
        return channel

    @defer.inlineCallbacks
    def test_each_message_is_published_to_the_topic_then_acked(self):
        pubsub = FakePubSub()
        channel = yield self.start_channel(pubsub)
        self.raw.basic_publish("", self.queue, b'{"headline": "hi"}')
        self.assertTrue((yield until(lambda: channel.counters["acked"] == 1)))
        self.assertEqual(pubsub.published, [("news.amqp", {"headline": "hi"}, "amqp:feed")])
        self.assertEqual(self.raw.queue_declare(self.queue, passive=True).method.message_count, 0)

    @defer.inlineCallbacks
    def test_a_pubsub_failure_is_retried_and_a_bad_message_dead_lettered(self):
        pubsub = FakePubSub(fail_first=1)
        channel = yield self.start_channel(pubsub)
        self.raw.basic_publish("", self.queue, b'{"n": 1}')
        self.assertTrue((yield until(lambda: channel.counters["acked"] == 2)))  # retry copy too
        self.assertEqual(channel.counters["retried"], 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)  # logged with its cause
        self.assertEqual(pubsub.published, [("news.amqp", {"n": 1}, "amqp:feed")])

        self.raw.basic_publish("", self.queue, b"{broken")
        self.assertTrue((yield until(lambda: channel.counters["dead_lettered"] == 1)))
        method, properties, body = self.raw.basic_get(self.dead, auto_ack=True)
        self.assertEqual(body, b"{broken")
        self.assertEqual(properties.headers["x-broker-error-code"], "bad_request")
        self.assertEqual(len(pubsub.published), 1)
        self.assertEqual(json.loads(json.dumps(channel.metrics()))["in_flight"], 0)
