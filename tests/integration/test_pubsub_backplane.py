"""The Redis backplane's subscriber against a REAL Redis: refusals, a wrong password, stopping.

Refusals use a private redis-server whose default user may not subscribe (an ACL, lifted
later); trial's TestCase fails a test that leaves an unhandled error in a Deferred.
"""

import gc
import shutil
import subprocess
from types import SimpleNamespace

from twisted.internet import defer, reactor
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from broker.pubsub.feature import PubSubService
from broker.pubsub.stores import RedisStore
from broker.redis import RedisConnection
from tests.integration.redis_support import PrivateRedis, delete_prefix, unique_prefix, wait_until


class Hub:
    """What the store calls: records dispatched messages."""

    def __init__(self):
        self.messages = []

    def dispatch(self, message):
        self.messages.append(message)

    def resync(self):
        pass

    _good_topics = frozenset()


def bus_message(topic, data):
    return b"\0".join([b"7-1", topic.encode(), b"2026-01-01T00:00:00Z", b"", data.encode()])


class BackplaneTest(unittest.TestCase):

    def setUp(self):
        self.prefix = unique_prefix("bus")
        self.addCleanup(delete_prefix, self.prefix)
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.addCleanup(gc.collect)  # a Deferred failed and dropped is reported now, in this test

    def start(self, port, password=None, **store_options):
        connection = RedisConnection("bus", port=port, password=password, timeout=2.0)
        connection.startService()
        self.addCleanup(connection.stopService)
        store = RedisStore(connection, self.prefix.rstrip(":"), reactor, **store_options)
        store.attach(Hub())
        store.start()
        self.addCleanup(store.stop)
        return connection, store

    def private_redis(self):
        if shutil.which("redis-server") is None:
            raise unittest.SkipTest("redis-server is not installed")
        server = PrivateRedis().start()
        self.addCleanup(server.stop)
        return server

    @staticmethod
    def cli(server, *args):
        return subprocess.run(["redis-cli", "-p", str(server.port), *args], capture_output=True,
                              text=True, check=True).stdout.strip()

    @defer.inlineCallbacks
    def test_a_refused_subscribe_is_reported_retried_and_recovers(self):
        server = self.private_redis()
        self.cli(server, "ACL", "SETUSER", "default", "resetchannels")  # SUBSCRIBE: NOPERM
        connection, store = self.start(server.port, retry_delay=0.05, retry_max_delay=0.2)
        yield wait_until(lambda: store.counters["bus_subscribe_failures"] >= 3,
                         what="SUBSCRIBE to be refused and tried again")
        health = store.health()
        self.assertFalse(health["ok"])
        self.assertIn("NOPERM", health["error"])
        refusals = [e for e in self.events if "refused SUBSCRIBE" in e.get("log_format", "")]
        self.assertEqual(len(refusals), 1, "logged once, however many times it is tried")

        self.cli(server, "ACL", "SETUSER", "default", "allchannels")
        yield wait_until(lambda: store.bus_up, what="the backplane to subscribe")
        self.assertEqual(store.health(), {"ok": True, "backplane": "redis"})
        yield wait_until(lambda: connection.execute(b"PUBLISH", store.bus,
                                                    bus_message("demo.a", '{"n":1}')),
                         what="a subscriber to receive")
        yield wait_until(lambda: store.hub.messages, what="the message off the bus")
        self.assertEqual((store.hub.messages[0].topic, store.hub.messages[0].data_json),
                         ("demo.a", '{"n":1}'))

    @defer.inlineCallbacks
    def test_a_wrong_password_is_logged_and_counted_not_left_unhandled(self):
        server = self.private_redis()
        self.cli(server, "CONFIG", "SET", "requirepass", "right")
        connection, store = self.start(server.port, password="wrong")
        yield wait_until(lambda: connection.counters["handshake_failures"] >= 2,
                         what="both connections (commands, bus) to be refused")
        self.assertFalse(store.health()["ok"])
        errors = [e for e in self.events if "WRONGPASS" in str(e.get("error", ""))]
        self.assertEqual(len(errors), 2)

    @defer.inlineCallbacks
    def test_stopping_pubsub_closes_its_bus_connection(self):
        connection, store = self.start(6379)
        yield wait_until(lambda: store.bus_up, what="the backplane to subscribe")
        address = f"127.0.0.1:{store.subscriber.pool[0].transport.getHost().port}"

        def clients():
            return connection.execute(b"CLIENT", b"LIST").addCallback(bytes.decode)

        self.assertIn(f" addr={address} ", (yield clients()))
        yield PubSubService(SimpleNamespace(store=store), None).stopService()
        yield wait_until(lambda: clients().addCallback(lambda text: f" addr={address} " not in text),
                         what="Redis to see the bus connection closed")
        self.assertFalse(store.bus_up)
        self.assertIn((yield connection.execute(b"PING")), ("PONG", b"PONG"))  # the shared one stays
