"""Redis: the ``redis`` connection type shared by the cache, scheduler and pub/sub.

Features name a connection (``redis: main``) or a URL (``redis: redis://host``,
one connection per address, made by the node).
"""

from broker.components import ComponentType
from broker.redis.breaker import CircuitBreaker
from broker.redis.connection import (REDIS_CONNECTION, RedisConnection, RedisFailure,
                                     RedisUnavailable, build_redis_connection,
                                     build_redis_from_url, parse_redis_url, redis_url_name)

__all__ = ["CONNECTION", "BY_URL", "CircuitBreaker", "RedisConnection", "RedisFailure",
           "RedisUnavailable", "parse_redis_url"]

#: ``connections:`` type ``redis``.
CONNECTION = ComponentType(REDIS_CONNECTION, build_redis_connection)
#: A connection a feature names by URL: ``(name of the URL, its type)``.
BY_URL = (redis_url_name, ComponentType(None, build_redis_from_url))
