"""What every cache backend shares: key and TTL checks, the JSON codec, counters.

Values are stored as compact UTF-8 JSON, in memory as in Redis, so a value
read back equals the value stored (JSON's types: dict with text keys, list,
str, int, float, bool, None; a tuple comes back as a list) and a caller
mutating a value after ``set`` does not change the cached one.
"""

import json

import orjson

from broker.jsonfast import orjson_may_read

__all__ = ["CacheBase", "decode", "encode"]

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode(value):
    """``value`` as JSON bytes; TypeError/ValueError for what JSON cannot hold."""
    return _ENCODER.encode(value).encode("utf-8")


def decode(data):
    if orjson_may_read(data):  # the fast path
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


class CacheBase:
    """Argument checks and counters; backends implement the operations.

    :param name: the cache's name (``default`` or a named cache).
    :param default_ttl: seconds a ``set`` without ``ttl`` keeps its value; 0 = forever.
    :param max_value_size: the largest encoded value accepted, in bytes.
    """

    backend = None

    def __init__(self, name="default", default_ttl=0.0, max_value_size=1024 * 1024):
        self.name = name
        self.default_ttl = default_ttl
        self.max_value_size = max_value_size
        self.counters = {"hits": 0, "misses": 0, "sets": 0, "deletes": 0, "too_large": 0}

    def __repr__(self):
        return f"<{type(self).__name__} {self.name}>"

    @staticmethod
    def _key(key):
        if not isinstance(key, str) or not key:
            raise TypeError(f"a cache key must be a non-empty string, got {key!r}")
        return key

    def _ttl(self, ttl):
        """Seconds to keep a value (0 = forever) from a ``ttl`` argument (None = the default)."""
        if ttl is None:
            return self.default_ttl
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl < 0 or ttl != ttl:
            raise ValueError(f"a cache ttl must be a number of seconds >= 0, got {ttl!r}")
        return float(ttl)

    def _encode(self, value):
        return self.sized(encode(value))

    def sized(self, data):
        """``data`` (a value's JSON bytes) if it is within ``max_value_size``, else ValueError."""
        if len(data) > self.max_value_size:
            self.counters["too_large"] += 1
            raise ValueError(f"cache {self.name}: value of {len(data)} bytes is over the "
                             f"max_value_size of {self.max_value_size} bytes")
        return data

    @staticmethod
    def _amount(amount):
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise TypeError(f"incr amount must be an integer, got {amount!r}")
        return amount

    def _counted(self, value):
        self.counters["hits" if value is not None else "misses"] += 1
        return value

    def metrics(self):
        return {"backend": self.backend, **self.counters}
