"""The cache:, scheduler: and redis connection config: defaults and clear errors."""

import textwrap

import pytest
from twisted.internet import task

from broker.cache import MemoryCache, RedisCache
from broker.config import ConfigError
from broker.node import build_node
from broker.redis import RedisConnection


def _node(tmp_path, text):
    path = tmp_path / "broker.yaml"
    path.write_text(textwrap.dedent(text))
    return build_node(str(path), reactor=task.Clock())


def _error(tmp_path, text):
    with pytest.raises(ConfigError) as caught:
        _node(tmp_path, text)
    return str(caught.value)


def test_no_cache_section_gives_a_memory_cache(tmp_path):
    node = _node(tmp_path, "name: n\n")
    resources = node.resources
    assert isinstance(resources.cache, MemoryCache) and resources.cache.max_entries == 10000
    assert resources.caches == {"default": resources.cache}
    assert "cache.default" in resources.metrics


def test_redis_cache_and_named_caches(tmp_path):
    node = _node(tmp_path, """\
        connections:
          - {name: main, type: redis, port: 6390, db: 2, timeout: 250ms}
        cache:
          backend: redis
          redis: main
          prefix: "app:"
          named:
            - {name: rates, backend: redis, redis: main}
            - {name: local, max_entries: 5}
        """)
    caches = node.resources.caches
    assert isinstance(caches["default"], RedisCache) and caches["default"].prefix == "app:"
    assert caches["rates"].prefix == "app:rates:"
    assert isinstance(caches["local"], MemoryCache) and caches["local"].max_entries == 5
    connection = caches["rates"].connection
    assert isinstance(connection, RedisConnection)
    assert (connection.port, connection.db, connection.timeout) == (6390, 2, 0.25)
    assert node.resources.health["redis.main"]()["connected"] is False


def test_a_redis_url_or_an_empty_one_chooses_the_cache(tmp_path, monkeypatch):
    """``redis: ${BROKER_REDIS_URL:}``: Redis at that URL when set, memory when not; the cache,
    the scheduler and pub/sub naming one address share one connection."""
    text = """\
        cache: {redis: "${BROKER_REDIS_URL:}"}
        scheduler: {redis: "${BROKER_REDIS_URL:}"}
        pubsub: {redis: "${BROKER_REDIS_URL:}"}
        """
    monkeypatch.delenv("BROKER_REDIS_URL", raising=False)
    node = _node(tmp_path, text)
    assert isinstance(node.resources.cache, MemoryCache)
    assert not [name for name in node.resources.metrics if name.startswith("redis.")]
    monkeypatch.setenv("BROKER_REDIS_URL", "redis://:s3cret@127.0.0.1:6390/2")
    node = _node(tmp_path, text)
    cache = node.resources.cache
    assert isinstance(cache, RedisCache)
    connection = cache.connection
    assert (connection.host, connection.port, connection.db, connection.timeout) == ("127.0.0.1", 6390, 2, 1.0)
    connections = {name: c.value for (kind, name), c in node.components.items()
                   if kind == "connection"}
    assert connections == {"127.0.0.1:6390/2": connection}
    assert node.components[("feature", "scheduler")].value.lock.connection is connection
    assert "s3cret" not in repr(connection) and "redis.127.0.0.1:6390/2" in node.resources.health


@pytest.mark.parametrize("text, problem", [
    ("cache: {backend: redis}", "cache.redis: backend redis needs a redis connection's name or a"),
    ("cache: {redis: 'rediss://h:1'}", 'cache.redis: expected a redis:// URL, got "rediss://..."'),
    ("cache: {redis: 'redis://:pw@h:1/x'}", "cache.redis: expected redis://[:password@]host[:port][/db]"),
    ("cache: {backend: redis, redis: nope}", 'no redis connection "nope" in connections'),
    ("cache: {backend: disk}", 'cache.backend: expected "memory" or "redis"'),
    ("cache: {named: [{name: default}]}", 'cache name "default" is reserved'),
    ("cache: {named: [{name: a}, {name: a}]}", 'cache name "a" is used twice'),
    ("connections: [{name: r, type: redis, port: 0}]", "connections[0].port: must be at least 1"),
])
def test_cache_config_errors(tmp_path, text, problem):
    assert problem in _error(tmp_path, text)


JOB = "scheduler: {jobs: [{name: j, service: broker.service.invoke, %s}]}"


@pytest.mark.parametrize("job, problem", [
    ("", "a job needs exactly one of interval, cron or at"),
    ("interval: 10s, cron: '* * * * *'", "exactly one of interval, cron or at, got interval, cron"),
    ("cron: '99 * * * *'", "cron: \"99 * * * *\" is not a valid cron expression"),
    ("at: tomorrow", "at: expected an ISO 8601 date and time"),
    ("interval: 0s", "interval: must be more than 0s"),
    ("interval: 1s, overlap: never", 'overlap: expected "skip" or "allow"'),
    ("interval: 1s, timezone: Mars/Olympus", "unknown time zone"),
    ("at: '2026-12-01T10:00:00Z', run_at_start: true", "run_at_start: a one-time job (at) runs at"),
])
def test_scheduler_job_errors(tmp_path, job, problem):
    assert problem in _error(tmp_path, JOB % job)


def test_scheduler_errors_across_keys(tmp_path):
    assert 'no such service "nope"' in _error(
        tmp_path, "scheduler: {jobs: [{name: j, service: nope, interval: 1s}]}")
    assert 'no redis connection "main"' in _error(tmp_path, "scheduler: {redis: main}")
    assert "lock_renew: must be less than lock_ttl" in _error(
        tmp_path, "scheduler: {lock_ttl: 5s, lock_renew: 5s}")


def test_scheduler_is_built_with_admin_services(tmp_path):
    node = _node(tmp_path, JOB % "cron: '*/5 * * * *'")
    assert "broker.scheduler.list-jobs" in node.store
    assert "broker.scheduler.set-enabled" in node.store
    assert node.resources.health["scheduler"]()["ok"] is True
    scheduler = node.components[("feature", "scheduler")].value
    assert scheduler.jobs["j"].trigger.expression == "*/5 * * * *"
