"""The cache as a broker node configures it: services use it over HTTP; Redis down is a miss."""

import json
from pathlib import Path

import pytest

from tests.integration.broker_process import BrokerProcess
from tests.integration.redis_support import delete_prefix, free_port, unique_prefix

CONFIG = """\
name: cache-node
http:
  listen: ${BROKER_LISTEN}
services:
  paths: [%(plugins)s]
connections:
  - name: main
    type: redis
    port: ${REDIS_PORT}
    timeout: 300ms
    connect_timeout: 300ms
    breaker_failures: 2
    breaker_reset: 60s
cache:
  backend: redis
  redis: main
  prefix: ${TEST_PREFIX}
  named:
    - {name: local, max_entries: 2}
channels:
  - {name: probe, type: http, path: /probe, service: test.cache-probe}
"""


def start(tmp_path, redis_port, prefix):
    config = tmp_path / "cache.yaml"
    plugins = Path(__file__).parent / "plugins"
    config.write_text(CONFIG % {"plugins": plugins})
    return BrokerProcess(config, env={"REDIS_PORT": str(redis_port), "TEST_PREFIX": prefix}).start()


def call(node, **data):
    status, _, body = node.request("POST", "/probe", json.dumps(data))
    return status, json.loads(body)


@pytest.fixture
def prefix():
    prefix = unique_prefix("node-cache")
    yield prefix
    delete_prefix(prefix)


def test_services_use_the_redis_cache_and_named_caches(tmp_path, prefix):
    node = start(tmp_path, 6379, prefix)
    try:
        value = {"rates": [{"currency": "USD", "rate": 1.0842}], "stale": False, "n": None}
        assert call(node, op="set", key="r", value=value, ttl=60) == (200, {"result": True})
        assert call(node, op="get", key="r") == (200, {"result": value})
        assert call(node, op="incr", key="n", amount=5) == (200, {"result": 5})
        assert call(node, op="get_many", keys=["r", "n", "x"]) == (
            200, {"result": {"r": value, "n": 5}})
        for key in "abc":
            call(node, op="set", key=key, value=key, cache="local")
        assert call(node, op="get_many", keys=list("abc"), cache="local") == (
            200, {"result": {"b": "b", "c": "c"}})
        status, _, body = node.request("GET", "/broker/metrics")
        counters = json.loads(body)["counters"]
        assert counters["cache.default"]["backend"] == "redis"
        assert counters["cache.local"]["evictions"] == 1
        assert counters["redis.main"]["connected"] == 1
    finally:
        node.stop()


def test_redis_down_is_a_miss_for_the_service_never_an_error(tmp_path, prefix):
    node = start(tmp_path, free_port(), prefix)
    try:
        assert call(node, op="get", key="k") == (200, {"result": None})
        assert call(node, op="set", key="k", value=1) == (200, {"result": False})
        assert call(node, op="get_many", keys=["k"]) == (200, {"result": {}})  # circuit open
        status, _, body = node.request("GET", "/broker/metrics")
        counters = json.loads(body)["counters"]
        assert counters["cache.default"]["errors"] == 2
        assert counters["cache.default"]["short_circuited"] == 1
        assert counters["redis.main"]["opened"] == 1
        assert "answered as a miss" in node.output
        status, _, body = node.request("GET", "/broker/health")
        health = json.loads(body)["checks"]["redis.main"]
        assert status == 200 and health["connected"] is False and health["circuit"] == "open"
    finally:
        node.stop()
