"""The in-memory cache: a bounded LRU whose entries may expire.

The default backend.  At most ``max_entries`` values are kept; storing one
more evicts the least recently used.  An expired value is dropped when it
is next touched (or evicted like any other).  Time comes from the injected
clock, so a unit test drives expiry with ``task.Clock``.
"""

from collections import OrderedDict

from twisted.internet import defer

from broker.cache.base import CacheBase, decode

__all__ = ["MemoryCache"]


class MemoryCache(CacheBase):
    """:class:`~broker.cache.base.CacheBase` over an ``OrderedDict``; every method returns a Deferred.

    :param clock: anything with ``seconds()``.
    :param max_entries: the most values kept.
    """

    backend = "memory"

    def __init__(self, clock, name="default", max_entries=10000, default_ttl=0.0,
                 max_value_size=1024 * 1024):
        super().__init__(name, default_ttl, max_value_size)
        self.clock = clock
        self.max_entries = max_entries
        self._entries = OrderedDict()  # key -> [encoded value, expires at or None]
        self.counters.update(evictions=0, expired=0)

    def __len__(self):
        return len(self._entries)

    def _live(self, key):
        """The entry for ``key`` if present and not expired, marked recently used."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] is not None and entry[1] <= self.clock.seconds():
            del self._entries[key]
            self.counters["expired"] += 1
            return None
        self._entries.move_to_end(key)
        return entry

    def _expiry(self, ttl):
        return self.clock.seconds() + ttl if ttl else None

    def _get(self, key):
        entry = self._live(self._key(key))
        return self._counted(decode(entry[0]) if entry is not None else None)

    def get(self, key):
        """The value under ``key``, or None."""
        return defer.maybeDeferred(self._get, key)

    def _set(self, key, value, ttl):
        return self.store_encoded(self._key(key), self._encode(value), self._ttl(ttl))

    def get_encoded(self, key):
        """The JSON bytes under ``key``, or None (not counted: for a node's worker processes,
        which count their own hits)."""
        entry = self._live(self._key(key))
        return None if entry is None else entry[0]

    def store_encoded(self, key, data, ttl):
        """Keep ``data`` (a value's JSON bytes, already checked) under ``key`` for ``ttl`` s."""
        self._entries[key] = [data, self._expiry(ttl)]
        self._entries.move_to_end(key)
        self.counters["sets"] += 1
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
            self.counters["evictions"] += 1
        return True

    def set(self, key, value, ttl=None):
        """Store ``value`` for ``ttl`` seconds (None: ``default_ttl``; 0: forever)."""
        return defer.maybeDeferred(self._set, key, value, ttl)

    def _delete(self, key):
        found = self._live(self._key(key)) is not None
        if found:
            del self._entries[key]
            self.counters["deletes"] += 1
        return found

    def delete(self, key):
        """Remove ``key``; True if it was there."""
        return defer.maybeDeferred(self._delete, key)

    def _expire(self, key, ttl):
        ttl = self._ttl(ttl if ttl is not None else 0)
        entry = self._live(self._key(key))
        if entry is None:
            return False
        entry[1] = self._expiry(ttl)
        return True

    def expire(self, key, ttl):
        """Keep ``key`` for ``ttl`` more seconds (0: forever); False if it is not there."""
        return defer.maybeDeferred(self._expire, key, ttl)

    def _get_many(self, keys):
        found = {}
        for key in keys:
            entry = self._live(self._key(key))
            if self._counted(entry) is not None:
                found[key] = decode(entry[0])
        return found

    def get_many(self, keys):
        """``{key: value}`` for those of ``keys`` that are present."""
        return defer.maybeDeferred(self._get_many, list(keys))

    def _incr(self, key, amount):
        key, amount = self._key(key), self._amount(amount)
        entry = self._live(key)
        if entry is None:
            value = amount
            self._set(key, value, 0)
            return value
        current = decode(entry[0])
        if isinstance(current, bool) or not isinstance(current, int):
            raise ValueError(f"cache {self.name}: {key} does not hold an integer")
        value = current + amount
        entry[0] = str(value).encode()
        return value

    def incr(self, key, amount=1):
        """Add ``amount`` to the integer under ``key`` (0 if absent, kept forever); the new value.

        An existing key keeps its expiry, as Redis' INCRBY does.
        """
        return defer.maybeDeferred(self._incr, key, amount)
