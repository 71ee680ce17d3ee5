"""The Redis cache against a REAL Redis: round-trips, TTLs, failures as misses, the breaker."""

import shutil

from twisted.internet import defer
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from broker.cache import RedisCache
from broker.redis import RedisConnection
from tests.integration.redis_support import (PrivateRedis, delete_prefix, free_port,
                                             unique_prefix, wait_until)

VALUES = {
    "dict": {"a": [1, 2.5, None], "é": {"x": True}, "": 0},
    "list": [1, "two", 3.0, False, None, [], {}],
    "str": "zażółć gęślą jaźń ✓ \x00 \n",
    "bigint": 2**70,
    "negative": -17,
    "float": 0.1,
    "exp": 1e-300,
    "true": True,
    "false": False,
    "empty_str": "",
    "zero": 0,
    "empty_list": [],
    "empty_dict": {},
}


class RedisCacheTest(unittest.TestCase):
    """A cache on the shared Redis under a prefix unique to this test."""

    def setUp(self):
        self.prefix = unique_prefix("cache")
        self.connection = RedisConnection("test", port=6379, timeout=2.0)
        self.connection.startService()
        self.cache = RedisCache(self.connection, prefix=self.prefix, timeout=2.0)
        self.addCleanup(delete_prefix, self.prefix)
        self.addCleanup(self.connection.stopService)

    @defer.inlineCallbacks
    def test_values_of_every_json_type_round_trip_exactly(self):
        for key, value in VALUES.items():
            self.assertIs((yield self.cache.set(key, value)), True)
        for key, value in VALUES.items():
            got = yield self.cache.get(key)
            self.assertEqual(got, value)
            self.assertIs(type(got), type(value))
        many = yield self.cache.get_many(list(VALUES) + ["absent"])
        self.assertEqual(many, VALUES)
        raw = yield self.connection.execute(b"GET", (self.prefix + "dict").encode())
        self.assertEqual(raw, '{"a":[1,2.5,null],"é":{"x":true},"":0}'.encode())

    @defer.inlineCallbacks
    def test_ttl_is_set_and_values_expire(self):
        yield self.cache.set("long", "v", ttl=100)
        pttl = yield self.connection.execute(b"PTTL", (self.prefix + "long").encode())
        self.assertTrue(0 < pttl <= 100_000, pttl)
        yield self.cache.set("short", "v", ttl=0.05)
        yield wait_until(lambda: self.cache.get("short").addCallback(lambda v: v is None),
                         what="the short value to expire")
        self.assertEqual((yield self.cache.get("long")), "v")

    @defer.inlineCallbacks
    def test_default_ttl_expire_and_persist(self):
        cache = RedisCache(self.connection, prefix=self.prefix, default_ttl=50)
        yield cache.set("k", 1)
        key = (self.prefix + "k").encode()
        self.assertTrue(0 < (yield self.connection.execute(b"PTTL", key)) <= 50_000)
        self.assertIs((yield cache.expire("k", 5)), True)
        self.assertTrue(0 < (yield self.connection.execute(b"PTTL", key)) <= 5_000)
        self.assertIs((yield cache.expire("k", 0)), True)       # 0: keep forever
        self.assertEqual((yield self.connection.execute(b"PTTL", key)), -1)
        self.assertIs((yield cache.expire("absent", 5)), False)
        self.assertIs((yield cache.expire("absent", 0)), False)

    @defer.inlineCallbacks
    def test_delete_and_incr(self):
        self.assertEqual((yield self.cache.incr("n")), 1)
        self.assertEqual((yield self.cache.incr("n", 41)), 42)
        self.assertEqual((yield self.cache.get("n")), 42)
        self.assertIs((yield self.cache.delete("n")), True)
        self.assertIs((yield self.cache.delete("n")), False)
        yield self.cache.set("s", "text")
        with self.assertRaises(ValueError):
            yield self.cache.incr("s")

    @defer.inlineCallbacks
    def test_a_key_not_holding_json_is_a_counted_miss(self):
        yield self.connection.execute(b"SET", (self.prefix + "raw").encode(), b"\xff not json")
        self.assertIsNone((yield self.cache.get("raw")))
        self.assertEqual(self.cache.counters["decode_errors"], 1)


class RedisDownTest(unittest.TestCase):
    """Nothing listens on the port: every call is a miss, counted and logged; the breaker opens."""

    def setUp(self):
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.connection = RedisConnection("down", port=free_port(), timeout=0.2,
                                          connect_timeout=0.2, breaker_failures=2,
                                          breaker_reset=0.3)
        self.connection.startService()
        self.addCleanup(self.connection.stopService)
        self.cache = RedisCache(self.connection, timeout=0.2, prefix=unique_prefix("down"))

    @defer.inlineCallbacks
    def test_failures_are_misses_then_the_circuit_opens_and_probes(self):
        self.assertIsNone((yield self.cache.get("k")))
        self.assertIs((yield self.cache.set("k", 1)), False)
        self.assertEqual(self.cache.counters["errors"], 2)
        self.assertEqual(self.connection.breaker.state, "open")
        logged = [e for e in self.events if "answered as a miss" in e.get("log_format", "")]
        self.assertEqual(len(logged), 2)
        # Open: nothing is sent, every answer is an immediate miss.
        self.assertEqual((yield self.cache.get_many(["a", "b"])), {})
        self.assertIs((yield self.cache.delete("k")), False)
        self.assertIsNone((yield self.cache.incr("n")))
        self.assertEqual(self.cache.counters["short_circuited"], 3)
        self.assertEqual(self.connection.counters["commands"], 2)
        # After breaker_reset one probe goes out; it fails and the circuit opens again.
        yield wait_until(lambda: self.cache.get("k").addCallback(
            lambda _: self.connection.breaker.counters["probes"] >= 1), what="a probe")
        self.assertEqual(self.connection.breaker.counters["opened"], 2)
        self.assertEqual(self.connection.breaker.state, "open")
        self.assertFalse(self.connection.health()["connected"])
        self.assertTrue(self.connection.health()["ok"])  # not critical by default


