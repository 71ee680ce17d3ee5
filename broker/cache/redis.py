"""The Redis cache: the same API as the memory cache, over a named Redis connection.

Keys are ``prefix + key``; values compact UTF-8 JSON, so they round-trip
exactly.  Every command has the cache's ``timeout``.  When Redis fails or
times out the caller sees a miss (``get`` → None, ``get_many`` → ``{}``,
``set``/``delete``/``expire`` → False, ``incr`` → None), a counter goes up and
one line is logged; while the connection's circuit is open, commands are not
sent at all (counted as ``short_circuited``, logged only when the circuit
changes state).  A usage error (``incr`` on a key that holds text) is
raised to the caller, as with the memory cache.
"""

from twisted.internet import defer
from twisted.logger import Logger

from broker.cache.base import CacheBase, decode
from broker.redis.connection import RedisFailure, RedisUnavailable

__all__ = ["RedisCache"]

log = Logger()

_MISSING = object()


class RedisCache(CacheBase):
    """:class:`~broker.cache.base.CacheBase` over a :class:`~broker.redis.connection.RedisConnection`.

    :param connection: the connection commands go through.
    :param prefix: prepended to every key (``broker:``).
    :param timeout: seconds each command may take.
    """

    backend = "redis"

    def __init__(self, connection, name="default", prefix="broker:", timeout=1.0, default_ttl=0.0,
                 max_value_size=1024 * 1024):
        super().__init__(name, default_ttl, max_value_size)
        self.connection = connection
        self.prefix = prefix
        self.timeout = timeout
        self.counters.update(errors=0, timeouts=0, short_circuited=0, decode_errors=0)

    def _k(self, key):
        return (self.prefix + self._key(key)).encode("utf-8")

    def _command(self, op, *args, miss=None):
        """Run a command; a Redis failure becomes ``miss`` (counted and logged)."""
        d = self.connection.execute(*args, timeout=self.timeout)
        return d.addErrback(self._failed, op, miss)

    def _failed(self, failure, op, miss):
        if failure.check(RedisUnavailable):
            self.counters["short_circuited"] += 1
            return miss
        if failure.check(RedisFailure):
            self.counters["errors"] += 1
            if "timed out" in failure.getErrorMessage():
                self.counters["timeouts"] += 1
            log.warn("cache {cache}: {op} failed, answered as a miss: {error}", cache=self.name,
                     op=op, error=failure.getErrorMessage())
            return miss
        return failure

    def _value(self, data, key, missing=None):
        if data is None:
            return missing
        try:
            return decode(data)
        except ValueError:
            self.counters["decode_errors"] += 1
            log.warn("cache {cache}: {key} does not hold JSON; answered as a miss",
                     cache=self.name, key=key)
            return missing

    def get(self, key):
        """The value under ``key``, or None (also when Redis fails)."""
        try:
            k = self._k(key)
        except Exception:
            return defer.fail()
        d = self._command("get", b"GET", k)
        return d.addCallback(lambda data: self._counted(self._value(data, key)))

    def set(self, key, value, ttl=None):
        """Store ``value`` for ``ttl`` seconds (None: ``default_ttl``; 0: forever); False on failure."""
        try:
            args = [b"SET", self._k(key), self._encode(value)]
            ttl = self._ttl(ttl)
        except Exception:
            return defer.fail()
        if ttl:
            args += [b"PX", max(1, round(ttl * 1000))]
        self.counters["sets"] += 1
        return self._command("set", *args, miss=False).addCallback(lambda reply: reply is not False)

    def delete(self, key):
        """Remove ``key``; True if it was there."""
        try:
            k = self._k(key)
        except Exception:
            return defer.fail()
        self.counters["deletes"] += 1
        return self._command("delete", b"DEL", k, miss=0).addCallback(bool)

    def expire(self, key, ttl):
        """Keep ``key`` for ``ttl`` more seconds (0: forever); False if absent or on failure."""
        try:
            k = self._k(key)
            ttl = self._ttl(ttl if ttl is not None else 0)
        except Exception:
            return defer.fail()
        if ttl:
            d = self._command("expire", b"PEXPIRE", k, max(1, round(ttl * 1000)), miss=0)
            return d.addCallback(bool)
        # PERSIST answers 0 for a key without a TTL too: ask whether the key exists.
        d = self._command("expire", b"PERSIST", k, miss=None)
        d.addCallback(lambda reply: None if reply is None else
                      self._command("expire", b"EXISTS", k, miss=0))
        return d.addCallback(bool)

    def get_many(self, keys):
        """``{key: value}`` for those of ``keys`` present; ``{}`` when Redis fails."""
        keys = list(keys)
        if not keys:
            return defer.succeed({})
        try:
            ks = [self._k(key) for key in keys]
        except Exception:
            return defer.fail()

        def collect(values):
            found = {}
            for key, data in zip(keys, values or ()):
                value = _MISSING if data is None else self._value(data, key, _MISSING)
                self.counters["misses" if value is _MISSING else "hits"] += 1
                if value is not _MISSING:
                    found[key] = value
            if not values:
                self.counters["misses"] += len(keys)
            return found

        return self._command("get_many", b"MGET", *ks, miss=None).addCallback(collect)

    def incr(self, key, amount=1):
        """Add ``amount`` to the integer under ``key``; the new value, or None if Redis fails."""
        try:
            k, amount = self._k(key), self._amount(amount)
        except Exception:
            return defer.fail()
        d = self._command("incr", b"INCRBY", k, amount)
        return d.addErrback(self._not_integer, key)

    def _not_integer(self, failure, key):
        from txredisapi import ResponseError  # noqa: PLC0415 -- loaded with the connection
        failure.trap(ResponseError)
        raise ValueError(f"cache {self.name}: {key} does not hold an integer "
                         f"({failure.getErrorMessage()})")
