"""The cache API services reach as ``self.cache`` and ``self.caches[name]``.

Every method returns a Deferred: ``get(key)``, ``set(key, value, ttl=None)``,
``delete(key)``, ``expire(key, ttl)``, ``get_many(keys)``, ``incr(key,
amount=1)``.  Backends: :class:`MemoryCache` (bounded LRU with TTLs, the
default) and :class:`RedisCache` (a Redis failure is a miss, never an error).
"""

from broker.cache.base import decode, encode
from broker.cache.config import CACHE_SECTION, FEATURE, build_caches
from broker.cache.memory import MemoryCache
from broker.cache.redis import RedisCache

__all__ = ["CACHE_SECTION", "FEATURE", "MemoryCache", "RedisCache", "build_caches", "decode",
           "encode"]