class RedisStoppedMidRunTest(unittest.TestCase):
    """A private Redis stopped and started again: misses while down, back to normal after."""

    def setUp(self):
        if shutil.which("redis-server") is None:
            raise unittest.SkipTest("redis-server is not installed")
        self.server = PrivateRedis().start()
        self.addCleanup(self.server.stop)
        self.connection = RedisConnection("private", port=self.server.port, timeout=0.3,
                                          connect_timeout=0.3, breaker_failures=2,
                                          breaker_reset=0.2)
        self.connection.startService()
        self.addCleanup(self.connection.stopService)
        self.cache = RedisCache(self.connection, timeout=0.3)

    @defer.inlineCallbacks
    def test_redis_stopped_then_restarted(self):
        self.assertIs((yield self.cache.set("k", {"v": 1})), True)
        self.assertEqual((yield self.cache.get("k")), {"v": 1})
        self.server.stop()
        self.assertIsNone((yield self.cache.get("k")))
        self.assertGreaterEqual(self.cache.counters["errors"], 1)
        self.server.start()
        yield wait_until(lambda: self.cache.set("k", {"v": 2}), what="Redis to be back")
        self.assertEqual((yield self.cache.get("k")), {"v": 2})
        self.assertEqual(self.connection.breaker.state, "closed")
        self.assertGreaterEqual(self.connection.counters["connects"], 2)


class RedisConnectionTest(unittest.TestCase):
    """The connection's raw API other features use: call, eval, subscriber."""

    def setUp(self):
        self.prefix = unique_prefix("conn")
        self.connection = RedisConnection("raw", port=6379, timeout=2.0)
        self.connection.startService()
        self.addCleanup(delete_prefix, self.prefix)
        self.addCleanup(self.connection.stopService)

    @defer.inlineCallbacks
    def test_call_eval_and_subscriber(self):
        import txredisapi
        key = (self.prefix + "k").encode()
        self.assertIn((yield self.connection.call(b"SET", key, b"\x00\xff")), ("OK", b"OK"))
        self.assertEqual((yield self.connection.call(b"GET", key)), b"\x00\xff")
        script = b"return redis.call('strlen', KEYS[1]) + tonumber(ARGV[1])"
        self.assertEqual((yield self.connection.eval(script, [key], [b"40"])), 42)
        received = defer.Deferred()
        channel = (self.prefix + "chan").encode()

        class Sub(txredisapi.SubscriberProtocol):
            def connectionMade(self):
                super().connectionMade()
                self.subscribe([channel])

            def messageReceived(self, pattern, chan, message):
                received.callback((chan, message))

        self.connection.subscriber(Sub)
        yield wait_until(lambda: self.connection.call(b"PUBLISH", channel, b"hi"),
                         what="a subscriber")
        self.assertEqual((yield received), (channel, b"hi"))
        health = self.connection.health()
        self.assertEqual((health["ok"], health["connected"], health["circuit"]),
                         (True, True, "closed"))


class RedisFrozenTest(unittest.TestCase):
    """A private Redis frozen with SIGSTOP: replies never come; timeouts drop the connection."""

    def setUp(self):
        if shutil.which("redis-server") is None:
            raise unittest.SkipTest("redis-server is not installed")
        self.server = PrivateRedis().start()
        self.addCleanup(self.server.stop)
        self.addCleanup(self._thaw)
        self.connection = RedisConnection("frozen", port=self.server.port, timeout=0.3,
                                          connect_timeout=0.3, breaker_failures=1,
                                          breaker_reset=0.2)
        self.connection.startService()
        self.addCleanup(self.connection.stopService)
        self.cache = RedisCache(self.connection, timeout=0.3)

    def _thaw(self):
        import signal
        if self.server.proc is not None:
            self.server.proc.send_signal(signal.SIGCONT)

    @defer.inlineCallbacks
    def test_frozen_redis_times_out_as_a_miss_and_recovers(self):
        import signal
        self.assertIs((yield self.cache.set("k", "v")), True)
        self.server.proc.send_signal(signal.SIGSTOP)
        self.assertIsNone((yield self.cache.get("k")))
        self.assertEqual(self.cache.counters["timeouts"], 1)
        self.assertEqual(self.connection.breaker.state, "open")
        yield wait_until(lambda: self.connection.counters["disconnects"] >= 1,
                         what="the stuck connection to be dropped")
        self._thaw()
        yield wait_until(lambda: self.cache.get("k"), what="Redis to answer again")
        self.assertEqual(self.connection.breaker.state, "closed")
