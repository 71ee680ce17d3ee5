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
