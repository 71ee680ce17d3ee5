"""Token revocations shared by the nodes of a cluster through Redis.

A revocation is kept in this node's memory at once (its tokens are refused here from that
moment) and added to a Redis sorted set (``jti`` scored by its token's expiry); every
``interval`` each node reads the set's entries not yet expired, so a token revoked on one
node is refused on all within an interval.  Redis down: each node keeps what it knows and
retries (counted, logged once per outage); nothing revoked is forgotten before it expires.
"""

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.logger import Logger

from broker.security.tokens import MemoryRevocations

__all__ = ["RedisRevocations"]

log = Logger()


class RedisRevocations(MemoryRevocations, Service):
    """:class:`~broker.security.tokens.MemoryRevocations` mirrored to and from Redis."""

    def __init__(self, connection, clock, prefix="broker:", max_entries=100000, interval=0.5):
        MemoryRevocations.__init__(self, clock, max_entries)
        self.connection = connection
        self.key = f"{prefix}revoked".encode()
        self.interval = interval
        self._loop = None
        self._unsent = {}
        self.shared = True
        self.counters.update(syncs=0, redis_failures=0)

    def revoke(self, jti, expires_at):
        MemoryRevocations.revoke(self, jti, expires_at)
        self._unsent[jti] = expires_at
        return self.sync()

    def startService(self):
        super().startService()
        self._loop = task.LoopingCall(self.sync)
        self._loop.clock = self._clock
        self._loop.start(self.interval, now=True)

    def stopService(self):
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    @defer.inlineCallbacks
    def sync(self):
        """Send the revocations not yet sent, drop expired ones, learn the others'."""
        now = self._clock.seconds()
        unsent, self._unsent = self._unsent, {}
        try:
            if unsent:
                args = []
                for jti, until in unsent.items():
                    args += [repr(float(until)).encode(), jti.encode()]
                yield self.connection.execute(b"ZADD", self.key, *args)
            yield self.connection.execute(b"ZREMRANGEBYSCORE", self.key, b"-inf",
                                          repr(float(now)).encode())
            found = yield self.connection.execute(b"ZRANGEBYSCORE", self.key,
                                                  repr(float(now)).encode(), b"+inf",
                                                  b"WITHSCORES")
        except Exception as exc:
            self._unsent.update(unsent)  # sent next time
            self.counters["redis_failures"] += 1
            if self.shared:
                self.shared = False
                log.warn("token revocations: Redis unavailable ({error}); kept here and sent "
                         "when it is back", error=str(exc) or type(exc).__name__)
            return
        self.counters["syncs"] += 1
        if not self.shared:
            self.shared = True
            log.info("token revocations: shared through Redis again")
        self.prune()
        for jti, until in zip(found[::2], found[1::2]):
            self.add(jti.decode() if isinstance(jti, bytes) else jti, float(until))
