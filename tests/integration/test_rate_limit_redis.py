"""Rate limits shared through a real Redis by two nodes' buckets, and each node limiting alone
(never unlimited) once that Redis is killed; revocations shared the same way.

A private redis-server (tests/integration/redis_support.py), never the shared one, is killed."""

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from broker.redis.connection import RedisConnection
from broker.redis.ratelimit import SharedBuckets
from broker.redis.revocations import RedisRevocations
from broker.security.ratelimit import Limit
from tests.integration.redis_support import PrivateRedis, unique_prefix


class SharedLimitTests(unittest.TestCase):
    timeout = 60

    def setUp(self):
        self.redis = PrivateRedis().start()
        self.addCleanup(self.redis.stop)
        self.clock = task.Clock()  # the buckets' time: driven by the test
        self.clock.advance(1_800_000_000.25)
        prefix = unique_prefix("ratelimit")
        self.connections = []
        self.nodes = []
        for i in range(2):
            connection = RedisConnection(f"n{i}", port=self.redis.port, timeout=0.5,
                                         connect_timeout=0.5, breaker_failures=2,
                                         breaker_reset=60, reactor=reactor)
            connection.startService()
            self.addCleanup(connection.stopService)
            self.connections.append(connection)
            self.nodes.append(SharedBuckets(connection, self.clock, prefix=prefix))

    def _take(self, node, n):
        return [not self.nodes[node].take("channel x|address|10.0.0.1", self.limit)
                for _ in range(n)]

    @defer.inlineCallbacks
    def test_two_nodes_keep_to_one_limit_then_each_limits_alone_when_redis_dies(self):
        self.limit = Limit(10, 60.0, by="address")  # 10 a minute: no refill during the test
        assert self._take(0, 6) == [True] * 6
        yield self.nodes[0].sync()
        assert self._take(1, 4) == [True] * 4       # node 1 cannot know yet
        yield self.nodes[1].sync()                  # the cluster took 10: node 1 is drained
        assert self.nodes[1].counters["drained"] == 1
        assert self._take(1, 1) == [False]
        assert self._take(0, 1) == [True]           # node 0 learns at its next sync
        yield self.nodes[0].sync()
        assert self._take(0, 1) == [False]
        assert self.nodes[0].redis_ok and self.nodes[1].redis_ok

        self.redis.stop()                           # Redis killed while limiting
        self.clock.advance(60)                      # a new minute: buckets full again
        assert self._take(0, 10) == [True] * 10
        yield self.nodes[0].sync()
        assert not self.nodes[0].redis_ok and self.nodes[0].counters["redis_failures"] == 1
        assert self._take(0, 1) == [False]          # local fallback: still limited
        for _ in range(3):                          # and stays so (the circuit opens)
            self._take(0, 1)
            yield self.nodes[0].sync()
        assert self._take(0, 1) == [False]
        assert self.nodes[0].counters["limited"] >= 2


class SharedRevocationTests(unittest.TestCase):
    timeout = 60

    def setUp(self):
        self.redis = PrivateRedis().start()
        self.addCleanup(self.redis.stop)
        self.clock = task.Clock()
        self.clock.advance(1_800_000_000)
        prefix = unique_prefix("revoked")
        self.nodes = []
        for i in range(2):
            connection = RedisConnection(f"r{i}", port=self.redis.port, timeout=0.5,
                                         connect_timeout=0.5, reactor=reactor)
            connection.startService()
            self.addCleanup(connection.stopService)
            self.nodes.append(RedisRevocations(connection, self.clock, prefix=prefix))

    @defer.inlineCallbacks
    def test_a_revocation_on_one_node_reaches_the_other_and_survives_an_outage(self):
        yield self.nodes[0].revoke("jti-1", self.clock.seconds() + 60)
        assert not self.nodes[1].is_revoked("jti-1")
        yield self.nodes[1].sync()
        assert self.nodes[1].is_revoked("jti-1")
        self.redis.stop()
        yield self.nodes[0].revoke("jti-2", self.clock.seconds() + 60)
        assert self.nodes[0].is_revoked("jti-2")     # at once here, Redis or not
        assert self.nodes[0].counters["redis_failures"] == 1 and not self.nodes[0].shared
        self.clock.advance(61)
        self.nodes[1].prune()
        assert not self.nodes[1].is_revoked("jti-1")  # expired tokens need no revocation
