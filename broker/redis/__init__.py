"""Redis: the named ``redis`` connection type shared by the cache, scheduler and pub/sub."""

from broker.redis.breaker import CircuitBreaker
from broker.redis.connection import (REDIS_CONNECTION, RedisConnection, RedisFailure,
                                     RedisUnavailable, build_redis_connection, parse_redis_url,
                                     redis_connection_from_url)

__all__ = ["REDIS_CONNECTION", "CircuitBreaker", "RedisConnection", "RedisFailure",
           "RedisUnavailable", "build_redis_connection", "parse_redis_url",
           "redis_connection_from_url"]
