"""Rate-limit buckets shared by the nodes of a cluster through Redis, local when Redis is down.

Each node decides at once with its own token buckets
(:class:`~broker.security.ratelimit.Buckets`), so no request waits for Redis.  Every
``interval`` it adds what it took per key to a Redis counter of the current window (one
``EVAL`` for all keys) and reads back the cluster's total: a key the cluster has used up in
this window has its local bucket emptied, so the nodes together keep to the limit (give or
take one interval).  When Redis fails or its circuit is open, the local buckets go on
limiting alone (never no limit): counted in ``redis_failures``, logged once per outage.
"""

from twisted.application.service import Service
from twisted.internet import task
from twisted.logger import Logger

from broker.security.ratelimit import Buckets

__all__ = ["SharedBuckets"]

log = Logger()

# KEYS: window counters; ARGV: per key, what this node took then the window's TTL (ms)
_ADD = b"""
local totals = {}
for i, key in ipairs(KEYS) do
  local total = redis.call('INCRBY', key, ARGV[2 * i - 1])
  if total == tonumber(ARGV[2 * i - 1]) then redis.call('PEXPIRE', key, ARGV[2 * i]) end
  totals[i] = total
end
return totals
"""

_MAX_BATCH = 1000  # keys per EVAL


class SharedBuckets(Buckets, Service):
    """:class:`~broker.security.ratelimit.Buckets` whose takings are added up in Redis.

    :param connection: the :class:`~broker.redis.connection.RedisConnection`.
    :param clock: the clock of the buckets and of the sync loop.
    :param interval: seconds between syncs.
    """

    shared = True

    def __init__(self, connection, clock, prefix="broker:", max_keys=100000, interval=0.5):
        Buckets.__init__(self, clock, max_keys)
        self.connection = connection
        self.prefix = prefix
        self.interval = interval
        self._pending = {}  # key -> [limit, tokens taken since the last sync]
        self._loop = None
        self._syncing = None
        self.redis_ok = True  # False while Redis is unavailable (the buckets limit alone)
        self.counters.update(syncs=0, redis_failures=0, drained=0, pending_dropped=0)

    def took(self, key, limit, cost):
        pending = self._pending.get(key)
        if pending is None:
            if len(self._pending) >= self.max_keys:
                self.counters["pending_dropped"] += 1
                return
            self._pending[key] = [limit, cost]
        else:
            pending[1] += cost

    def startService(self):
        super().startService()
        self._loop = task.LoopingCall(self.sync)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=False)

    def stopService(self):
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def sync(self):
        """Send what was taken, read the cluster's totals; a Deferred (one sync at a time)."""
        if self._syncing is not None or not self._pending:
            return self._syncing
        pending, self._pending = self._pending, {}
        now = self.clock.seconds()
        keys, args, limits = [], [], []
        for key, (limit, taken) in list(pending.items())[:_MAX_BATCH]:
            window = int(now // limit.per)
            keys.append(f"{self.prefix}ratelimit:{key}:{window}".encode())
            args += [str(int(taken)).encode(), str(int(limit.per * 2000) + 1000).encode()]
            limits.append((key, limit))
        d = self._syncing = self.connection.eval(_ADD, keys, args)
        d.addCallbacks(self._synced, self._failed, (limits,))
        d.addBoth(self._done)
        return d

    def _synced(self, totals, limits):
        self.counters["syncs"] += 1
        if not self.redis_ok:
            self.redis_ok = True
            log.info("rate limits: shared through Redis again")
        for (key, limit), total in zip(limits, totals):
            if int(total) >= limit.rate:
                self.counters["drained"] += 1
                self.drain(key)

    def _failed(self, failure):
        self.counters["redis_failures"] += 1
        if self.redis_ok:
            self.redis_ok = False
            log.warn("rate limits: Redis unavailable ({error}); each node limits alone until it "
                     "is back", error=failure.getErrorMessage())

    def _done(self, _):
        self._syncing = None

    def metrics(self):
        return {**super().metrics(), "redis_ok": int(self.redis_ok)}
