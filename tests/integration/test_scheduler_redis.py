"""Scheduler job state kept in a REAL Redis: a restarted node catches up on what it missed."""

from twisted.internet import defer, reactor
from twisted.trial import unittest

from broker.cache import RedisCache
from broker.redis import RedisConnection
from broker.scheduler.config import JOB, build_job
from broker.scheduler.lock import RedisLeaderLock
from broker.scheduler.scheduler import Scheduler
from broker.services.base import Service
from broker.services.invoker import Invoker
from broker.services.store import ServiceStore
from tests.integration.redis_support import delete_prefix, sleep, unique_prefix, wait_until


class SchedulerStateTest(unittest.TestCase):

    def setUp(self):
        self.prefix = unique_prefix("sched-state")
        self.addCleanup(delete_prefix, self.prefix)
        self.runs = []
        runs = self.runs

        class Tick(Service):
            name = "test.tick"

            def handle(self):
                runs.append(reactor.seconds())

        store = ServiceStore()
        store.add(Tick)
        self.invoker = Invoker(store, reactor=reactor, timeout=5)

    def node(self):
        connection = RedisConnection("main", port=6379, timeout=1.0)
        connection.startService()
        self.addCleanup(connection.stopService)
        job = build_job(JOB.check({"name": "tick", "service": "test.tick", "interval": 0.5,
                                   "misfire_grace": 0.3}))
        lock = RedisLeaderLock(connection, self.prefix + "scheduler:leader", reactor,
                               ttl=5, renew=1)
        scheduler = Scheduler([job], self.invoker, reactor, lock=lock,
                              store=RedisCache(connection, prefix=self.prefix))
        scheduler.startService()
        self.addCleanup(lambda: scheduler.running and scheduler.stopService())
        return scheduler

    @defer.inlineCallbacks
    def test_restarted_node_runs_a_missed_job_once(self):
        first = self.node()
        yield wait_until(lambda: len(self.runs) >= 2, what="two runs")
        yield first.stopService()            # releases the lock
        before = len(self.runs)
        yield sleep(1.6)                     # about three runs missed
        second = self.node()
        yield wait_until(lambda: second.jobs["tick"].counters["runs"] >= 1, what="a run")
        self.assertEqual(second.jobs["tick"].counters["misfires"], 1)
        self.assertEqual(second.counters["runs"], second.counters["fires"])
        self.assertGreater(len(self.runs), before)
        state = yield RedisCache(second.lock.connection, prefix=self.prefix).get("scheduler:tick")
        self.assertEqual(set(state), {"fingerprint", "next_due", "last_run", "enabled"})
        self.assertTrue(state["enabled"])


class LeaderLockMessagesTest(unittest.TestCase):
    """What the lock says when a renewal fails names who holds it, never "another node" for none."""

    def setUp(self):
        from twisted.logger import formatEvent, globalLogPublisher
        self.key = unique_prefix("sched-lock") + "scheduler:leader"
        self.addCleanup(delete_prefix, self.key)
        self.logged = []

        def observe(event):
            if event.get("log_namespace") == "broker.scheduler.lock":
                self.logged.append(formatEvent(event))
        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        self.connection = RedisConnection("main", port=6379, timeout=1.0)
        self.connection.startService()
        self.addCleanup(self.connection.stopService)
        # renew is long: the test makes the attempts itself
        self.lock = RedisLeaderLock(self.connection, self.key, reactor, owner="this-node",
                                    ttl=60, renew=50)
        self.lock.startService()
        self.addCleanup(lambda: self.lock.running and self.lock.stopService())
        return self.lock.ready()

    @defer.inlineCallbacks
    def test_a_lease_that_ran_out_is_taken_again_and_not_blamed_on_another_node(self):
        self.assertTrue(self.lock.held())
        yield self.connection.execute(b"DEL", self.key)     # as if its lease had run out
        yield self.lock.attempt()
        self.assertTrue(self.lock.held())
        self.assertEqual((yield self.connection.execute(b"GET", self.key)), b"this-node")
        lost = [line for line in self.logged if "lost" in line]
        self.assertEqual(len(lost), 1, self.logged)
        self.assertIn("its lease ran out before this node renewed it", lost[0])
        self.assertNotIn("another node", " ".join(self.logged))
        self.assertEqual(self.lock.counters["acquired"], 2)

    @defer.inlineCallbacks
    def test_a_lock_another_node_took_names_that_node(self):
        yield self.connection.execute(b"SET", self.key, b"node-b:host:42")
        yield self.lock.attempt()
        self.assertFalse(self.lock.held())
        self.assertIn("lost: node node-b:host:42 holds it now", self.logged[-1])
