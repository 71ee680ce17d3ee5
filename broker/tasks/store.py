"""Where task records live: one small interface, in memory or in Redis.

A record is a plain dict (``id``, ``status``, ``service``, ``owner``, ``node``,
``created``, ``finished``, ``data`` or ``error``...).  Every store keeps a
record for ``keep`` seconds after it was last written and holds at most a
bounded number; it also tells whether the node that runs a task is still
alive, so a task whose node died is reported ``lost``, not ``pending`` forever.

Both stores answer Deferreds, so a third one (shared through a main process)
can stand in without changing the runner.
"""

import json
from collections import OrderedDict

from twisted.internet import defer
from zope.interface import Interface, implementer

from broker.errors import ServiceUnavailable

__all__ = ["ITaskStore", "MemoryTaskStore", "RedisTaskStore", "StoreFull"]


class StoreFull(ServiceUnavailable):
    """The store holds as many tasks as it may: no new task is taken."""

    default_message = "Too many tasks are kept: try again later"


class ITaskStore(Interface):
    """What the task runner needs of a store."""

    def put(record, ttl):
        """Write ``record`` (replacing any of its id), kept ``ttl`` seconds; Deferred(None).
        A new record over the bound fails with :class:`StoreFull`."""

    def get(task_id):
        """Deferred(the record, or None when unknown or expired)."""

    def heartbeat(node_id, ttl):
        """Say ``node_id`` is alive for ``ttl`` seconds more; Deferred(None)."""

    def alive(node_id):
        """Deferred(whether ``node_id`` said it was alive within its last ttl)."""


@implementer(ITaskStore)
class MemoryTaskStore:
    """Records in one process, bounded by ``max_tasks``; expired ones are dropped lazily.

    :param clock: what ``seconds()`` is read from (the reactor; a fake one in tests).
    """

    #: each put is done when it returns (so writes of one task never cross)
    writes_at_once = True

    def __init__(self, clock, max_tasks=100_000):
        self.clock = clock
        self.max_tasks = max_tasks
        self._records = OrderedDict()   # id -> (expires_at, record), oldest write first
        self._nodes = {}
        self.counters = {"stored": 0, "expired": 0, "refused_full": 0}

    def put(self, record, ttl):
        records = self._records
        task_id = record["id"]
        now = self.clock.seconds()
        if task_id in records:
            del records[task_id]
        elif len(records) >= self.max_tasks:
            self._purge(now)
            if len(records) >= self.max_tasks:
                self.counters["refused_full"] += 1
                return defer.fail(StoreFull())
        records[task_id] = (now + ttl, record)
        self.counters["stored"] += 1
        return defer.succeed(None)

    def _purge(self, now):
        expired = [k for k, (at, _) in self._records.items() if at <= now]
        for key in expired:
            del self._records[key]
        self.counters["expired"] += len(expired)

    def get(self, task_id):
        found = self._records.get(task_id)
        if found is None:
            return defer.succeed(None)
        if found[0] <= self.clock.seconds():
            del self._records[task_id]
            self.counters["expired"] += 1
            return defer.succeed(None)
        return defer.succeed(found[1])

    def heartbeat(self, node_id, ttl):
        self._nodes[node_id] = self.clock.seconds() + ttl
        return defer.succeed(None)

    def alive(self, node_id):
        return defer.succeed(self._nodes.get(node_id, 0) > self.clock.seconds())

    def __len__(self):
        return len(self._records)


@implementer(ITaskStore)
class RedisTaskStore:
    """Records as JSON strings under ``<namespace>:task:<id>`` with a TTL, so any node
    (and any worker) answers a task's status; nodes' heartbeats under ``<namespace>:node:``.

    Redis bounds the records by their TTL (``keep``); ``max_tasks`` is not counted here.

    :param connection: a :class:`~broker.redis.connection.RedisConnection`.
    """

    def __init__(self, connection, namespace="broker:tasks"):
        self.connection = connection
        self.namespace = namespace
        self.counters = {"stored": 0, "store_errors": 0}

    def _key(self, kind, name):
        return f"{self.namespace}:{kind}:{name}".encode()

    def put(self, record, ttl):
        value = json.dumps(record, separators=(",", ":"), default=str).encode()
        d = self.connection.execute(b"SET", self._key("task", record["id"]), value, b"PX",
                                    max(1, int(ttl * 1000)))
        return d.addCallbacks(self._stored, self._failed)

    def _stored(self, _):
        self.counters["stored"] += 1

    def _failed(self, failure):
        self.counters["store_errors"] += 1
        return failure

    def get(self, task_id):
        d = self.connection.execute(b"GET", self._key("task", task_id))
        return d.addCallback(lambda value: json.loads(value) if value else None)

    def heartbeat(self, node_id, ttl):
        return self.connection.execute(b"SET", self._key("node", node_id), b"1", b"PX",
                                       max(1, int(ttl * 1000)))

    def alive(self, node_id):
        return self.connection.execute(b"EXISTS", self._key("node", node_id)).addCallback(bool)
