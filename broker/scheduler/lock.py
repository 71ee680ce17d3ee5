"""Who runs the jobs: every node alone, or one node of a cluster holding a Redis lock.

:class:`RedisLeaderLock` holds ``key`` with ``SET NX PX ttl`` and renews it
every ``renew`` seconds only while the value is still its own (a Lua
compare-and-expire).  A node believes it holds the lock only until the
lease it last confirmed would run out, so a node cut off from Redis stops
running jobs before another can take over.  When the holder dies its key
expires after ``ttl`` and the next node to try takes it.  A renewal that
finds the key gone (its lease ran out: the node was frozen or cut off for
longer than ``ttl``) takes it again at once; one that finds another node's
value names that node.
"""

import uuid

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.logger import Logger

__all__ = ["LocalLock", "RedisLeaderLock", "StandbyLock"]

log = Logger()

# 1 when renewed; else the holder's value, or nil when nobody holds it.
_RENEW = b"""local holder = redis.call('get', KEYS[1])
if holder == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return holder"""
_RELEASE = b"""if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1]) else return 0 end"""


class LocalLock(Service):
    """Always held: the node runs every job itself (no Redis configured)."""

    owner = "local"

    def held(self):
        return True

    def ready(self):
        return defer.succeed(None)

    def status(self):
        return {"mode": "local", "held": True}


class StandbyLock(LocalLock):
    """Never held: a worker process that is not its node's primary (the primary runs
    the jobs, once per node)."""

    owner = "primary worker"

    def held(self):
        return False

    def status(self):
        return {"mode": "primary worker", "held": False}


class RedisLeaderLock(Service):
    """A lease on ``key`` in Redis, taken and renewed on the clock.

    :param connection: a :class:`~broker.redis.connection.RedisConnection`.
    :param owner: this node's unique value in the key (default: a random id).
    :param ttl: seconds the lease lasts without renewal.
    :param renew: seconds between attempts to take or renew it (< ttl).
    """

    def __init__(self, connection, key, clock, owner=None, ttl=30.0, renew=10.0):
        if not 0 < renew < ttl:
            raise ValueError("lock renew must be more than 0 and less than the ttl")
        self.connection = connection
        self.key = key.encode() if isinstance(key, str) else key
        self.clock = clock
        self.owner = owner or uuid.uuid4().hex
        self.ttl, self.renew = ttl, renew
        self._held = False
        self._lease_until = 0.0
        self._loop = None
        self._first = defer.Deferred()
        self._busy = False
        self.counters = {"acquired": 0, "lost": 0, "attempts": 0, "errors": 0}

    def held(self):
        """Whether this node holds the lock now (its lease has not run out)."""
        return self._held and self.clock.seconds() < self._lease_until

    def ready(self):
        """A Deferred firing once the first attempt to take the lock has finished."""
        if self._first.called:
            return defer.succeed(None)
        d = defer.Deferred()
        self._first.addBoth(lambda r: (d.callback(None), r)[1])
        return d

    def status(self):
        return {"mode": "redis", "held": self.held(), "owner": self.owner,
                "key": self.key.decode(), **self.counters}

    def startService(self):
        super().startService()
        self._loop = task.LoopingCall(self.attempt)
        self._loop.clock = self.clock
        self._loop.start(self.renew, now=True).addErrback(
            lambda f: log.failure("scheduler lock loop stopped", f))

    def stopService(self):
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if not self._held:
            return None
        self._held = False
        d = self.connection.execute(b"EVAL", _RELEASE, 1, self.key, self.owner)
        return d.addErrback(lambda f: log.warn("scheduler lock: release failed: {error}",
                                               error=f.getErrorMessage()))

    def attempt(self):
        """Take or renew the lease once; a Deferred (errors are counted, not raised)."""
        if self._busy:
            return None
        self._busy = True
        self.counters["attempts"] += 1
        sent = self.clock.seconds()
        if self._held:
            d = self.connection.execute(b"EVAL", _RENEW, 1, self.key, self.owner, self._ttl_ms)
            d.addCallback(self._renewed, sent)
        else:
            d = self._take(sent)
        d.addErrback(self._error)
        d.addBoth(self._done)
        return d

    @property
    def _ttl_ms(self):
        return max(1, round(self.ttl * 1000))

    def _take(self, sent):
        d = self.connection.execute(b"SET", self.key, self.owner, b"NX", b"PX", self._ttl_ms)
        return d.addCallback(lambda reply: self._acquired(reply is not None, sent))

    def _acquired(self, ok, sent):
        if ok:
            self._held, self._lease_until = True, sent + self.ttl
            self.counters["acquired"] += 1
            log.info("scheduler lock {key} taken by this node ({owner})", key=self.key.decode(),
                     owner=self.owner)

    def _renewed(self, holder, sent):
        if holder == 1:
            self._lease_until = sent + self.ttl
        elif holder is None:
            self._lose("its lease ran out before this node renewed it; taking it again")
            return self._take(self.clock.seconds())
        else:
            self._lose(f"node {holder.decode(errors='replace')} holds it now")
        return None

    def _lose(self, why):
        if self._held:
            self._held = False
            self.counters["lost"] += 1
            log.warn("scheduler lock {key} lost: {why}", key=self.key.decode(), why=why)

    def _error(self, failure):
        self.counters["errors"] += 1
        if self._held and not self.held():
            self._lose("lease ran out while Redis was unreachable")
        log.warn("scheduler lock {key}: {error}", key=self.key.decode(),
                 error=failure.getErrorMessage())

    def _done(self, _):
        self._busy = False
        if not self._first.called:
            self._first.callback(None)
