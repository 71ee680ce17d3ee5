"""The ``cache:`` section: the default cache and named ones, memory or Redis.

::

    cache:
      backend: redis          # memory or redis (default: redis when `redis` is set)
      redis: main             # a `connections:` entry of type redis, or a redis:// URL
      prefix: "broker:"
      timeout: 1s
      named:
        - name: rates
          backend: memory
          max_entries: 1000

With no ``cache:`` section the node has a memory cache; ``redis:
${BROKER_REDIS_URL:}`` alone gives a Redis cache when the variable is set
and a memory one when it is empty.  The builder sets
``resources.cache`` (the default) and ``resources.caches`` (``{"default":
..., "rates": ...}``) and registers each cache's counters under
``cache.<name>`` in ``resources.metrics``.
"""

from broker.cache.memory import MemoryCache
from broker.cache.redis import RedisCache
from broker.components import ComponentType, Needs
from broker.config.schema import (Choice, Duration, Field, Int, ListOf, Name, Schema, Size, Str,
                                  config_error)

__all__ = ["CACHE_SECTION", "FEATURE", "backend_of", "build_caches", "memory_cache"]



def _needs_redis(section):
    if section.backend == "redis" and not section.redis:
        raise ValueError("redis: backend redis needs a redis connection's name or a redis:// URL")


def _backend(section):
    """The backend asked for; without one, redis when a connection is named, else memory."""
    return section.backend or ("redis" if section.redis else "memory")


def _fields(named):
    fields = {
        "backend": Field(Choice("memory", "redis"), default=None,
                         doc="default: redis when `redis` is set (not empty), else memory"),
        "redis": Field(Str(), default=None,
                       doc="a redis connection's name or a redis:// URL (backend redis)"),
        "max_entries": Field(Int(min=1), default=10000, doc="memory backend: LRU bound"),
        "default_ttl": Field(Duration(), default=0.0, doc="seconds a value is kept; 0 = forever"),
        "timeout": Field(Duration(min=0.001), default=1.0, doc="redis backend: per command"),
        "prefix": Field(Str(), default=None if named else "broker:",
                        doc="redis backend: key prefix (named caches: <prefix><name>:)"),
        "max_value_size": Field(Size(min=1), default="1MiB"),
    }
    if named:
        fields = {"name": Field(Name(), required=True), **fields}
    return fields


NAMED_CACHE = Schema("named cache", _fields(True), validate=_needs_redis)


def _check(section):
    _needs_redis(section)
    seen = set()
    for item in section.named:
        if item.name == "default" or item.name in seen:
            raise config_error(item, "name", f'cache name "{item.name}" is '
                               + ("reserved" if item.name == "default" else "used twice"))
        seen.add(item.name)


CACHE_SECTION = Schema("cache", {**_fields(False),
                                 "named": Field(ListOf(NAMED_CACHE), default=[])},
                       validate=_check)


def _build_one(section, name, prefix, ctx):
    if _backend(section) == "redis":
        connection = ctx.connection(section, "redis", "redis")
        return RedisCache(connection, name=name, prefix=prefix, timeout=section.timeout,
                          default_ttl=section.default_ttl, max_value_size=section.max_value_size)
    if ctx.worker is not None:  # the node's memory cache, kept by the main process
        return ctx.worker.memory_cache(name, section)
    return memory_cache(section, name, ctx.reactor)


def memory_cache(section, name, clock):
    """The memory cache a checked (default or named) cache section describes."""
    return MemoryCache(clock, name=name, max_entries=section.max_entries,
                       default_ttl=section.default_ttl, max_value_size=section.max_value_size)


def backend_of(section):
    """``memory`` or ``redis``: what a checked cache section asks for."""
    return _backend(section)


class Caches(dict):
    """``{name: cache}`` as built; ``default`` is the node's default cache."""


def build_caches(section, ctx):
    """Build the default and named caches into ``ctx.resources``."""
    caches = Caches(default=_build_one(section, "default", section.prefix, ctx))
    for item in section.named:
        prefix = item.prefix if item.prefix is not None else f"{section.prefix}{item.name}:"
        caches[item.name] = _build_one(item, item.name, prefix, ctx)
    ctx.lend("cache", caches["default"])
    ctx.lend("caches", caches)
    for name, cache in caches.items():
        ctx.metrics(f"cache.{name}", cache.metrics)
    return caches


#: The ``cache:`` section: ``self.cache`` and ``self.caches[name]``.
FEATURE = ComponentType(CACHE_SECTION, build_caches,
                        needs=[Needs.connection("redis", "redis", each="named")])
