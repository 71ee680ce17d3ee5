"""Rate limits: token buckets on an injected clock, keyed per channel, caller or address.

A :class:`Limit` is ``rate`` requests per ``per`` seconds with a ``burst``, counted
``by`` ``channel`` (everyone together), ``caller`` (per definition's caller or token
subject) or ``address`` (per client address).  :class:`Buckets` holds the buckets of one
node (bounded: the least recently used key goes first, counted); a shared implementation
(:mod:`broker.redis.ratelimit`) also adds up what every node took, and falls back to these
local buckets when Redis is down (never to no limit).  Over a limit is
:class:`~broker.errors.TooManyRequests` with ``Retry-After`` and ``RateLimit-*`` headers.
"""

import math

from twisted.logger import Logger

from broker.errors import TooManyRequests

__all__ = ["Buckets", "Limit", "rate_limited"]

log = Logger()


class Limit:
    """``rate`` per ``per`` seconds, up to ``burst`` at once, counted ``by`` one key."""

    __slots__ = ("rate", "per", "burst", "by", "name", "fill")

    def __init__(self, rate, per=1.0, burst=None, by="address", name=""):
        self.rate, self.per, self.by, self.name = rate, per, by, name
        self.burst = float(burst if burst else rate)
        self.fill = rate / per  # tokens a second

    def __repr__(self):
        return f"Limit({self.rate}/{self.per}s, burst={self.burst}, by={self.by})"


class Buckets:
    """Token buckets of one node: ``{key: [tokens, last time]}``, at most ``max_keys`` (the
    oldest key goes first: a full bucket is what it would be given anew).

    :param clock: what tells the time (``seconds()``).
    """

    shared = False  # whether took() reports what is taken (a shared implementation)

    def __init__(self, clock, max_keys=100000):
        self.clock = clock
        self.max_keys = max_keys
        self._buckets = {}
        self.counters = {"allowed": 0, "limited": 0, "evicted": 0}

    def take(self, key, limit, cost=1.0):
        """Take ``cost`` tokens from ``key``'s bucket: 0.0 when they were there, else the
        seconds until they will be (nothing taken)."""
        now = self.clock.seconds()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:  # the oldest key goes
                self._buckets.pop(next(iter(self._buckets)))
                self.counters["evicted"] += 1
            bucket = self._buckets[key] = [limit.burst, now]
        elif now > bucket[1]:
            tokens = bucket[0] + (now - bucket[1]) * limit.fill
            bucket[0] = tokens if tokens < limit.burst else limit.burst
            bucket[1] = now
        if bucket[0] >= cost:
            bucket[0] -= cost
            self.counters["allowed"] += 1
            if self.shared:
                self.took(key, limit, cost)
            return 0.0
        self.counters["limited"] += 1
        return (cost - bucket[0]) / limit.fill

    def took(self, key, limit, cost):
        """Called for every token taken (a shared implementation reports them)."""

    def drain(self, key, tokens=0.0):
        """Leave at most ``tokens`` in ``key``'s bucket (the cluster took the rest)."""
        bucket = self._buckets.get(key)
        if bucket is not None and bucket[0] > tokens:
            bucket[0] = tokens

    def __len__(self):
        return len(self._buckets)

    def metrics(self):
        return {**self.counters, "keys": len(self._buckets)}


def rate_limited(limit, remaining, retry_after, where=""):
    """The 429 for ``limit``: ``Retry-After`` rounded up, ``RateLimit-*`` headers."""
    wait = max(1, math.ceil(retry_after))
    return TooManyRequests(headers={
        "Retry-After": str(wait),
        "RateLimit-Limit": str(limit.rate),
        "RateLimit-Remaining": str(remaining),
        "RateLimit-Reset": str(wait),
        "RateLimit-Policy": f"{limit.rate};w={_seconds(limit.per)};burst={int(limit.burst)}",
    })


def _seconds(value):
    return int(value) if float(value).is_integer() else value
