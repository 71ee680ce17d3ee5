"""What a worker shares with the other workers of its node, through the main process.

A worker's pub/sub store, memory caches and once-per-node role are these
objects instead of its own (:class:`WorkerRole` is what the components see
as ``ctx.worker``); with Redis configured the components use Redis as on
any node, and nothing here is involved.

Consistency: the main process holds the node's memory caches and pub/sub
history and applies operations one at a time in the order they arrive, so
every worker reads its own writes and a value set in one worker is read by
any other once the ``set`` has answered (linearizable per key, one hop of
latency more than a local cache).
"""

from functools import partial

from twisted.internet import defer

from broker.cache.base import CacheBase, decode
from broker.pubsub.history import Replay
from broker.pubsub.message import Message
from broker.workers.link import RemoteError

__all__ = ["NodeCache", "NodeStore", "WorkerRole"]


class NodeStore:
    """A pub/sub store whose ids, history and fan-out are the main process's.

    A message published in any worker is numbered by the main process, kept in
    its history and sent to every worker in id order; each worker's hub
    dispatches it to its own sessions, so every subscriber gets it once.
    """

    def __init__(self, link):
        self.link = link
        self.hub = None
        self.counters = {"node_messages": 0}
        link.notices["message"] = self._message

    def attach(self, hub):
        self.hub = hub

    def publish(self, topic, data_json, publisher):
        return self.link.call("publish", topic, data_json, publisher)

    def replay(self, pattern, key, limit):
        d = self.link.call("replay", pattern, key[0], key[1], limit)
        return d.addCallback(lambda found: Replay([Message(*m) for m in found[0]], found[1]))

    def _message(self, topic, msg_id, published_at, data_json, publisher):
        self.counters["node_messages"] += 1
        if self.hub is not None:
            self.hub.dispatch(Message(topic, msg_id, published_at, data_json, publisher))


_ERRORS = {"value_error": ValueError, "type_error": TypeError}


def _local_error(failure):
    """A ValueError/TypeError raised in the main process is raised here as itself."""
    if failure.check(RemoteError) and failure.value.code in _ERRORS:
        raise _ERRORS[failure.value.code](failure.value.message)
    return failure


class NodeCache(CacheBase):
    """A memory cache of the node: kept by the main process, the same in every worker.

    Keys, TTLs and values are checked here (the same errors as a local cache);
    values cross the link as their JSON text.
    """

    backend = "memory"

    def __init__(self, link, name="default", default_ttl=0.0, max_value_size=1024 * 1024):
        super().__init__(name, default_ttl, max_value_size)
        self.link = link

    def _call(self, op, *args):
        return self.link.call("cache", self.name, op, *args).addErrback(_local_error)

    def get(self, key):
        self._key(key)
        return self._call("get", key).addCallback(
            lambda text: self._counted(None if text is None else decode(text.encode())))

    def set(self, key, value, ttl=None):
        try:
            key, ttl, data = self._key(key), self._ttl(ttl), self._encode(value)
        except (TypeError, ValueError) as error:
            return defer.fail(error)
        self.counters["sets"] += 1
        return self._call("set", key, data.decode(), ttl)

    def delete(self, key):
        self._key(key)
        d = self._call("delete", key)

        def counted(found):
            if found:
                self.counters["deletes"] += 1
            return found
        return d.addCallback(counted)

    def expire(self, key, ttl):
        try:
            key, ttl = self._key(key), self._ttl(ttl if ttl is not None else 0)
        except (TypeError, ValueError) as error:
            return defer.fail(error)
        return self._call("expire", key, ttl)

    def get_many(self, keys):
        keys = [self._key(key) for key in keys]

        def decoded(found):
            for key in keys:
                self._counted(found.get(key))
            return {key: decode(text.encode()) for key, text in found.items()}
        return self._call("get_many", keys).addCallback(decoded)

    def incr(self, key, amount=1):
        try:
            key, amount = self._key(key), self._amount(amount)
        except TypeError as error:
            return defer.fail(error)
        return self._call("incr", key, str(amount)).addCallback(int)


class WorkerRole:
    """What the components of a worker's node see as ``ctx.worker``.

    :ivar id: the worker's number (0 .. N-1).
    :ivar primary: whether this worker runs what must run once per node (the
        scheduler without Redis, ZeroMQ binds).
    :ivar link: the :class:`~broker.workers.link.Link` to the main process.
    :ivar count: how many workers the node runs.
    """

    def __init__(self, worker_id, link, primary, count=1):
        self.id = worker_id
        self.link = link
        self.primary = primary
        self.count = count
        self._store = None

    def node_report(self):
        """Deferred: every worker's report (id, pid, ok, checks, counters...), from the main process."""
        return self.link.call("node_report")

    def pubsub_store(self):
        if self._store is None:
            self._store = NodeStore(self.link)
        return self._store

    def memory_cache(self, name, section):
        return NodeCache(self.link, name, section.default_ttl, section.max_value_size)

    def task_store(self):
        """The node's task store, kept by the main process (any worker answers a status)."""
        return NodeObject(self.link, "tasks", ("put", "get", "heartbeat", "alive"))

    def live_state(self, poll_interval):
        """The node's live-configuration state, kept by the main process; every worker polls
        its version and applies what another worker changed."""
        from broker.node.livestate import LiveState

        class NodeLiveState(NodeObject, LiveState):
            shared = True
            where = "the main process"
        state = NodeLiveState(self.link, "live", ("load", "save", "version"))
        state.poll_interval = poll_interval
        return state

    def revocations(self, max_entries):
        """Token revocations: one made in any worker reaches every worker at once."""
        from broker.security.tokens import MemoryRevocations
        link = self.link

        class NodeRevocations(MemoryRevocations):
            def revoke(self, jti, expires_at):
                super().revoke(jti, expires_at)
                link.notify("broadcast", "revoked", jti, expires_at)
        revocations = NodeRevocations(self.link.reactor, max_entries)
        link.notices["revoked"] = revocations.add
        return revocations


class NodeObject:
    """One of the main process's objects (``Central.objects``): each method a call over the link."""

    def __init__(self, link, name, methods):
        self.counters = {}  # the main process's object counts; a worker has none of its own
        for method in methods:  # instance attributes: they win over a base class's methods
            setattr(self, method, partial(link.call, "object", name, method))
